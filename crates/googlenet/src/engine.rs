//! One way to load and run the network: [`Classifier::builder`] resolves the model and reads
//! it once, loads and optimises it for a batch size, picks its preprocessing (the preset
//! policy) and its labels, and gives a [`Classifier`] (class scores) or an [`Embedder`]
//! (features). The command line, the service and the Python package all load through it, and
//! every run goes through [`Classifier::classify_each`] or [`Embedder::embed_each`].

use std::borrow::Cow;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::crops::Crops;
use crate::download::Downloader;
use crate::error::{Error, Result};
use crate::inputs::Input;
use crate::inspect::profile::Profile;
use crate::inspect::Network;
use crate::labels::Labels;
use crate::model::{Kernels, Model, ModelSource, Origin, OutputKind};
use crate::pipeline::{embedding_records, records, run_ordered, Runner};
use crate::precision::{self, Precision, Resolved};
use crate::preprocess::{ChannelOrder, Preprocess, Preset, ResizeMode};
use crate::record::Record;

/// Each thread's share of a run's images from which batches of two are the default.
const BATCH_SHARE: usize = 4;

/// Changes to a preset's preprocessing; each one left `None` keeps the preset's setting.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Adjust {
    /// How the image is fitted to the input.
    pub resize: Option<ResizeMode>,
    /// The per-channel mean subtracted, RGB, in 0..255 units.
    pub mean: Option<[f32; 3]>,
    /// The per-channel divisor, RGB, in 0..255 units.
    pub std: Option<[f32; 3]>,
    /// The order of the tensor's channels.
    pub order: Option<ChannelOrder>,
    /// The most pixels an image may decode to (`max_pixels`).
    pub max_pixels: Option<u64>,
}

/// How a [`Classifier`] or an [`Embedder`] is loaded and run. Every setting has a default: the
/// model resolved from [`crate::MODEL_ENV`], the embedded model, then the cache of `googlenet
/// fetch-model` ([`crate::cache_path`]); the preset its origin and input name suggest; a thread
/// per core; the top 5 classes; one crop; and [`Downloader::default`]'s limits.
#[derive(Debug, Clone)]
pub struct Builder {
    model: Option<PathBuf>,
    preset: Option<Preset>,
    adjust: Adjust,
    labels: Option<PathBuf>,
    threads: Option<usize>,
    batch_size: Option<usize>,
    images: usize,
    top_k: usize,
    crops: Crops,
    downloader: Downloader,
    precision: Precision,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            model: None,
            preset: None,
            adjust: Adjust::default(),
            labels: None,
            threads: None,
            batch_size: None,
            images: 0,
            top_k: 5,
            crops: Crops::One,
            downloader: Downloader::default(),
            precision: Precision::F32,
        }
    }
}

impl Builder {
    /// The ONNX model file (`model`), instead of the one resolved by default.
    pub fn model(mut self, path: impl Into<PathBuf>) -> Builder {
        self.model = Some(path.into());
        self
    }

    /// [`Builder::model`] where `path` may be absent (the default model).
    pub fn model_or_default(mut self, path: Option<&Path>) -> Builder {
        self.model = path.map(Path::to_owned);
        self
    }

    /// The preprocessing preset, instead of the one the model suggests.
    pub fn preset(mut self, preset: Option<Preset>) -> Builder {
        self.preset = preset;
        self
    }

    /// Changes to the preset's preprocessing.
    pub fn adjust(mut self, adjust: Adjust) -> Builder {
        self.adjust = adjust;
        self
    }

    /// A label file (`labels`: one class a line, `<synset> <names>` or just names) instead of
    /// the embedded ImageNet-1k list.
    pub fn labels(mut self, path: Option<&Path>) -> Builder {
        self.labels = path.map(Path::to_owned);
        self
    }

    /// Worker threads for runs over many inputs; by default one per core.
    pub fn threads(mut self, threads: Option<usize>) -> Builder {
        self.threads = threads.map(|n| n.max(1));
        self
    }

