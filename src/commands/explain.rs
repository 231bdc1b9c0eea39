//! `googlenet explain`: the occlusion map of one photo.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{default_threads, load_classifier, print_report, Status};
use crate::cli::{ExplainArgs, ReportFormat};
use crate::explain;
use crate::output::{path_text, write_whole};
use crate::pipeline::Input;

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
    let classifier = load_classifier(&args.classifier, 1, verbose)?;
    let name = args.image.display();
    let runner = &classifier.runner;
    let settings = &runner.preprocess;
    let bytes = runner.bytes(&Input::from_arg(&args.image)).with_context(|| format!("{name}"))?;
    let photo = settings.decode(&bytes).with_context(|| format!("{name}"))?;
    let tensor = settings.normalise(&settings.resize(&photo).with_context(|| format!("{name}"))?);
    let threads = args.classifier.runner.run.threads.map_or_else(default_threads, usize::from);
    let (patch, stride) = (usize::from(args.patch), usize::from(args.stride));
    let occlusion = explain::occlusion(&runner.model, &tensor, patch, stride, threads)?;
    let region = settings.region(photo.width(), photo.height());
    let (top, left, drop) = occlusion.hottest;
    let heatmap = explain::render(&photo, &occlusion.map, region, drop);
    let mut png = Vec::new();
    heatmap.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    write_whole(&args.out, &png)?;
    let (input_h, input_w) = occlusion.map.dim();
    let to_photo = |x: usize, y: usize| {
        let px = region.0 + x as f64 * region.2 / input_w as f64;
        let py = region.1 + y as f64 * region.3 / input_h as f64;
        (px.round() as u32, py.round() as u32)
    };
    let (x0, y0) = to_photo(left, top);
    let (x1, y1) = to_photo(left + occlusion.patch, top + occlusion.patch);
    let report = ExplainReport {
        image: path_text(&args.image),
        class: occlusion.class,
        label: classifier.labels.get(occlusion.class).map_or_else(String::new, |l| l.name.clone()),
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
            photo.width(),
            photo.height(),
            r.largest_drop
        )
    })?;
    Ok(Status::Success)
}
