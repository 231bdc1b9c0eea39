//! The subcommands: glue from parsed arguments to the library's modules.

mod embed;
mod experiment;
mod explain;
mod serve;
mod similar;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use crate::cli::{
    ClassifierArgs, ClassifyArgs, Cli, Command, EvalArgs, Experiment, FetchModelArgs, InputArgs,
    InspectArgs, PreprocessArgs, ReportFormat, RunArgs, RunnerArgs,
};
use crate::crops::Crops;
use crate::download::Downloader;
use crate::eval::{true_synset, Report, Tally};
use crate::fetch::{self, Expected};
use crate::files::{read_at_most, read_up_to, Size};
use crate::inspect::profile::Profile;
use crate::inspect::{modules, Network};
use crate::labels::Labels;
use crate::model::{Model, ModelSource, Origin, OutputKind};
use crate::output::{diagnostic, path_text, resume, Format, Outcome, Output, Progress, Record};
use crate::pipeline::{discover, run_ordered, Classifier, Input, Runner, Walk};
use crate::preprocess::{ChannelOrder, Preprocess, Preset};

/// How a run ended, short of a fatal error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every input was processed.
    Success,
    /// The run finished, but some inputs could not be processed (exit code 2).
    SomeInputsFailed,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<Status> {
    match cli.command {
        Command::Classify(args) => classify(&args, cli.verbose),
        Command::Eval(args) => eval(&args, cli.verbose),
        Command::Inspect(args) => inspect(&args),
        Command::FetchModel(args) => fetch_model(&args),
        Command::Experiment(Experiment::ConcatOrder(args)) => {
            experiment::concat_order(&args, cli.verbose)
        }
        Command::Experiment(Experiment::ChannelUse(args)) => {
            experiment::channel_use(&args, cli.verbose)
        }
        Command::Experiment(Experiment::Ablate(args)) => experiment::ablate(&args, cli.verbose),
        Command::Explain(args) => explain::explain(&args, cli.verbose),
        Command::Embed(args) => embed::embed(&args, cli.verbose),
        Command::Similar(args) => similar::similar(&args, cli.verbose),
        Command::Serve(args) => serve::serve(&args, cli.verbose),
    }
}

fn inspect(args: &InspectArgs) -> Result<Status> {
    let source = ModelSource::resolve(args.model.as_deref())?;
    let json = args.format == ReportFormat::Json;
    if let Some(image) = &args.profile {
        let batch = usize::from(args.batch_size);
        let model = Model::load(&source, batch)?;
        let (preprocess, _) = preprocess_for(&model, source.origin, &PreprocessArgs::default());
        let tensor = match image {
            Some(path) => preprocess
                .load(path)
                .with_context(|| format!("cannot profile with {}", path.display()))?,
            None => {
                let grey = image::RgbImage::from_pixel(
                    preprocess.width,
                    preprocess.height,
                    image::Rgb([128; 3]),
                );
                preprocess.normalise(&grey)
            }
        };
        let (nodes, total) = model.profile(&tensor, args.runs)?;
        let network = Network::analyse(&source.bytes()?, None)?;
        let macs = network.layers.iter().map(|l| (l.name.clone(), l.macs)).collect();
        let profile = Profile::new(&nodes, total, args.runs, batch, &macs);
        print_report(&profile, json, Profile::to_text)?;
        return Ok(Status::Success);
    }
    let bytes = source.bytes()?;
    let network = Network::analyse(&bytes, args.input_shape.as_deref())
        .with_context(|| format!("cannot inspect {source}"))?;
    if args.modules {
        let modules = modules::find_modules(&network);
        let stages = modules::stages(&network, &modules, args.paper);
        let table = ModuleTable { stages, modules };
        print_report(&table, json, |t| modules::to_text(&t.stages, &t.modules))?;
    } else {
        print_report(&network, json, Network::to_text)?;
    }
    Ok(Status::Success)
}

/// What `inspect --modules --format json` prints.
#[derive(serde::Serialize)]
struct ModuleTable {
    stages: Vec<modules::Stage>,
    modules: Vec<modules::Module>,
}

fn print_report<T: serde::Serialize>(
    report: &T,
    json: bool,
    text: impl Fn(&T) -> String,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", text(report))?;
    }
    Ok(())
}