    /// Images per run of the network; by default see [`Builder::images`].
    pub fn batch_size(mut self, batch_size: Option<usize>) -> Builder {
        self.batch_size = batch_size.map(|n| n.max(1));
        self
    }

    /// How many images the work will have (0 when not known), for the default batch size: two
    /// where every thread gets at least four of them, else one. In a batch of two the Winograd
    /// products run both images' tiles in fuller panels, reading each weight once for both; a
    /// short batch is padded, so a few images run one at a time.
    pub fn images(mut self, images: usize) -> Builder {
        self.images = images;
        self
    }

    /// How many classes each record keeps (`top_k`, 5 by default).
    pub fn top_k(mut self, k: usize) -> Builder {
        self.top_k = k;
        self
    }

    /// The crops of each image whose outputs are averaged ([`Crops::One`] by default).
    pub fn crops(mut self, crops: Crops) -> Builder {
        self.crops = crops;
        self
    }

    /// The client, with its time and byte limits, for inputs named by URL.
    pub fn downloader(mut self, downloader: Downloader) -> Builder {
        self.downloader = downloader;
        self
    }

    /// The worker threads: as set, or one per core.
    pub fn thread_count(&self) -> usize {
        self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// The batch size the plan is loaded for: as set, or by the rule of [`Builder::images`].
    pub fn batch(&self) -> usize {
        match self.batch_size {
            Some(size) => size,
            None if self.images * self.crops.count() >= BATCH_SHARE * self.thread_count() => 2,
            None => 1,
        }
    }

    /// The precision of the convolutions (default f32). Where this CPU has no kernel for it,
    /// the model runs at f32 and [`Classifier::note`] says why.
    pub fn precision(mut self, precision: Precision) -> Builder {
        self.precision = precision;
        self
    }

    /// Loads the model for class scores, with its labels.
    pub fn build(self) -> Result<Classifier> {
        let file = Arc::new(ModelFile::read(self.model.as_deref())?);
        self.classifier(file)
    }

    /// Loads the model for the features of `layer` (a node or tensor name), or by default
    /// those its classifier reads (the global average pool).
    pub fn build_embedder(self, layer: Option<&str>) -> Result<Embedder> {
        let file = Arc::new(ModelFile::read(self.model.as_deref())?);
        Ok(Embedder { plan: self.load(file, Head::Features(layer))? })
    }

    /// The model's layers, each output's shape inferred for the input shape `input_shape`
    /// (`N x C x H x W`), or by default the model's own with a symbolic batch: the graph as
    /// the paper's Table 1 reads it, without loading the model to run.
    pub fn network(self, input_shape: Option<&[usize]>) -> Result<Network> {
        let file = ModelFile::read(self.model.as_deref())?;
        Network::analyse(&file.bytes, input_shape).map_err(|err| {
            Error::model(&err.context(format!("cannot analyse model {}", file.source)))
        })
    }

    /// A [`Classifier`] of the model in `file`.
    fn classifier(self, file: Arc<ModelFile>) -> Result<Classifier> {
        let plan = self.load(file, Head::Scores)?;
        let classes = plan.runner.model().classes;
        let labels = load_labels(self.labels.as_deref(), classes)?;
        let top_k = self.top_k;
        check_top_k(top_k, classes)?;
        Ok(Classifier { plan, labels, top_k, builder: self })
    }

    /// Loads the model in `file` for `head`.
    fn load(&self, file: Arc<ModelFile>, head: Head) -> Result<Plan> {
        let started = Instant::now();
        let batch = self.batch();
        let resolved = precision::resolve(self.precision)?;
        let model = match head {
            Head::Scores => Model::with_kernels(&file.bytes, batch, resolved.kernels),
            Head::Features(layer) => Model::features(&file.bytes, batch, layer, resolved.kernels),
        }
        .map_err(|err| Error::model(&err.context(format!("cannot load model {}", file.source))))?;
        let preset = self.preset.unwrap_or_else(|| suggested_preset(&model, file.source.origin));
        let preprocess = self.preprocess(preset, &model);
        let downloader = self.downloader.clone();
        let runner = Runner { model, preprocess, downloader, crops: self.crops };
        let threads = self.thread_count();
        Ok(Plan { runner, file, preset, threads, resolved, load_time: started.elapsed() })
    }

    /// The preprocessing of `preset` for `model`'s input, adjusted.
    fn preprocess(&self, preset: Preset, model: &Model) -> Preprocess {
        let mut settings = preset.settings(model.input.width, model.input.height);
        let adjust = self.adjust;
        settings.resize = adjust.resize.unwrap_or(settings.resize);
        settings.mean = adjust.mean.unwrap_or(settings.mean);
        settings.std = adjust.std.unwrap_or(settings.std);
        settings.order = adjust.order.unwrap_or(settings.order);
        settings.max_pixels = adjust.max_pixels.unwrap_or(settings.max_pixels);
        settings
    }
}

/// What a loaded plan returns.
#[derive(Debug, Clone, Copy)]
enum Head<'a> {
    /// The class scores.
    Scores,
    /// The features: of the layer named, or by default those the classifier reads.
    Features(Option<&'a str>),
}

/// A model resolved and read once: where it came from and its ONNX bytes (borrowed from the
/// binary when embedded), shared by the plans loaded from it.
#[derive(Debug)]
pub(crate) struct ModelFile {
    /// Where it came from.
    pub(crate) source: ModelSource,
    /// Its ONNX bytes.
    pub(crate) bytes: Cow<'static, [u8]>,
}

impl ModelFile {
    /// Resolves the model (`path`, or the default) and reads it.
    fn read(path: Option<&Path>) -> Result<ModelFile> {
        let source = ModelSource::resolve(path).map_err(|err| Error::model(&err))?;
        let bytes = source.bytes().map_err(|err| Error::model(&err))?;
        Ok(ModelFile { source, bytes })
    }
}

/// `top_k`, checked against the `classes` a model scores.
fn check_top_k(top_k: usize, classes: usize) -> Result<()> {
    if top_k == 0 {
        return Err(Error::setting("top_k", "must be at least 1"));
    }
    if top_k > classes {
        let problem = format!("{top_k} exceeds the {classes} classes the model scores");
        return Err(Error::setting("top_k", problem));
    }
    Ok(())
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

/// The label list: `file` or the embedded ImageNet-1k list, checked against the number of
/// classes the model scores.
fn load_labels(file: Option<&Path>, classes: usize) -> Result<Labels> {
    let labels = match file {
        Some(path) => Labels::from_file(path).map_err(|err| Error::file(&err))?,
        None => Labels::imagenet(),
    };
    if labels.len() == classes {
        return Ok(labels);
    }
    let problem = match file {
        Some(path) => {
            format!("{} has {} labels but the model scores {classes}", path.display(), labels.len())
        }
        None => format!(
            "is needed: the embedded ImageNet-1k list has {} labels but the model scores {classes} \
             classes",
            labels.len()
        ),
    };
    Err(Error::setting("labels", problem))
}

/// A loaded network with what runs it: what a [`Classifier`] and an [`Embedder`] share.
#[derive(Debug)]
struct Plan {
    runner: Runner,
    file: Arc<ModelFile>,
    preset: Preset,
    threads: usize,
    resolved: Resolved,
    load_time: Duration,
}

impl Plan {
    /// Inputs each worker takes at a time: enough for a batch of crops, so that a worker holds
    /// about one batch's crops, not a batch of photos' crops.
    fn chunk(&self) -> usize {
        self.runner.model().batch_size.div_ceil(self.runner.crops.count())
    }

    /// What the load was, a line each.
    fn describe(&self) -> Vec<String> {
        let (model, p) = (self.runner.model(), self.runner.preprocess());
        let output = match model.output_kind {
            OutputKind::Probabilities => "classes, probabilities (the graph ends in Softmax)",
            OutputKind::Logits => "classes, logits (softmax applied)",
            OutputKind::Features => "features",
        };
        vec![
            format!("model: {}", self.file.source),
            format!(
                "input `{}` {}x3x{}x{}; output `{}`: {} {output}",
                model.input.name,
                model.batch_size,
                model.input.height,
                model.input.width,
                model.output_name,
                model.classes
            ),
            format!(
                "preprocess: preset {:?}, resize {:?}, {:?}, mean {:?}, std {:?}",
                self.preset, p.resize, p.order, p.mean, p.std
            ),
            format!(
                "precision: {} on the {} kernel path",
                self.resolved.precision,
                self.resolved.kernels.name()
            ),
            format!("loaded and optimised in {:.0?}", self.load_time),
        ]
    }

    /// Runs `work` over `inputs` on the worker threads, a chunk at a time, and hands `sink`
    /// their records in input order as each is done. A `sink` error stops the run and is
    /// returned.
    fn each<E>(
        &self,
        inputs: &[Input],
        work: impl Fn(&[Input]) -> Vec<Record> + Sync,
        sink: impl FnMut(Record) -> Result<(), E>,
    ) -> Result<(), E> {
        run_ordered(inputs, self.threads, self.chunk(), work, sink)
    }
}

/// Every record of `run`, which hands them to a sink that cannot fail.
fn collected(run: impl FnOnce(&mut dyn FnMut(Record) -> Result<(), Infallible>)) -> Vec<Record> {
    let mut records = Vec::new();
    run(&mut |record| {
        records.push(record);
        Ok(())
    });
    records
}

/// GoogLeNet, or another ImageNet-style ONNX classifier, loaded with its preprocessing and
/// labels: inputs in, records of their most probable classes out.
#[derive(Debug)]
pub struct Classifier {
    plan: Plan,
    labels: Labels,
    top_k: usize,
    builder: Builder,
}

impl Classifier {
    /// The settings to load one with.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The records of `inputs`, in their order: each one's top classes or its own error. For
    /// many inputs, [`Classifier::classify_each`] hands each record on as it is done.
    pub fn classify(&self, inputs: &[Input]) -> Vec<Record> {
        collected(|sink| {
            let _ = self.classify_each(inputs, sink);
        })
    }

    /// Classifies `inputs` on the worker threads and hands `sink` each record in input order
    /// as soon as it and every earlier one are done. A `sink` error stops the run and is
    /// returned; an input's own error is its record's, and the run goes on past it.
    pub fn classify_each<E>(
        &self,
        inputs: &[Input],
        sink: impl FnMut(Record) -> Result<(), E>,
    ) -> Result<(), E> {
        self.classify_each_top(inputs, self.top_k, sink)
    }

    /// [`Classifier::classify_each`] keeping the `k` most probable classes (at most as many
    /// as the model scores).
    pub fn classify_each_top<E>(
        &self,
        inputs: &[Input],
        k: usize,
        sink: impl FnMut(Record) -> Result<(), E>,
    ) -> Result<(), E> {
        let runner = &self.plan.runner;
        let work = |chunk: &[Input]| records(chunk, runner.run(chunk), k, &self.labels);
        self.plan.each(inputs, work, sink)
    }

    /// An [`Embedder`] for the same model and settings, loaded from the bytes already read:
    /// the features of `layer`, or by default those the classifier reads.
    pub fn embedder(&self, layer: Option<&str>) -> Result<Embedder> {
        let file = Arc::clone(&self.plan.file);
        Ok(Embedder { plan: self.builder.load(file, Head::Features(layer))? })
    }

    /// How many classes each record keeps.
    pub fn top_k(&self) -> usize {
        self.top_k
    }

    /// Checks that `k` classes can be kept: at least 1, at most as many as the model scores.
    pub fn check_top_k(&self, k: usize) -> Result<()> {
        check_top_k(k, self.plan.runner.model().classes)
    }

    /// The names of the classes.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The worker threads of [`Classifier::classify_each`].
    pub fn threads(&self) -> usize {
        self.plan.threads
    }

    /// What was loaded and how, a line each: the model and where it came from, its input and
    /// output, the preprocessing, the precision and kernel path, and the time the load took.
    pub fn describe(&self) -> Vec<String> {
        self.plan.describe()
    }

    /// Why the model runs at another precision than the one asked for, where it does: one
    /// line, for the user to see.
    pub fn note(&self) -> Option<&str> {
        self.plan.resolved.note.as_deref()
    }

    /// Each layer's output shape in a run, per image, as [`Builder::network`] derives it from
    /// the graph for this run's input.
    pub fn shapes(&self) -> Result<Vec<LayerShape>> {
        Ok(self
            .network()?
            .layers
            .into_iter()
            .map(|layer| LayerShape {
                shape: layer.shape.iter().skip(1).filter_map(|d| d.parse().ok()).collect(),
                name: layer.name,
                op: layer.op,
            })
            .collect())
    }

    /// The model's layers at this classifier's input (its batch, channels, height and width).
    pub fn network(&self) -> Result<Network> {
        let model = self.plan.runner.model();
        let (h, w) = (model.input.height as usize, model.input.width as usize);
        Network::analyse(&self.plan.file.bytes, Some(&[model.batch_size, 3, h, w]))
            .map_err(|err| Error::model(&err))
    }

    /// Times every node of the plan over `runs` runs (after one to warm up) of a batch of
    /// copies of `image`, or of a plain grey image, with the multiply-adds of each layer.
    pub fn profile(&self, image: Option<&Input>, runs: usize) -> Result<Profile> {
        let runner = &self.plan.runner;
        let tensor = match image {
            Some(input) => runner.tensor(input)?,
            None => {
                let p = runner.preprocess();
                p.normalise(&image::RgbImage::from_pixel(p.width, p.height, image::Rgb([128; 3])))
            }
        };
        let model = runner.model();
        let (nodes, total) = model.profile(&tensor, runs).map_err(|err| Error::model(&err))?;
        let network =
            Network::analyse(&self.plan.file.bytes, None).map_err(|err| Error::model(&err))?;
        let macs = network.layers.iter().map(|l| (l.name.clone(), l.macs)).collect();
        Ok(Profile::new(&nodes, total, runs, model.batch_size, &macs))
    }

    /// The facts of the model, as `GET /v1/model` gives them; `features` is the width of the
    /// embedder's output where there is one.
    pub fn info(&self, features: Option<usize>) -> ModelInfo {
        let (source, model) = (&self.plan.file.source, self.plan.runner.model());
        ModelInfo {
            name: source.path.file_stem().map_or_else(String::new, |n| n.to_string_lossy().into()),
            source: source.to_string(),
            input: InputInfo {
                name: model.input.name.clone(),
                width: model.input.width,
                height: model.input.height,
            },
            output: model.output_name.clone(),
            classes: model.classes,
            features,
            preset: self.plan.preset.name().to_owned(),
            top_k: self.top_k,
            precision: self.plan.resolved.precision.name().to_owned(),
            kernel: self.plan.resolved.kernels.name().to_owned(),
        }
    }

    /// The model's ONNX bytes, as read once at load.
    pub(crate) fn model_bytes(&self) -> &[u8] {
        &self.plan.file.bytes
    }

    /// The operators and precision the network runs on, for a variant of it to run on too.
    pub(crate) fn kernels(&self) -> Kernels {
        self.plan.resolved.kernels
    }

    /// What runs the network: its model, preprocessing and readers.
    pub(crate) fn runner(&self) -> &Runner {
        &self.plan.runner
    }
}

/// The network loaded for features: inputs in, records of their feature vectors out.
#[derive(Debug)]
pub struct Embedder {
    plan: Plan,
}

impl Embedder {
    /// The features of `inputs`, in their order, each scaled to unit length with `normalize`,
    /// or each input's own error. For many inputs, [`Embedder::embed_each`] hands each record
    /// on as it is done.
    pub fn embed(&self, inputs: &[Input], normalize: bool) -> Vec<Record> {
        collected(|sink| {
            let _ = self.embed_each(inputs, normalize, sink);
        })
    }

    /// [`Embedder::embed`] on the worker threads, handing `sink` each record in input order
    /// as soon as it and every earlier one are done. A `sink` error stops the run.
    pub fn embed_each<E>(
        &self,
        inputs: &[Input],
        normalize: bool,
        sink: impl FnMut(Record) -> Result<(), E>,
    ) -> Result<(), E> {
        let runner = &self.plan.runner;
        let work = |chunk: &[Input]| embedding_records(chunk, runner.run(chunk), normalize);
        self.plan.each(inputs, work, sink)
    }

    /// How many values each input's features hold.
    pub fn width(&self) -> usize {
        self.plan.runner.model().classes
    }

    /// What was loaded and how, a line each, as [`Classifier::describe`] says it.
    pub fn describe(&self) -> Vec<String> {
        self.plan.describe()
    }

    /// Why the model runs at another precision than the one asked for, as
    /// [`Classifier::note`] says it.
    pub fn note(&self) -> Option<&str> {
        self.plan.resolved.note.as_deref()
    }
}

/// The facts of a loaded model: what `GET /v1/model` answers and the Python package's
/// `Classifier.model` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    /// The model file's name without its extension, such as `googlenet-bvlc`.
    pub name: String,
    /// Where the model came from, as [`Classifier::describe`] says it.
    pub source: String,
    /// The input tensor.
    pub input: InputInfo,
    /// The output tensor's name.
    pub output: String,
    /// How many classes it scores.
    pub classes: usize,
    /// How many values an embedding holds, when the features can be found.
    pub features: Option<usize>,
    /// The preprocessing preset the settings start from.
    pub preset: String,
    /// Top classes per answer unless asked for more or fewer.
    pub top_k: usize,
    /// The precision the convolutions run at: `f32`, `bf16` or `int8` ([`Precision::name`]).
    pub precision: String,
    /// The kernel path: `amx`, `avx512bf16`, `avx512`, `avx2` or `tract` (see [`crate::ISA_ENV`]).
    pub kernel: String,
}

/// A layer's output in a run ([`Classifier::shapes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerShape {
    /// The node's name in the graph, such as `inception_3a/output`.
    pub name: String,
    /// Its ONNX operator.
    pub op: String,
    /// Its output for one image: channels, height, width (or just the values of a flat one).
    pub shape: Vec<usize>,
}

/// The model's input, as [`ModelInfo`] describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputInfo {
    /// Its name in the graph.
    pub name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_of_two_once_every_thread_has_four_images() {
        let builder = Classifier::builder().threads(Some(2));
        assert_eq!(builder.clone().images(7).batch(), 1);
        assert_eq!(builder.clone().images(8).batch(), 2);
        assert_eq!(builder.clone().images(1).crops(Crops::Ten).batch(), 2);
        assert_eq!(builder.images(1000).batch_size(Some(5)).batch(), 5);
    }

    #[test]
    fn labels_must_match_the_classes() {
        assert_eq!(load_labels(None, 1000).unwrap().len(), 1000);
        let err = load_labels(None, 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "labels is needed: the embedded ImageNet-1k list has 1000 labels but the model scores \
             10 classes"
        );
        assert!(matches!(err, Error::Setting { setting: "labels", .. }));
        assert_eq!(check_top_k(0, 10).unwrap_err().to_string(), "top_k must be at least 1");
        assert_eq!(
            check_top_k(11, 10).unwrap_err().to_string(),
            "top_k 11 exceeds the 10 classes the model scores"
        );
    }
}
