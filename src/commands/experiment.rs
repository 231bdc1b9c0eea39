//! `googlenet experiment concat-order`, `channel-use` and `ablate`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{ensure, Result};
use serde::Serialize;

use googlenet::experiment::ablate::{self, Ablation};
use googlenet::experiment::channel_use;
use googlenet::experiment::compare as compare_on;
use googlenet::experiment::concat_order::{self, Comparison};
use googlenet::inputs::Walk;
use googlenet::{Classifier, Crops, Error, Input};

use super::{announce, loaded, print_report, status, Status};
use crate::cli::{
    AblateArgs, BranchArg, ChannelUseArgs, ClassifierArgs, ConcatOrderArgs, ReportFormat,
    VariantArgs,
};
use crate::output::{diagnostic, write_whole};

/// The photo the experiments use when given no images: `assets/chelsea.png` (scikit-image,
/// CC0; see `assets/README.md`).
const BUNDLED: (&str, &[u8]) =
    ("chelsea.png (bundled)", include_bytes!("../../assets/chelsea.png"));

/// The images under `paths`, or the bundled photo when there are none.
fn images(paths: &[PathBuf]) -> Result<Vec<Input>> {
    if paths.is_empty() {
        let (name, bytes) = BUNDLED;
        return Ok(vec![Input::Upload { name: name.to_owned(), bytes: Arc::from(bytes) }]);
    }
    let inputs = Walk::new(true, &[], &[])?.discover(paths);
    ensure!(!inputs.is_empty(), "no images found");
    Ok(inputs)
}

/// The classifier the experiments load, once, with `args`.
fn classifier(args: &ClassifierArgs, verbose: bool) -> Result<Classifier> {
    let classifier = loaded(args.builder(0, 5, Crops::One).build())?;
    announce(&classifier.describe(), classifier.note(), verbose);
    Ok(classifier)
}

/// Reports an image an experiment could not use on stderr and counts it in `failed`.
fn report_failure(failed: &mut usize) -> impl FnMut(&str, &Error) + '_ {
    move |name, err| {
        diagnostic(&format!("{name}: {err}"));
        *failed += 1;
    }
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

pub(super) fn concat_order(args: &ConcatOrderArgs, verbose: bool) -> Result<Status> {
    let original = classifier(&args.variant.classifier, verbose)?;
    let compensate = !args.no_compensate;
    let variant = concat_order::reorder(&original, &args.order, &args.modules, compensate)?;
    let (comparison, failed) = compare(&original, &variant.onnx, &args.variant)?;
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
    let original = classifier(&args.variant.classifier, verbose)?;
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
    let (variant, changed) = ablate::ablate(&original, &ablation)?;
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
    variant: &[u8],
    args: &VariantArgs,
) -> Result<(Comparison, usize)> {
    if let Some(path) = &args.save {
        write_whole(path, variant)?;
    }
    let mut failed = 0;
    let comparison =
        compare_on(original, variant, &images(&args.paths)?, report_failure(&mut failed))?;
    Ok((comparison, failed))
}

pub(super) fn channel_use(args: &ChannelUseArgs, verbose: bool) -> Result<Status> {
    let classifier = classifier(&args.classifier, verbose)?;
    let layer = Some(args.layer.as_str()).filter(|layer| *layer != "all");
    // Without images, only the weights are measured.
    let inputs = if args.paths.is_empty() { Vec::new() } else { images(&args.paths)? };
    let mut failed = 0;
    let uses = channel_use::measure(&classifier, layer, &inputs, report_failure(&mut failed))?;
    let json = args.format == ReportFormat::Json;
    let reports: Vec<channel_use::Report> = uses.iter().map(channel_use::Report::new).collect();
    match reports.as_slice() {
        [report] => print_report(report, json, channel_use::Report::to_text)?,
        _ => print_report(&reports, json, |reports| channel_use::summary(reports))?,
    }
    Ok(status(failed))
}