fn classify(args: &ClassifyArgs, verbose: bool) -> Result<Status> {
    let format = args.format.unwrap_or_else(|| match &args.output {
        None if std::io::stdout().is_terminal() => Format::Table,
        _ => Format::Jsonl,
    });
    ensure!(!args.resume || format == Format::Jsonl, "--resume needs --format jsonl");
    let resume = args.output.as_deref().filter(|_| args.resume);
    let inputs = pending_inputs(&args.inputs, resume)?;
    let (classifier, chunk) =
        load_classifier_for(&args.classifier, args.top_k, inputs.len(), args.crops, verbose)?;
    let mut output = match &args.output {
        Some(path) => Output::file(format, path, args.resume)?,
        None => Output::stdout(format),
    };
    let (progress, result) = run_batch(
        &inputs,
        &args.classifier.runner.run,
        chunk,
        "classified",
        |chunk| classifier.classify(chunk),
        |record| output.record(&record),
    );
    let failed = summarise(progress, result.and_then(|()| output.finish()))?;
    Ok(status(failed))
}

fn eval(args: &EvalArgs, verbose: bool) -> Result<Status> {
    let inputs = pending_inputs(&args.inputs, None)?;
    let (classifier, chunk) =
        load_classifier_for(&args.classifier, 5, inputs.len(), args.crops, verbose)?;
    let mut tally = Tally::default();
    let mut unlabelled = Vec::new();
    let work = |chunk: &[Input]| classifier.classify(chunk);
    let (progress, result) =
        run_batch(&inputs, &args.classifier.runner.run, chunk, "classified", work, |record| {
            let Outcome::Predictions(predictions) = &record.outcome else {
                tally.add_failure();
                return Ok(());
            };
            let truth = true_synset(Path::new(&record.path));
            match truth.as_deref().and_then(|synset| classifier.labels.by_synset(synset)) {
                Some((index, _)) => tally.add(index, predictions),
                None => {
                    tally.add_failure();
                    unlabelled.push(record.path);
                }
            }
            Ok(())
        });
    let failed = summarise(progress, result)?;
    for path in &unlabelled {
        diagnostic(&format!("{path}: no known synset in the file or folder name; not counted"));
    }
    let report = tally.report(&classifier.labels, args.confusions);
    print_report(&report, args.format == ReportFormat::Json, Report::to_text)?;
    Ok(status(failed + unlabelled.len()))
}

fn status(failed: usize) -> Status {
    if failed == 0 {
        Status::Success
    } else {
        Status::SomeInputsFailed
    }
}

/// Runs `work` over `inputs` in chunks of `batch` on the threads of `run`, and hands the
/// records to `sink` in input order, with a progress bar on stderr that counts each success as
/// `verb`. Returns the progress, for [`summarise`] once the output is complete, and the run's
/// result.
fn run_batch(
    inputs: &[Input],
    run: &RunArgs,
    batch: usize,
    verb: &'static str,
    work: impl Fn(&[Input]) -> Vec<Record> + Sync,
    mut sink: impl FnMut(Record) -> Result<()>,
) -> (Progress, Result<()>) {
    let threads = threads(run);
    let mut progress = Progress::new(inputs.len(), run.quiet, verb);
    for input in inputs.iter().filter(|input| input.path().to_str().is_none()) {
        progress.warn(&format!(
            "{}: name is not valid UTF-8; shown with U+FFFD",
            path_text(input.path())
        ));
    }
    let result = run_ordered(inputs, threads, batch, work, |record| {
        match &record.outcome {
            Outcome::Error(reason) => progress.failed(&record.path, reason),
            Outcome::Predictions(_) | Outcome::Embedding(_) => progress.done(),
        }
        progress.suspend(|| sink(record))
    });
    (progress, result)
}

