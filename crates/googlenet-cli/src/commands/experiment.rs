//! `googlenet experiment concat-order`, `channel-use` and `ablate`.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use prost::Message;
use rayon::prelude::*;
use serde::Serialize;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::tract_ndarray::Array3;

use googlenet::crops::Crops;
use googlenet::eval::true_synset;
use googlenet::experiment::ablate::{self, Ablation};
use googlenet::experiment::channel_use::{self, ChannelUse};
use googlenet::experiment::concat_order::{self, Comparison};
use googlenet::inspect::Network;
use googlenet::model::{read_proto, Model, ModelSource, Probe};
use googlenet::pipeline::{run_ordered, Runner, Walk};
use googlenet::record::{one_line, path_text, write_whole};
use googlenet::Classifier;

use super::{announce, print_report, status, Status};
use crate::cli::{
    AblateArgs, BranchArg, ChannelUseArgs, ConcatOrderArgs, ReportFormat, VariantArgs,
};
use crate::output::diagnostic;

/// The photo the experiments use when given no images: `assets/chelsea.png` (scikit-image,
/// CC0; see `assets/README.md`).
const BUNDLED: (&str, &[u8]) =
    ("chelsea.png (bundled)", include_bytes!("../../../../assets/chelsea.png"));

/// Runs `work` on the tensor of every image under `paths` (or of the bundled photo when there
/// are none) in parallel, and hands each image's name and result to `sink` in order. Images
/// that cannot be used are reported on stderr; returns how many.
fn for_each_image<R: Send>(
    paths: &[PathBuf],
    runner: &Runner,
    threads: usize,
    work: impl Fn(&Array3<f32>) -> Result<R> + Sync,
    mut sink: impl FnMut(&str, R),
) -> Result<usize> {
    if paths.is_empty() {
        let tensor = runner.preprocess().tensor(BUNDLED.1).context("the bundled photo")?;
        sink(BUNDLED.0, work(&tensor)?);
        return Ok(0);
    }
    let inputs = Walk::new(true, &[], &[])?.discover(paths);
    ensure!(!inputs.is_empty(), "no images found");
    let mut failed = 0;
    run_ordered(
        &inputs,
        threads,
        1,
        |chunk| {
            chunk
                .iter()
                .map(|input| {
                    let result = runner
                        .tensor(input)
                        .and_then(|tensor| work(&tensor))
                        .map_err(|e| one_line(&e));
                    (path_text(input.path()), result)
                })
                .collect()
        },
        |(name, result)| {
            match result {
                Ok(value) => sink(&name, value),
                Err(reason) => {
                    diagnostic(&format!("{name}: {reason}"));
                    failed += 1;
                }
            }
            Ok(())
        },
    )?;
    Ok(failed)
}

/// What `experiment concat-order` reports.
#[derive(Debug, Serialize)]
struct ConcatOrderReport {
    order: String,
    compensated: bool,
    modules: Vec<String>,
    permuted_weights: usize,
    saved: Option<PathBuf>,
    comparison: Comparison,
    summary: String,
}

/// The model a variant is built from: loaded as a classifier, its ONNX graph, and its layers.
fn original(args: &VariantArgs, verbose: bool) -> Result<(Classifier, ModelProto, Network)> {
    let bytes = ModelSource::resolve(args.classifier.runner.model.as_deref())?.bytes()?;
    let classifier = args.classifier.builder(0, 5, Crops::One).build()?;
    let classifier = classifier;
    announce(classifier.plan(), verbose);
    Ok((classifier, read_proto(&bytes)?, Network::analyse(&bytes, None)?))
}

pub(super) fn concat_order(args: &ConcatOrderArgs, verbose: bool) -> Result<Status> {
    let (original, proto, network) = original(&args.variant, verbose)?;
    let compensate = !args.no_compensate;
    let variant = concat_order::reorder(&proto, &network, &args.order, &args.modules, compensate)?;
    let (comparison, failed) = compare(&original, &variant.proto, &args.variant)?;
    let report = ConcatOrderReport {
        order: args.order.to_string(),
        compensated: compensate,
        modules: variant.modules.iter().map(|(name, _)| name.clone()).collect(),
        permuted_weights: variant.permuted,
        saved: args.variant.save.clone(),
        summary: concat_order::describe(&variant, &args.order, compensate),
        comparison,
    };
    print_report(&report, args.variant.format == ReportFormat::Json, |r| {
        let saved = r.saved.as_ref().map_or(String::new(), |p| format!("saved: {}\n", p.display()));
        format!("{}\n{saved}{}", r.summary, r.comparison.to_text())
    })?;
    Ok(status(failed))
}

