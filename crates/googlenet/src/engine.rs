//! One way to load and run the network: [`Classifier::builder`] resolves the model, loads and
//! optimises it for a batch size, picks its preprocessing (the preset policy) and its labels,
//! and gives a [`Classifier`] (class scores) or an [`Embedder`] (features). The command line,
//! the service and the Python package all load through it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::crops::Crops;
use crate::download::Downloader;
use crate::inspect::Network;
use crate::labels::Labels;
use crate::model::{Model, ModelSource, Origin, OutputKind};
use crate::pipeline::{embedding_records, records, run_ordered, Input, Runner};
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
    /// The most pixels an image may decode to.
    pub max_pixels: Option<u64>,
}

/// How a [`Classifier`] or an [`Embedder`] is loaded and run. Every setting has a default: the
/// model resolved as the command line resolves it (`GOOGLENET_MODEL`, the embedded model, the
/// cache of `googlenet fetch-model`), the preset its origin and input name suggest, a thread
/// per core, the top 5 classes, one crop, and [`Downloader::default`]'s limits.
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
        }
    }
}

impl Builder {
    /// The ONNX model file, instead of the one resolved by default.
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

    /// A label file (one class a line, `<synset> <names>` or just names) instead of the
    /// embedded ImageNet-1k list.
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

    /// How many classes each record keeps (5 by default).
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

    /// Loads the model for class scores, with its labels.
    pub fn build(self) -> Result<Classifier> {
        let loaded = self.load(Head::Scores)?;
        let classes = loaded.runner.model.classes;
        let labels = load_labels(self.labels.as_deref(), classes)?;
        let top_k = self.top_k;
        ensure!(top_k >= 1, "--top-k must be at least 1");
        ensure!(top_k <= classes, "--top-k {top_k} exceeds the {classes} classes the model scores");
        Ok(Classifier { plan: loaded, labels, top_k, builder: self })
    }

    /// Loads the model for the features of `layer` (a node or tensor name), or by default
    /// those its classifier reads (the global average pool).
    pub fn build_embedder(self, layer: Option<&str>) -> Result<Embedder> {
        Ok(Embedder { plan: self.load(Head::Features(layer))? })
    }

    /// Loads the model for class scores alone, without labels: the network and its
    /// preprocessing, for profiling and experiments.
    pub fn build_runner(self) -> Result<Runner> {
        Ok(self.load(Head::Scores)?.runner)
    }