/// Ends the progress bar with the summary, which says whether `written` failed, and returns how
/// many inputs failed.
fn summarise(progress: Progress, written: Result<()>) -> Result<usize> {
    let failed = progress.failures();
    progress.finish(written.is_ok());
    written.map(|()| failed)
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The worker threads of `run`: `--threads`, or one per core.
fn threads(run: &RunArgs) -> usize {
    run.threads.map_or_else(default_threads, usize::from)
}

/// Each thread's share of a run's images from which batches of two are the default.
const BATCH_SHARE: usize = 4;

/// Images per model call for a run of `images` images (0 where the count is not known when the
/// model loads): `--batch-size`, or by default two where every thread gets at least
/// [`BATCH_SHARE`] of them, else one. In a batch of two the Winograd products run both images'
/// tiles in fuller panels, reading each weight once for both; a short batch is padded, so a few
/// images run one at a time.
fn batch_size(run: &RunArgs, images: usize) -> usize {
    match run.batch_size {
        Some(size) => usize::from(size),
        None if images >= BATCH_SHARE * threads(run) => 2,
        None => 1,
    }
}

/// [`discover_inputs`], less those already in the JSON Lines file `resume`; an error when
/// there are none at all.
fn pending_inputs(args: &InputArgs, resume: Option<&Path>) -> Result<Vec<Input>> {
    let mut inputs = discover_inputs(args)?;
    ensure!(!inputs.is_empty(), "no images found in {}", describe_paths(args));
    if let Some(path) = resume {
        let done = resume::completed_paths(path)?;
        inputs.retain(|input| !done.contains(&path_text(input.path())));
    }
    Ok(inputs)
}

/// The inputs named on the command line and by `--files-from`, walked, sorted and sharded.
fn discover_inputs(args: &InputArgs) -> Result<Vec<Input>> {
    let mut roots = args.paths.clone();
    if let Some(list) = &args.files_from {
        ensure!(
            list != Path::new("-") || !roots.iter().any(|root| root == Path::new("-")),
            "stdin cannot hold both the list of --files-from - and an image (-)"
        );
        roots.extend(read_path_list(list)?);
    }
    let walk = Walk::new(!args.no_recursive, &args.include, &args.exclude)?;
    let inputs = walk.discover(&roots);
    Ok(match args.shard {
        Some(shard) => discover::shard(inputs, shard),
        None => inputs,
    })
}

/// The largest path list read: ten million paths of a hundred bytes.
const MAX_PATH_LIST_BYTES: u64 = 1 << 30;

/// Paths, one per line, from a file or `-` (stdin). Blank lines are skipped; a line is taken
/// byte for byte, so a name that is not UTF-8 (as `find` prints it) is found.
fn read_path_list(list: &Path) -> Result<Vec<PathBuf>> {
    let name = list.display();
    let bytes = if list == Path::new("-") {
        read_up_to(std::io::stdin().lock(), MAX_PATH_LIST_BYTES, 0)
    } else {
        read_at_most(list, MAX_PATH_LIST_BYTES)
    };
    let bytes = bytes
        .with_context(|| format!("cannot read --files-from {name}"))?
        .with_context(|| format!("--files-from {name} is over {}", Size(MAX_PATH_LIST_BYTES)))?;
    bytes
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| path_from_bytes(line).with_context(|| format!("--files-from {name}")))
        .collect()
}

/// A path from the bytes of a line: any bytes on Unix, UTF-8 elsewhere.
#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

/// A path from the bytes of a line: any bytes on Unix, UTF-8 elsewhere.
#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> Result<PathBuf> {
    Ok(PathBuf::from(std::str::from_utf8(bytes).context("a path that is not UTF-8")?))
}

fn describe_paths(args: &InputArgs) -> String {
    let mut names: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
    if let Some(list) = &args.files_from {
        names.push(format!("the paths of {}", list.display()));
    }
    names.join(", ")
}

/// Resolves and loads the model, for batches of `batch`, its labels and its preprocessing.
fn load_classifier(
    args: &ClassifierArgs,
    top_k: u16,
    batch: usize,
    verbose: bool,
) -> Result<Classifier> {
    let source = ModelSource::resolve(args.runner.model.as_deref())?;
    load_classifier_from(&source, &source.bytes()?, args, top_k, batch, verbose)
}

/// [`load_classifier`] for a run of `photos` photos of `crops` crops each, with the photos each
/// worker takes at a time: enough for a batch of crops ([`batch_size`] of them all), so that a
/// worker holds about one batch's crops, not a batch of photos' crops.
fn load_classifier_for(
    args: &ClassifierArgs,
    top_k: u16,
    photos: usize,
    crops: Crops,
    verbose: bool,
) -> Result<(Classifier, usize)> {
    let batch = batch_size(&args.runner.run, photos * crops.count());
    let mut classifier = load_classifier(args, top_k, batch, verbose)?;
    classifier.runner.crops = crops;
    Ok((classifier, batch.div_ceil(crops.count())))
}

/// [`load_classifier`] for a model source already resolved and read (`bytes`).
fn load_classifier_from(
    source: &ModelSource,
    bytes: &[u8],
    args: &ClassifierArgs,
    top_k: u16,
    batch: usize,
    verbose: bool,
) -> Result<Classifier> {
    let runner = load_runner(source, bytes, &args.runner, Head::Scores, batch, verbose)?;
    let classes = runner.model.classes;
    let labels = load_labels(args.labels.as_deref(), classes)?;
    let top_k = usize::from(top_k);
    ensure!(top_k <= classes, "--top-k {top_k} exceeds the {classes} classes the model scores");
    Ok(Classifier { runner, labels, top_k })
}

/// What a loaded plan returns.
#[derive(Debug, Clone, Copy)]
enum Head<'a> {
    /// The class scores.
    Scores,
    /// The features: of the layer named, or by default those the classifier reads.
    Features(Option<&'a str>),
}

/// Loads the model of `source` (read: `bytes`) for `head` and batches of `batch` (see
/// [`batch_size`]), with its preprocessing and the client for URLs.
fn load_runner(
    source: &ModelSource,
    bytes: &[u8],
    args: &RunnerArgs,
    head: Head,
    batch: usize,
    verbose: bool,
) -> Result<Runner> {
    let (model, preprocess, _) = load_model(source, bytes, batch, &args.preprocess, head, verbose)?;
    let downloader = Downloader::new(args.download.connect_timeout, args.download.download_timeout);
    Ok(Runner { model, preprocess, downloader, crops: Crops::One })
}

