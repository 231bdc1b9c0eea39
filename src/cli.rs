//! Command-line definitions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};

use googlenet::experiment::concat_order::Order;
use googlenet::inputs::Shard;
use googlenet::inspect::modules::BranchKind;
use googlenet::similarity::DUPLICATE_THRESHOLD;
use googlenet::Precision;
use googlenet::{
    Adjust, Builder, ChannelOrder, Classifier, Crops, Downloader, Preset, ResizeMode,
    LARGEST_MAX_PIXELS,
};

use crate::output::Format;

/// Classify images with GoogLeNet (Inception v1) on the CPU.
#[derive(Debug, Parser)]
#[command(name = "googlenet", version, about, max_term_width = 100)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
    /// Say which model, preset and settings are used, and how long loading took (on stderr).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the most probable ImageNet classes of images, files or whole folders.
    Classify(ClassifyArgs),
    /// Measure top-1 and top-5 accuracy on labelled images (`<synset>_*.JPEG` or `<synset>/`).
    Eval(EvalArgs),
    /// Lay the network open: layers, Inception modules (Table 1), and where the time goes.
    Inspect(InspectArgs),
    /// Download GoogLeNet from the ONNX model zoo (or install a local file) into the user cache.
    FetchModel(FetchModelArgs),
    /// Answer questions about the Inception module by running variants of the real network.
    #[command(subcommand)]
    Experiment(Experiment),
    /// Show which part of a photo the decision rests on: an occlusion-sensitivity heatmap.
    Explain(ExplainArgs),
    /// Write each image's features (the network's pooled activations) as JSON Lines or .npy.
    Embed(EmbedArgs),
    /// Find the photos most like a query, or groups of near-duplicates, by their features.
    Similar(SimilarArgs),
    /// Keep the model loaded and classify photos sent over HTTP, with a page to drop them on.
    Serve(ServeArgs),
}

/// `googlenet experiment`.
#[derive(Debug, Subcommand)]
pub enum Experiment {
    /// Concatenate the branches of Inception modules in another order and compare the outputs.
    ConcatOrder(ConcatOrderArgs),
    /// How much each input channel of a 1x1 convolution is used, and which branch it came from.
    ChannelUse(ChannelUseArgs),
    /// Remove a branch of Inception modules, or the LRN layers, and compare the outputs.
    Ablate(AblateArgs),
}

/// What the experiments that build a variant of the network share.
#[derive(Debug, Args)]
pub struct VariantArgs {
    /// Write the variant as an ONNX file (usable with `classify --model`).
    #[arg(long, value_name = "PATH")]
    pub save: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Images or folders to compare on [default: the bundled photo of a cat].
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The model, its labels, preprocessing, and how the work runs.
    #[command(flatten)]
    pub classifier: ClassifierArgs,
}

/// `googlenet experiment ablate`.
#[derive(Debug, Args)]
pub struct AblateArgs {
    /// The branch to remove (its last convolution's weights and bias made zero).
    #[arg(long, value_enum, required_unless_present = "lrn", conflicts_with = "lrn")]
    pub branch: Option<BranchArg>,
    /// Remove it from this module only (repeatable; `all` for every one) [default: all].
    #[arg(long = "module", value_name = "NAME", requires = "branch")]
    pub modules: Vec<String>,
    /// Remove the LRN layers instead (their readers read their input).
    #[arg(long)]
    pub lrn: bool,
    /// Where the variant goes and what it is compared on.
    #[command(flatten)]
    pub variant: VariantArgs,
}

/// `googlenet experiment concat-order`.
#[derive(Debug, Args)]
pub struct ConcatOrderArgs {
    /// The new branch order, e.g. 531m (1 = 1x1, 3 = 3x3, 5 = 5x5, m = pool proj).
    #[arg(long)]
    pub order: Order,
    /// Reorder only this module (repeatable) [default: every Inception module].
    #[arg(long = "module", value_name = "NAME")]
    pub modules: Vec<String>,
    /// Reorder the Concat only, without permuting the next layers' input channels to match.
    #[arg(long)]
    pub no_compensate: bool,
    /// Where the variant goes and what it is compared on.
    #[command(flatten)]
    pub variant: VariantArgs,
}

/// `googlenet experiment channel-use`.
#[derive(Debug, Args)]
pub struct ChannelUseArgs {
    /// A 1x1 convolution, such as inception_4a/1x1, or `all` for a summary of every one.
    #[arg(long)]
    pub layer: String,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Images or folders to measure the channels' contributions on [default: weights only].
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The model, its labels, preprocessing, and how the work runs.
    #[command(flatten)]
    pub classifier: ClassifierArgs,
}

