//! `googlenet explain`: the occlusion map of one photo.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use googlenet::{explain, Cancel, Crops, Input};

use super::{announce, loaded, print_report, Status};
use crate::cli::{ExplainArgs, ReportFormat};
use crate::output::{path_text, write_whole};

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
    let classifier = loaded(builder.build())?;
    announce(&classifier.describe(), classifier.note(), verbose);
    let name = args.image.display();
    let (patch, stride) = (usize::from(args.patch), usize::from(args.stride));
    let photo = Input::from_arg(&args.image);
    let explained = explain::explain(&classifier, &photo, (patch, stride), &Cancel::new())
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
