//! `googlenet explain`: the occlusion map of one photo.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use googlenet::crops::Crops;
use googlenet::pipeline::Input;
use googlenet::record::{path_text, write_whole};
use googlenet::{explain, Cancel};

use super::{announce, print_report, Status};
use crate::cli::{ExplainArgs, ReportFormat};

/// What `explain` reports.
#[derive(Debug, Serialize)]
struct ExplainReport {
    image: String,
    class: usize,
    label: String,
    probability: f32,
    largest_drop: f32,
    hottest_patch: [u32; 4],
    heatmap: PathBuf,
}

pub(super) fn explain(args: &ExplainArgs, verbose: bool) -> Result<Status> {
    let builder = args.classifier.builder(0, 1, Crops::One);
    let classifier = builder.build()?;
    announce(classifier.plan(), verbose);
    let name = args.image.display();
    let runner = classifier.plan().runner();
    let bytes = runner.bytes(&Input::from_arg(&args.image)).with_context(|| format!("{name}"))?;
    let threads = classifier.plan().threads();
    let (patch, stride) = (usize::from(args.patch), usize::from(args.stride));
    let explained = explain::explain(
        runner.model(),
        runner.preprocess(),
        &bytes,
        (patch, stride),
        (threads, &Cancel::new()),
    )
    .with_context(|| format!("{name}"))?;
    write_whole(&args.out, &explained.png()?)?;
    let occlusion = &explained.occlusion;
    let [x0, y0, x1, y1] = explained.hottest_patch();
    let drop = occlusion.hottest.2;
    let (width, height) = explained.heatmap.dimensions();
    let report = ExplainReport {
        image: path_text(&args.image),
        class: occlusion.class,
        label: classifier
            .labels()
            .get(occlusion.class)
            .map_or_else(String::new, |l| l.name.clone()),
        probability: occlusion.probability,
        largest_drop: drop,
        hottest_patch: [x0, y0, x1, y1],
        heatmap: args.out.clone(),
    };
    print_report(&report, args.format == ReportFormat::Json, |r| {
        format!(
            "{}: {} (p = {:.3})\nlargest drop: {:.3}, hiding x {}-{}, y {}-{} of the photo\n\
             heatmap: {} ({}x{}); colour scale along the bottom edge: black = no drop, \
             pale yellow = {:.3}\n",
            r.image,
            r.label,
            r.probability,
            r.largest_drop,
            x0,
            x1,
            y0,
            y1,
            r.heatmap.display(),
            width,
            height,
            r.largest_drop
        )
    })?;
    Ok(Status::Success)
}