/// `googlenet explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The photo to explain: a file, an `http(s)://` URL, or `-` for stdin.
    pub image: PathBuf,
    /// Where to write the heatmap PNG (the photo's size, the map blended over it).
    #[arg(long, value_name = "PNG")]
    pub out: PathBuf,
    /// Side of the grey square slid over the input, in input pixels.
    #[arg(long, default_value_t = 32, value_name = "PIXELS", value_parser = clap::value_parser!(u16).range(1..))]
    pub patch: u16,
    /// Step between patch positions, in input pixels.
    #[arg(long, default_value_t = 16, value_name = "PIXELS", value_parser = clap::value_parser!(u16).range(1..))]
    pub stride: u16,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// The model, its labels, preprocessing, and how the work runs.
    #[command(flatten)]
    pub classifier: ClassifierArgs,
}

/// `googlenet classify`.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Which images.
    #[command(flatten)]
    pub inputs: InputArgs,
    /// How many classes to show per image.
    #[arg(short = 'k', long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub top_k: u16,
    /// Output format [default: table when stdout is a terminal, else jsonl].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Write results to FILE instead of stdout (json and table: written whole, by rename).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Skip the images already in the --output JSON Lines file and append the rest.
    #[arg(long, requires = "output")]
    pub resume: bool,
    /// Average the probabilities of 1, 10 or 144 crops of each photo (the paper's protocol).
    #[arg(long, default_value = "1", value_name = "N")]
    pub crops: Crops,
    /// Also show each layer's output shape in this run, as `inspect` derives it (after the
    /// predictions in a table; a `shapes` field of the json document).
    #[arg(long)]
    pub shapes: bool,
    /// The model, its labels, preprocessing, and how the work runs.
    #[command(flatten)]
    pub classifier: ClassifierArgs,
}

/// `googlenet serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen. Any address but loopback lets other machines use the classifier.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "IP:PORT")]
    pub addr: SocketAddr,
    /// How many classes an answer keeps when the request does not say (`?top_k=`).
    #[arg(short = 'k', long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub top_k: u16,
    /// The largest request body, in bytes or with a K, M or G suffix (powers of 1024).
    #[arg(long, default_value = "64M", value_name = "SIZE", value_parser = size)]
    pub max_body: u64,
    /// Connections open at once; beyond them, a new connection takes the place of the one
    /// waiting longest for its request's headers, or is answered 503 when all serve requests.
    #[arg(long, default_value_t = 512, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_connections: u16,
    /// The longest a request may take to send its headers.
    #[arg(long, default_value = "5", value_name = "SECONDS", value_parser = seconds)]
    pub header_timeout: Duration,
    /// The longest a request may take to send its body, once its headers are in; until then
    /// its connection may give way to a new one, as one waiting for headers does.
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = seconds)]
    pub body_timeout: Duration,
    /// The most bytes of request bodies held at once, all requests together; a body that would
    /// take more is answered 503 (with Retry-After).
    #[arg(long, default_value = "256M", value_name = "SIZE", value_parser = size)]
    pub max_buffered: u64,
    /// Also answer requests that name this host (repeatable): besides `localhost` and the
    /// address the service listens on, a request for any other host is refused (421), as a
    /// web page reaching it through DNS rebinding would name its own.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// Let the web page of this origin (`scheme://host[:port]`, repeatable) call the API, with
    /// CORS; requests that change anything from any other page's origin are refused (403).
    #[arg(long = "allow-origin", value_name = "ORIGIN", value_parser = origin)]
    pub allow_origins: Vec<String>,
    /// Requests waiting for a worker; a request beyond them is answered 503 at once.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub queue: u16,
    /// The longest a request may take: its headers, its body, the wait and the run.
    #[arg(long, default_value = "30", value_name = "SECONDS", value_parser = seconds)]
    pub request_timeout: Duration,
    /// How long a worker waits for more requests to fill a batch of --batch-size images.
    #[arg(long, default_value_t = 2, value_name = "MS")]
    pub batch_wait: u16,
    /// Worker threads running the model [default: one per core].
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// The most images a worker runs through the network at once, from one or more requests.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batch_size: u16,
    /// The convolutions' precision: int8 is faster, and its top-1 answer is f32's for about
    /// 99% of photos (docs/precision.md).
    #[arg(long, value_enum, default_value = "f32", value_name = "PRECISION")]
    pub precision: PrecisionArg,
    /// ONNX model file [default: $GOOGLENET_MODEL, else the embedded model, else the
    /// fetch-model cache].
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Class names, one per line in output order (`<synset> <names>` lines keep the synset)
    /// [default: the embedded ImageNet-1k list].
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Preprocessing.
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
}

