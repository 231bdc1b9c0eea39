//! The subcommands: glue from parsed arguments to the library's modules.

use std::io;
use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use rayon::prelude::*;

use crate::classify::top_k;
use crate::cli::{ClassifyArgs, Cli, Command, FetchModelArgs, ModelArgs, PreprocessArgs};
use crate::labels::Labels;
use crate::model::fetch::{self, Expected};
use crate::model::{Model, ModelSource, Origin, OutputKind};
use crate::output::{self, diagnostic, Outcome, Record};
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
        Command::FetchModel(args) => fetch_model(&args),
    }
}

/// A model with its labels and preprocessing, ready to classify images.
struct Classifier {
    model: Model,
    labels: Labels,
    preprocess: Preprocess,
}

impl Classifier {
    fn new(
        model_args: &ModelArgs,
        preprocess_args: &PreprocessArgs,
        verbose: bool,
    ) -> Result<Self> {
        let source = ModelSource::resolve(model_args.model.as_deref())?;
        let started = Instant::now();
        let model = Model::load(&source)?;
        let labels = load_labels(model_args.labels.as_deref(), model.classes)?;
        let (preprocess, preset) = preprocess_for(&model, source.origin, preprocess_args);
        if verbose {
            describe(&source, &model, &preprocess, preset, started);
        }
        Ok(Classifier { model, labels, preprocess })
    }

    fn classify(&self, path: &Path, k: usize) -> Outcome {
        let result = self
            .preprocess
            .load(path)
            .map_err(anyhow::Error::from)
            .and_then(|tensor| self.model.probabilities(tensor).context("inference failed"));
        match result {
            Ok(probabilities) => Outcome::Predictions(top_k(&probabilities, k, &self.labels)),
            Err(err) => Outcome::Error(output::one_line(&err)),
        }
    }
}

fn classify(args: &ClassifyArgs, verbose: bool) -> Result<Status> {
    let classifier = Classifier::new(&args.model, &args.preprocess, verbose)?;
    let k = usize::from(args.top_k);
    ensure!(
        k <= classifier.model.classes,
        "--top-k {k} exceeds the {} classes the model scores",
        classifier.model.classes
    );
    let records: Vec<Record> =
        args.paths.par_iter().map(|path| Record::new(path, classifier.classify(path, k))).collect();
    let mut writer = output::writer(args.format, Box::new(io::stdout().lock()));
    let mut failed = 0;
    for record in &records {
        if let Outcome::Error(reason) = &record.outcome {
            diagnostic(&format!("{}: {reason}", record.path));
            failed += 1;
        }
        writer.record(record)?;
    }
    writer.finish()?;
    Ok(if failed == 0 { Status::Success } else { Status::SomeInputsFailed })
}

/// The label list: `--labels FILE` or the embedded ImageNet-1k list, checked against the
/// number of classes the model scores.
fn load_labels(file: Option<&Path>, classes: usize) -> Result<Labels> {
    let (labels, origin) = match file {
        Some(path) => (Labels::from_file(path)?, path.display().to_string()),
        None => (Labels::imagenet(), "the embedded ImageNet-1k list".to_owned()),
    };
    ensure!(
        labels.len() == classes,
        "{origin} has {} labels but the model scores {classes} classes{}",
        labels.len(),
        if file.is_none() { ": pass --labels FILE" } else { "" }
    );
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
        OutputKind::Probabilities => "probabilities (the graph ends in Softmax)",
        OutputKind::Logits => "logits (softmax applied)",
    };
    diagnostic(&format!("model: {source}"));
    diagnostic(&format!(
        "input `{}` 1x3x{}x{}; output `{}`: {} classes, {output}",
        model.input.name, model.input.height, model.input.width, model.output_name, model.classes
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