/// Loads the model of `source` (read: `bytes`) for `head` and batches of `batch`, with its
/// preprocessing and the preset that preprocessing starts from.
fn load_model(
    source: &ModelSource,
    bytes: &[u8],
    batch: usize,
    args: &PreprocessArgs,
    head: Head,
    verbose: bool,
) -> Result<(Model, Preprocess, Preset)> {
    let started = Instant::now();
    let model = match head {
        Head::Scores => Model::from_bytes(bytes, batch),
        Head::Features(layer) => Model::features(bytes, batch, layer),
    }
    .with_context(|| format!("cannot load model {source}"))?;
    let (preprocess, preset) = preprocess_for(&model, source.origin, args);
    if verbose {
        describe(source, &model, &preprocess, preset, started);
    }
    Ok((model, preprocess, preset))
}

/// The label list: `--labels FILE` or the embedded ImageNet-1k list, checked against the
/// number of classes the model scores.
fn load_labels(file: Option<&Path>, classes: usize) -> Result<Labels> {
    let (labels, origin) = match file {
        Some(path) => (Labels::from_file(path)?, path.display().to_string()),
        None => (Labels::imagenet(), "the embedded ImageNet-1k list".to_owned()),
    };
    if labels.len() != classes {
        let hint = if file.is_none() { ": pass --labels FILE" } else { "" };
        bail!("{origin} has {} labels but the model scores {classes} classes{hint}", labels.len());
    }
    Ok(labels)
}

/// The preprocessing for `model`: the preset given, or the one its origin and input name
/// suggest, with the command line's overrides applied.
fn preprocess_for(model: &Model, origin: Origin, args: &PreprocessArgs) -> (Preprocess, Preset) {
    let preset = args.preset.unwrap_or_else(|| suggested_preset(model, origin));
    let mut settings = preset.settings(model.input.width, model.input.height);
    if let Some(resize) = args.resize {
        settings.resize = resize;
    }
    if let Some(mean) = args.mean {
        settings.mean = mean.0;
    }
    if let Some(std) = args.std {
        settings.std = std.0;
    }
    if args.bgr {
        settings.order = ChannelOrder::Bgr;
    }
    if args.rgb {
        settings.order = ChannelOrder::Rgb;
    }
    if let Some(max_pixels) = args.max_pixels {
        settings.max_pixels = max_pixels;
    }
    (settings, preset)
}

/// Caffe for the default GoogLeNet and for Caffe-style input names, torchvision otherwise.
fn suggested_preset(model: &Model, origin: Origin) -> Preset {
    let default_model = matches!(origin, Origin::Embedded | Origin::Cache);
    if default_model || matches!(model.input.name.as_str(), "data" | "data_0") {
        Preset::Caffe
    } else {
        Preset::Torchvision
    }
}

fn describe(source: &ModelSource, model: &Model, p: &Preprocess, preset: Preset, started: Instant) {
    let output = match model.output_kind {
        OutputKind::Probabilities => "classes, probabilities (the graph ends in Softmax)",
        OutputKind::Logits => "classes, logits (softmax applied)",
        OutputKind::Features => "features",
    };
    diagnostic(&format!("model: {source}"));
    diagnostic(&format!(
        "input `{}` {}x3x{}x{}; output `{}`: {} {output}",
        model.input.name,
        model.batch_size,
        model.input.height,
        model.input.width,
        model.output_name,
        model.classes
    ));
    diagnostic(&format!(
        "preprocess: preset {preset:?}, resize {:?}, {:?}, mean {:?}, std {:?}",
        p.resize, p.order, p.mean, p.std
    ));
    diagnostic(&format!("loaded and optimised in {:.0?}", started.elapsed()));
}

fn fetch_model(args: &FetchModelArgs) -> Result<Status> {
    let dest = fetch::cache_path().context("no user cache folder: set XDG_CACHE_HOME")?;
    let expected = match &args.sha256 {
        Some(hex) => Expected::sha256(hex)?,
        None => Expected::zoo(),
    };
    if !args.force && expected.matches_file(&dest) {
        diagnostic(&format!("{} is already installed and verified", dest.display()));
        return Ok(Status::Success);
    }
    match &args.from {
        Some(from) => fetch::copy(from, &expected, &dest)?,
        None => fetch::download(args.url.as_deref().unwrap_or(fetch::ZOO_URL), &expected, &dest)?,
    }
    diagnostic(&format!("installed {} (sha256 {})", dest.display(), expected.sha256));
    Ok(Status::Success)
}