/// A web origin, `scheme://host[:port]`, as browsers send it.
fn origin(text: &str) -> Result<String, String> {
    let (scheme, rest) = text.split_once("://").ok_or("expected scheme://host[:port]")?;
    let valid = matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' ']);
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not an origin such as https://app.example or http://localhost:3000"
        ))
    }
}

/// A size in bytes: a whole number, optionally followed by K, M or G (powers of 1024).
fn size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((at, 'k' | 'K')) => (&text[..at], 10),
        Some((at, 'm' | 'M')) => (&text[..at], 20),
        Some((at, 'g' | 'G')) => (&text[..at], 30),
        _ => (text, 0),
    };
    let value: u64 =
        digits.parse().map_err(|_| format!("`{text}` is not a size such as 512K or 64M"))?;
    value
        .checked_mul(1 << shift)
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| format!("`{text}` is not a size above 0 that fits in 64 bits"))
}

/// `googlenet embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Which images.
    #[command(flatten)]
    pub inputs: InputArgs,
    /// The node or tensor whose output, flattened, is the embedding (`googlenet inspect` lists
    /// them) [default: what the classifier's last linear layer reads: for GoogLeNet, the 1024
    /// values of pool5/7x7_s1].
    #[arg(long, value_name = "NODE")]
    pub layer: Option<String>,
    /// Scale each embedding to unit length (L2 norm 1).
    #[arg(long)]
    pub normalize: bool,
    /// Output format [default: npy when --output ends in .npy, else jsonl].
    #[arg(long, value_enum)]
    pub format: Option<EmbedFormat>,
    /// Write to FILE instead of stdout (npy: FILE and FILE's stem + .paths.txt, by rename).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Skip the images already in the --output JSON Lines file and append the rest.
    #[arg(long, requires = "output")]
    pub resume: bool,
    /// The model, its preprocessing, and how the work runs.
    #[command(flatten)]
    pub runner: RunnerArgs,
}

/// Output formats of `embed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbedFormat {
    /// One JSON object per image and line, `{"path": ..., "embedding": [...]}`, as each is done.
    Jsonl,
    /// One float32 N x D NumPy array, with the path of each row in a .paths.txt file beside it.
    Npy,
}

/// `googlenet similar`.
#[derive(Debug, Args)]
pub struct SimilarArgs {
    /// Photos to find look-alikes of: files, `http(s)://` URLs, or `-` for stdin.
    #[arg(value_name = "QUERY", required_unless_present = "duplicates")]
    pub queries: Vec<PathBuf>,
    /// Where to look: a folder (embedded on the way) or a .npy array that `googlenet embed
    /// --normalize` wrote with the same model.
    #[arg(long = "in", value_name = "DIR|NPY", required_unless_present = "duplicates")]
    pub library: Option<PathBuf>,
    /// Instead of look-alikes, list the groups of near-duplicates in a folder or a .npy array.
    #[arg(long, value_name = "DIR|NPY", conflicts_with_all = ["library", "queries"])]
    pub duplicates: Option<PathBuf>,
    /// How many look-alikes to list per query.
    #[arg(short = 'n', long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub top: u16,
    /// With --duplicates: the least cosine similarity of two photos of one group.
    #[arg(long, default_value_t = DUPLICATE_THRESHOLD, requires = "duplicates", value_parser = threshold)]
    pub threshold: f32,
    /// Output format [default: table when stdout is a terminal, else jsonl].
    #[arg(long, value_enum)]
    pub format: Option<SimilarFormat>,
    /// The model, its preprocessing, and how the work runs.
    #[command(flatten)]
    pub runner: RunnerArgs,
}

/// Output formats of `similar`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimilarFormat {
    /// Aligned text for people.
    Table,
    /// One JSON object per query (or group) and line.
    Jsonl,
    /// One JSON document, `{"results": [...]}` (or `{"groups": [...]}`).
    Json,
}

/// A cosine similarity from -1 to 1.
fn threshold(text: &str) -> Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(value) if (-1.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("`{text}` is not a number from -1 to 1")),
    }
}