    /// Resolves, reads and loads the model for `head`.
    fn load(&self, head: Head) -> Result<Plan> {
        let started = Instant::now();
        let source = ModelSource::resolve(self.model.as_deref())?;
        let bytes = source.bytes()?;
        let batch = self.batch();
        let model = match head {
            Head::Scores => Model::from_bytes(&bytes, batch),
            Head::Features(layer) => Model::features(&bytes, batch, layer),
        }
        .with_context(|| format!("cannot load model {source}"))?;
        let preset = self.preset.unwrap_or_else(|| suggested_preset(&model, source.origin));
        let preprocess = self.preprocess(preset, &model);
        let downloader = self.downloader.clone();
        let runner = Runner { model, preprocess, downloader, crops: self.crops };
        let threads = self.thread_count();
        Ok(Plan { runner, source, preset, threads, load_time: started.elapsed() })
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

/// A loaded network with what runs it: what a [`Classifier`] and an [`Embedder`] share
/// ([`Classifier::plan`], [`Embedder::plan`]).
#[derive(Debug)]
pub struct Plan {
    runner: Runner,
    source: ModelSource,
    preset: Preset,
    threads: usize,
    load_time: Duration,
}

impl Plan {
    /// The network, its preprocessing and its input readers.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// The worker threads of the runs over many inputs.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Inputs each worker takes at a time: enough for a batch of crops, so that a worker holds
    /// about one batch's crops, not a batch of photos' crops.
    pub fn chunk(&self) -> usize {
        self.runner.model.batch_size.div_ceil(self.runner.crops.count())
    }

    /// What `--verbose` says of the load, a line each.
    pub fn describe(&self) -> Vec<String> {
        let (model, p) = (&self.runner.model, &self.runner.preprocess);
        let output = match model.output_kind {
            OutputKind::Probabilities => "classes, probabilities (the graph ends in Softmax)",
            OutputKind::Logits => "classes, logits (softmax applied)",
            OutputKind::Features => "features",
        };
        vec![
            format!("model: {}", self.source),
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
            format!("loaded and optimised in {:.0?}", self.load_time),
        ]
    }

    /// Runs `work` over `inputs` on the worker threads, a chunk at a time, and hands `sink`
    /// their records in input order as each is done. A `sink` error stops the run and is
    /// returned.
    pub fn each(
        &self,
        inputs: &[Input],
        work: impl Fn(&[Input]) -> Vec<Record> + Sync,
        sink: impl FnMut(Record) -> Result<()>,
    ) -> Result<()> {
        run_ordered(inputs, self.threads, self.chunk(), work, sink)
    }
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

    /// Classifies a chunk of inputs on this thread; each gets its top classes or its own error.
    pub fn classify(&self, inputs: &[Input]) -> Vec<Record> {
        self.classify_top(inputs, self.top_k)
    }

    /// [`Classifier::classify`] keeping the `k` most probable classes.
    pub fn classify_top(&self, inputs: &[Input], k: usize) -> Vec<Record> {
        records(inputs, self.plan.runner.run(inputs), k, &self.labels)
    }

    /// Classifies `inputs` on the worker threads and hands `sink` each record in input order
    /// as soon as it and every earlier one are done. A `sink` error stops the run.
    pub fn classify_each(
        &self,
        inputs: &[Input],
        sink: impl FnMut(Record) -> Result<()>,
    ) -> Result<()> {
        self.plan.each(inputs, |chunk| self.classify(chunk), sink)
    }

    /// An [`Embedder`] for the same model and settings: the features of `layer`, or by default
    /// those the classifier reads.
    pub fn embedder(&self, layer: Option<&str>) -> Result<Embedder> {
        self.builder.clone().build_embedder(layer)
    }

    /// How many classes each record keeps.
    pub fn top_k(&self) -> usize {
        self.top_k
    }

    /// The names of the classes.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The loaded network and what runs it.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Each layer's output shape in a run, per image, as `googlenet inspect` derives it from
    /// the graph for this run's input.
    pub fn shapes(&self) -> Result<Vec<LayerShape>> {
        let model = &self.plan.runner.model;
        let (h, w) = (model.input.height as usize, model.input.width as usize);
        let bytes = self.plan.source.bytes()?;
        let network = Network::analyse(&bytes, Some(&[model.batch_size, 3, h, w]))?;
        Ok(network
            .layers
            .into_iter()
            .map(|layer| LayerShape {
                shape: layer.shape.iter().skip(1).filter_map(|d| d.parse().ok()).collect(),
                name: layer.name,
                op: layer.op,
            })
            .collect())
    }

    /// The facts of the model, as `GET /v1/model` gives them; `features` is the width of the
    /// embedder's output where there is one.
    pub fn info(&self, features: Option<usize>) -> ModelInfo {
        let (source, model) = (&self.plan.source, &self.plan.runner.model);
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
        }
    }
}

/// The network loaded for features: inputs in, records of their feature vectors out.
#[derive(Debug)]
pub struct Embedder {
    plan: Plan,
}

impl Embedder {
    /// The features of a chunk of inputs on this thread, each scaled to unit length with
    /// `normalize`, or each input's own error.
    pub fn embed(&self, inputs: &[Input], normalize: bool) -> Vec<Record> {
        embedding_records(inputs, self.plan.runner.run(inputs), normalize)
    }

    /// [`Embedder::embed`] on the worker threads, handing `sink` each record in input order.
    pub fn embed_each(
        &self,
        inputs: &[Input],
        normalize: bool,
        sink: impl FnMut(Record) -> Result<()>,
    ) -> Result<()> {
        self.plan.each(inputs, |chunk| self.embed(chunk, normalize), sink)
    }

    /// How many values each input's features hold.
    pub fn width(&self) -> usize {
        self.plan.runner.model.classes
    }

    /// The loaded network and what runs it.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
}

/// The facts of a loaded model: what `GET /v1/model` answers and the Python package's
/// `Classifier.model` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    /// The model file's name without its extension, such as `googlenet-bvlc`.
    pub name: String,
    /// Where the model came from, as `--verbose` says it.
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
        let err = load_labels(None, 10).unwrap_err().to_string();
        assert_eq!(
            err,
            "the embedded ImageNet-1k list has 1000 labels but the model scores 10 classes: \
             pass --labels FILE"
        );
    }
}