/// What `experiment ablate` reports.
#[derive(Debug, Serialize)]
struct AblateReport {
    removed: String,
    changed: Vec<String>,
    saved: Option<PathBuf>,
    comparison: Comparison,
}

pub(super) fn ablate(args: &AblateArgs, verbose: bool) -> Result<Status> {
    let (original, proto, network) = original(&args.variant, verbose)?;
    let (ablation, removed) = match args.branch {
        Some(BranchArg(kind)) => {
            let modules: Vec<String> =
                args.modules.iter().filter(|m| *m != "all").cloned().collect();
            let which =
                if modules.is_empty() { "every module".to_owned() } else { modules.join(", ") };
            let name = kind.title();
            (Ablation::Branch { kind, modules }, format!("the {name} branch of {which}"))
        }
        None => (Ablation::Lrn, "the LRN layers".to_owned()),
    };
    let (variant, changed) = ablate::ablate(&proto, &network, &ablation)?;
    let (comparison, failed) = compare(&original, &variant, &args.variant)?;
    let report = AblateReport { removed, changed, saved: args.variant.save.clone(), comparison };
    print_report(&report, args.variant.format == ReportFormat::Json, |r| {
        let saved = r.saved.as_ref().map_or(String::new(), |p| format!("saved: {}\n", p.display()));
        let nodes = r.changed.join(", ");
        format!("removed {} ({nodes})\n{saved}{}", r.removed, r.comparison.to_text())
    })?;
    Ok(status(failed))
}

/// Runs `original` and the `variant` (written to `--save` first, when given) on every image
/// of `args`, and compares their probabilities. Returns the comparison and how many images
/// failed.
fn compare(
    original: &Classifier,
    variant: &ModelProto,
    args: &VariantArgs,
) -> Result<(Comparison, usize)> {
    let bytes = variant.encode_to_vec();
    if let Some(path) = &args.save {
        write_whole(path, &bytes)?;
    }
    let model = Model::from_bytes(&bytes, 1).context("cannot load the variant")?;
    let mut comparison = Comparison::default();
    let failed = for_each_image(
        &args.paths,
        original.plan().runner(),
        original.plan().threads(),
        |tensor| {
            let image = std::slice::from_ref(tensor);
            let first = |p: Vec<Vec<f32>>| p.into_iter().next().context("no output");
            Ok((first(original.plan().runner().model().run(image)?)?, first(model.run(image)?)?))
        },
        |name, (a, b)| {
            let truth = true_synset(Path::new(name))
                .and_then(|synset| original.labels().by_synset(&synset).map(|(index, _)| index));
            comparison.add(&a, &b, truth);
        },
    )?;
    Ok((comparison, failed))
}

pub(super) fn channel_use(args: &ChannelUseArgs, verbose: bool) -> Result<Status> {
    let source = ModelSource::resolve(args.classifier.runner.model.as_deref())?;
    let bytes = source.bytes()?;
    let network = Network::analyse(&bytes, None)?;
    let proto = read_proto(&bytes)?;
    let layers = match args.layer.as_str() {
        "all" => channel_use::pointwise_convolutions(&network),
        name => vec![name.to_owned()],
    };
    let mut uses = layers
        .iter()
        .map(|name| ChannelUse::new(&proto, &network, name))
        .collect::<Result<Vec<_>>>()?;
    let mut failed = 0;
    if !args.paths.is_empty() {
        let classifier = args.classifier.builder(0, 1, Crops::One).build()?;
        let classifier = classifier;
        announce(classifier.plan(), verbose);
        let inputs: Vec<&str> = uses.iter().map(|u| u.input.as_str()).collect();
        let probe = Probe::new(&bytes, &inputs)?;
        failed = for_each_image(
            &args.paths,
            classifier.plan().runner(),
            classifier.plan().threads(),
            |tensor| probe.run(tensor),
            |_, activations| {
                // The layers' sums are independent: each is taken on a core of its own.
                uses.par_iter_mut().zip(activations.par_iter()).for_each(|(one, activation)| {
                    if let Err(err) = one.add(activation) {
                        diagnostic(&format!("{}: {err:#}", one.layer));
                    }
                });
            },
        )?;
    }
    let json = args.format == ReportFormat::Json;
    let reports: Vec<channel_use::Report> = uses.iter().map(channel_use::Report::new).collect();
    match reports.as_slice() {
        [report] => print_report(report, json, channel_use::Report::to_text)?,
        _ => print_report(&reports, json, |reports| channel_use::summary(reports))?,
    }
    Ok(status(failed))
}