/// `googlenet eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Which images.
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// How many of the most confused (true, predicted) pairs to list.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub confusions: usize,
    /// Average the probabilities of 1, 10 or 144 crops of each photo (the paper's protocol).
    #[arg(long, default_value = "1", value_name = "N")]
    pub crops: Crops,
    /// The model, its labels, preprocessing, and how the work runs.
    #[command(flatten)]
    pub classifier: ClassifierArgs,
}

/// `googlenet inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// ONNX model file [default: as for classify].
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Show the paper's Table 1, derived from the Inception modules found in the graph.
    #[arg(long, conflicts_with = "profile")]
    pub modules: bool,
    /// With --modules: the paper's rounded params and ops beside the counted ones.
    #[arg(long, requires = "modules")]
    pub paper: bool,
    /// Run the model and show where the time goes [IMAGE: default, a mid-grey image].
    #[arg(long, value_name = "IMAGE")]
    pub profile: Option<Option<PathBuf>>,
    /// With --profile: how many runs to average.
    #[arg(long, default_value_t = 5, value_name = "N", requires = "profile")]
    pub runs: usize,
    /// With --profile: images per run (copies of the one image); times are per image.
    #[arg(long, default_value_t = 1, value_name = "N", requires = "profile", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batch_size: u16,
    /// With --profile: the convolutions' precision.
    #[arg(long, value_enum, default_value = "f32", value_name = "PRECISION", requires = "profile")]
    pub precision: PrecisionArg,
    /// The input shape, e.g. `1,3,224,224`, for models whose input is not fully known.
    #[arg(long, value_name = "N,C,H,W", value_delimiter = ',', conflicts_with = "profile")]
    pub input_shape: Option<Vec<usize>>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

/// Everything that sets up a run of the network.
#[derive(Debug, Args)]
pub struct RunnerArgs {
    /// How the work runs.
    #[command(flatten)]
    pub run: RunArgs,
    /// Limits on downloads.
    #[command(flatten)]
    pub download: DownloadArgs,
    /// ONNX model file [default: $GOOGLENET_MODEL, else the embedded model, else the
    /// fetch-model cache].
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Preprocessing.
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
}

/// Everything that sets up a classifier run: the network's, and the names of its classes.
#[derive(Debug, Args)]
pub struct ClassifierArgs {
    /// The model, its preprocessing, and how the work runs.
    #[command(flatten)]
    pub runner: RunnerArgs,
    /// Class names, one per line in output order (`<synset> <names>` lines keep the synset)
    /// [default: the embedded ImageNet-1k list].
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
}

/// Output formats of `eval` and `inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Text for people.
    Table,
    /// One JSON document.
    Json,
}

/// Which images to process.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Image files, folders (searched for image files), `http(s)://` URLs, or `-` for one
    /// image on stdin.
    #[arg(value_name = "PATH", required_unless_present = "files_from")]
    pub paths: Vec<PathBuf>,
    /// Read more paths from FILE, one per line (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub files_from: Option<PathBuf>,
    /// Search folders recursively (the default).
    #[arg(short, long, overrides_with = "no_recursive")]
    pub recursive: bool,
    /// Only take the images directly inside the folders given.
    #[arg(long)]
    pub no_recursive: bool,
    /// Only take paths matching GLOB (repeatable; `*` also matches `/`).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Skip paths matching GLOB (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Take only the K-th of N disjoint slices of the sorted inputs (1-based), e.g. `2/8`.
    #[arg(long, value_name = "K/N", value_parser = shard)]
    pub shard: Option<Shard>,
}

/// Limits on downloading the images named by URL.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// Give up connecting to a URL's server after this long.
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = seconds)]
    pub connect_timeout: Duration,
    /// Give up downloading a URL after this long, redirects included.
    #[arg(long, default_value = "60", value_name = "SECONDS", value_parser = seconds)]
    pub download_timeout: Duration,
    /// Refuse a download past this many bytes, as sent and as decoded (at most what an image
    /// within --max-pixels can take).
    #[arg(long, default_value = "64M", value_name = "SIZE", value_parser = size)]
    pub max_download: u64,
}

impl DownloadArgs {
    /// The client with these limits.
    pub fn downloader(&self) -> Downloader {
        Downloader::new(self.connect_timeout, self.download_timeout, self.max_download)
    }
}

/// A duration in seconds (fractions allowed), above zero and at most a day.
fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text.trim().parse().map_err(|_| format!("`{text}` is not a number"))?;
    if value > 0.0 && value <= 86_400.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err("expected seconds above 0 and at most 86400".into())
    }
}

/// How the work runs.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Worker threads [default: one per core].
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Images per model call [default: 2 where every thread gets at least 4 images or crops to
    /// classify, eval or embed, else 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batch_size: Option<u16>,
    /// No progress bar and no summary on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// The convolutions' precision: int8 is faster, and its top-1 answer is f32's for about
    /// 99% of photos (docs/precision.md).
    #[arg(long, value_enum, default_value = "f32", value_name = "PRECISION")]
    pub precision: PrecisionArg,
}

/// Makes `$arg`, a wrapper of the library's enum `$type`, a clap value, here at the command
/// edge: each variant with its name on the command line and its help.
macro_rules! value_enum {
    ($arg:ident($type:ident) { $($variant:ident => $name:literal: $help:literal),+ $(,)? }) => {
        #[doc = concat!("A [`", stringify!($type), "`] on the command line.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $arg(pub $type);

        impl ValueEnum for $arg {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($arg($type::$variant)),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self.0 {
                    $($type::$variant => PossibleValue::new($name).help($help)),+
                })
            }
        }
    };
}

value_enum!(PrecisionArg(Precision) {
    F32 => "f32": "f32 throughout",
    Bf16 => "bf16": "bf16 products with f32 sums on AMX or AVX512-BF16, else f32 with a note",
    Int8 => "int8": "8-bit weights and 7-bit activations, exact integer sums",
});

value_enum!(FormatArg(Format) {
    Table => "table": "Aligned text for people",
    Jsonl => "jsonl": "One JSON object per image and line, written as each image is done",
    Csv => "csv": "One row per image and rank, written as each image is done",
    Json => "json": "One JSON document, {\"results\": [...]}, written at the end",
});

value_enum!(BranchArg(BranchKind) {
    OneByOne => "1x1": "The 1x1 convolution",
    ThreeByThree => "3x3": "The 3x3 convolution after its reduction",
    FiveByFive => "5x5": "The 5x5 convolution after its reduction",
    PoolProj => "pool": "The projection after the max-pool",
});

value_enum!(PresetArg(Preset) {
    Caffe => "caffe": "BVLC Caffe models: BGR, 0..255 minus the ImageNet mean, squashed",
    Torchvision => "torchvision": "torchvision models: RGB, ImageNet mean and std, centre crop",
});

value_enum!(ResizeArg(ResizeMode) {
    Squash => "squash": "Resize straight to the input size, ignoring the aspect ratio",
    Crop => "crop": "Resize so that the input is 224/256 of the short side, take the centre",
});

/// Preprocessing settings: a preset, then any overrides.
#[derive(Debug, Default, Args)]
pub struct PreprocessArgs {
    /// Preset [default: caffe for the default model and inputs named data/data_0, else
    /// torchvision].
    #[arg(long, value_enum)]
    pub preset: Option<PresetArg>,
    /// Override the preset's resize mode.
    #[arg(long, value_enum)]
    pub resize: Option<ResizeArg>,
    /// Override the per-channel mean: R,G,B in 0..255 pixel units.
    #[arg(long, value_name = "R,G,B", allow_hyphen_values = true)]
    pub mean: Option<Triple>,
    /// Override the per-channel standard deviation: R,G,B in 0..255 pixel units.
    #[arg(long, value_name = "R,G,B", value_parser = Triple::positive)]
    pub std: Option<Triple>,
    /// Feed channels as blue, green, red.
    #[arg(long, conflicts_with = "rgb")]
    pub bgr: bool,
    /// Feed channels as red, green, blue.
    #[arg(long)]
    pub rgb: bool,
    /// Refuse images of more pixels than this, from their header, and files of more than 16
    /// bytes a pixel plus 64 MiB [default: 178956970; at most 268435456].
    #[arg(
        long,
        value_name = "PIXELS",
        value_parser = clap::value_parser!(u64).range(1..=LARGEST_MAX_PIXELS)
    )]
    pub max_pixels: Option<u64>,
}

/// `googlenet fetch-model`.
#[derive(Debug, Args)]
pub struct FetchModelArgs {
    /// Install this local file instead of downloading.
    #[arg(long, value_name = "PATH", conflicts_with = "url")]
    pub from: Option<PathBuf>,
    /// Download from this URL instead of the ONNX model zoo.
    #[arg(long)]
    pub url: Option<String>,
    /// Expected SHA-256 of the file [default: the zoo's googlenet-12.onnx, whose size is
    /// checked too].
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Replace the cached model even when it is already the expected file.
    #[arg(long)]
    pub force: bool,
    /// Give up connecting after this long (and waiting for the server's answer after 30 s).
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = seconds)]
    pub connect_timeout: Duration,
    /// Give up the whole download after this long.
    #[arg(long, default_value = "600", value_name = "SECONDS", value_parser = seconds)]
    pub download_timeout: Duration,
}

impl PreprocessArgs {
    /// The changes these flags make to the preset's preprocessing.
    pub fn adjust(&self) -> Adjust {
        let order = match (self.bgr, self.rgb) {
            (true, _) => Some(ChannelOrder::Bgr),
            (_, true) => Some(ChannelOrder::Rgb),
            _ => None,
        };
        Adjust {
            resize: self.resize.map(|r| r.0),
            mean: self.mean.map(|t| t.0),
            std: self.std.map(|t| t.0),
            order,
            max_pixels: self.max_pixels,
        }
    }
}

impl RunnerArgs {
    /// The library's builder with these settings, for a run of `images` images (0 where the
    /// count is not known when the model loads).
    pub fn builder(&self, images: usize) -> Builder {
        Classifier::builder()
            .model_or_default(self.model.as_deref())
            .preset(self.preprocess.preset.map(|p| p.0))
            .adjust(self.preprocess.adjust())
            .threads(self.run.threads.map(usize::from))
            .batch_size(self.run.batch_size.map(usize::from))
            .precision(self.run.precision.0)
            .images(images)
            .downloader(self.download.downloader())
    }
}

impl ClassifierArgs {
    /// [`RunnerArgs::builder`] with the labels, keeping `top_k` classes of `crops` crops.
    pub fn builder(&self, images: usize, top_k: u16, crops: Crops) -> Builder {
        self.runner.builder(images).labels(self.labels.as_deref()).top_k(top_k.into()).crops(crops)
    }
}

/// `K/N` for `--shard`, refused with the library's reason alone: clap names the flag.
fn shard(text: &str) -> Result<Shard, String> {
    text.parse().map_err(|err| match err {
        googlenet::Error::Setting { problem, .. } => problem,
        other => other.to_string(),
    })
}

/// Three per-channel values in RGB order, parsed from `a,b,c`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Triple(pub [f32; 3]);

impl FromStr for Triple {
    type Err = String;

    fn from_str(text: &str) -> Result<Triple, String> {
        let values: Vec<f32> = text
            .split(',')
            .map(|part| part.trim().parse::<f32>().map_err(|_| format!("`{part}` is not a number")))
            .collect::<Result<_, _>>()?;
        let values: [f32; 3] = values.try_into().map_err(|v: Vec<f32>| {
            format!("expected 3 comma-separated values (R,G,B), got {}", v.len())
        })?;
        if values.iter().all(|v| v.is_finite()) {
            Ok(Triple(values))
        } else {
            Err("values must be finite numbers".into())
        }
    }
}

impl Triple {
    /// Parses `a,b,c` of three values that are all above zero (a standard deviation).
    pub fn positive(text: &str) -> Result<Triple, String> {
        let triple: Triple = text.parse()?;
        if triple.0.iter().all(|v| *v > 0.0) {
            Ok(triple)
        } else {
            Err("values must be positive".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triples_parse_and_reject() {
        assert_eq!("1,2.5, 3".parse::<Triple>().unwrap(), Triple([1.0, 2.5, 3.0]));
        assert!("1,2".parse::<Triple>().unwrap_err().contains("got 2"));
        assert!("1,x,3".parse::<Triple>().unwrap_err().contains("`x`"));
        assert!("1,inf,3".parse::<Triple>().is_err());
        assert_eq!(Triple::positive("1,2,3"), Ok(Triple([1.0, 2.0, 3.0])));
        assert!(Triple::positive("1,0,3").unwrap_err().contains("positive"));
        assert!(Triple::positive("1,-2,3").is_err());
    }
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_values_are_rejected_by_the_parser() {
        for args in [
            &["googlenet", "classify", "--top-k", "0", "a.jpg"][..],
            &["googlenet", "classify", "--mean", "1,2", "a.jpg"],
            &["googlenet", "classify", "--bgr", "--rgb", "a.jpg"],
            &["googlenet", "classify"],
            &["googlenet", "classify", "--shard", "4/3", "a.jpg"],
            &["googlenet", "classify", "--resume", "a.jpg"],
            &["googlenet", "classify", "--threads", "0", "a.jpg"],
            &["googlenet", "fetch-model", "--from", "x", "--url", "y"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
