//! The model against onnxruntime's reference outputs, and the default preprocessing's accuracy
//! on the shared labelled samples: unit tests, as they feed the exact reference tensors to the
//! model, which the library does not make public.

use std::collections::HashMap;

use tract_onnx::prelude::tract_ndarray::Array3;

use super::{Kernel, KernelPrecision, Kernels, Model};
use crate::classify::top_k;
use crate::labels::Labels;
use crate::preprocess::{Preset, ResizeMode};

fn shared_model() -> Model {
    model_with(1, Kernels::default())
}

/// The shared model for batches of `batch`, running the operators of `kernels`.
fn model_with(batch: usize, kernels: Kernels) -> Model {
    let bytes = std::fs::read(crate::reference::shared_model()).unwrap();
    Model::with_kernels(&bytes, batch, kernels).expect("the shared model loads")
}

#[test]
fn the_largest_batch_fits_under_the_tensor_limit() {
    let model = model_with(256, Kernels::default());
    assert_eq!(model.batch_size, 256, "a batch of 256, the most the command line takes");
}

/// One image at a time, and in batches of two as `classify` runs by default (where the 28x28
/// layers take F(4x4, 3x3) and a batch's Winograd tiles run together); with the project's
/// kernels and with tract's own operators, the differential reference.
#[test]
fn outputs_match_onnxruntime_within_1e5() {
    let stems = crate::reference::reference_stems();
    let inputs: Vec<Array3<f32>> = stems
        .iter()
        .map(|stem| {
            let input =
                crate::reference::read_f32(&crate::reference::with_suffix(stem, ".input.f32"));
            Array3::from_shape_vec((3, 224, 224), input).unwrap()
        })
        .collect();
    let available = Kernel::available();
    for name in Kernel::NAMES.iter().filter(|name| !available.iter().any(|k| k.name() == **name)) {
        // Past the test harness's capture, so that the suite's output shows it.
        let line = format!("skipped kernel path {name}: this CPU lacks its instructions\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }
    let paths = available.into_iter().map(|k| Kernels::Project(Some(k), KernelPrecision::F32));
    let runs = paths.flat_map(|path| [(1, path), (2, path)]).chain([(1, Kernels::Tract)]);
    for (batch, kernels) in runs {
        let model = model_with(batch, kernels);
        let outputs: Vec<Vec<f32>> =
            inputs.chunks(batch).flat_map(|chunk| model.run(chunk).unwrap()).collect();
        assert_eq!(outputs.len(), stems.len());
        for (stem, actual) in stems.iter().zip(&outputs) {
            let expected =
                crate::reference::read_f32(&crate::reference::with_suffix(stem, ".output.f32"));
            assert_eq!(actual.len(), 1000);
            let worst =
                actual.iter().zip(&expected).map(|(a, e)| (a - e).abs()).fold(0.0, f32::max);
            let name = stem.display();
            println!("{name} (batch {batch}, {kernels:?}): max |ours - onnxruntime| = {worst:.2e}");
            assert!(
                worst <= 1e-5,
                "{name} (batch {batch}, {kernels:?}): max abs difference {worst}"
            );
        }
    }
}

#[test]
fn caffe_preprocessing_matches_the_reference_inputs() {
    let settings = Preset::Caffe.settings(224, 224);
    for stem in crate::reference::reference_stems() {
        let name = stem.file_name().unwrap().to_str().unwrap();
        let photo =
            crate::reference::shared().join("data/imagenet-samples").join(format!("{name}.JPEG"));
        let ours = settings.load(&photo).unwrap();
        let reference =
            crate::reference::read_f32(&crate::reference::with_suffix(&stem, ".input.f32"));
        let diffs: Vec<f32> = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).collect();
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        println!("{name}: mean |ours - Pillow| = {mean:.3} (0..255 units)");
        assert!(
            mean < 0.5,
            "{name}: preprocessing differs from the reference by {mean} on average"
        );
    }
}

struct Accuracy {
    top1: usize,
    top5: usize,
    agree_with_ort: usize,
    count: usize,
}

/// onnxruntime's top-1 index per file for one preprocessing (`squash` or `crop`).
fn ort_top1(prep: &str) -> HashMap<String, usize> {
    let tsv = std::fs::read_to_string(
        crate::reference::shared().join("data/reference/ort_predictions.tsv"),
    )
    .unwrap();
    tsv.lines()
        .skip(1)
        .map(|line| line.split('\t').collect::<Vec<_>>())
        .filter(|cols| cols[2] == prep)
        .map(|cols| (cols[0].to_owned(), cols[3].split(',').next().unwrap().parse().unwrap()))
        .collect()
}

fn accuracy(resize: ResizeMode, prep: &str) -> Accuracy {
    let model = shared_model();
    let labels = Labels::imagenet();
    let mut settings = Preset::Caffe.settings(224, 224);
    settings.resize = resize;
    let ort = ort_top1(prep);
    let mut acc = Accuracy { top1: 0, top5: 0, agree_with_ort: 0, count: 0 };
    for photo in crate::reference::samples() {
        let name = photo.file_name().unwrap().to_str().unwrap().to_owned();
        let truth = name.split('_').next().unwrap().to_owned();
        let probabilities = model.run(&[settings.load(&photo).unwrap()]).unwrap().remove(0);
        let top5 = top_k(&probabilities, 5, &labels);
        let synset = |i: usize| top5[i].synset.as_deref().unwrap();
        acc.count += 1;
        acc.top1 += usize::from(synset(0) == truth);
        acc.top5 += usize::from((0..5).any(|i| synset(i) == truth));
        acc.agree_with_ort += usize::from(ort[&name] == top5[0].index);
    }
    println!(
        "{prep}: top-1 {}/{n}, top-5 {}/{n}, top-1 agrees with onnxruntime on {}/{n}",
        acc.top1,
        acc.top5,
        acc.agree_with_ort,
        n = acc.count
    );
    acc
}

#[test]
fn default_settings_reach_the_reference_accuracy() {
    let acc = accuracy(ResizeMode::Squash, "squash");
    assert_eq!(acc.count, 100);
    assert!(acc.top1 >= 76, "top-1 {} < 76", acc.top1);
    assert!(acc.top5 >= 94, "top-5 {} < 94", acc.top5);
    assert!(acc.agree_with_ort >= 95, "agreement {} < 95", acc.agree_with_ort);
}

#[test]
fn centre_crop_agrees_with_onnxruntime() {
    let acc = accuracy(ResizeMode::Crop, "crop");
    assert!(acc.top1 >= 74, "top-1 {} < 74", acc.top1);
    assert!(acc.agree_with_ort >= 95, "agreement {} < 95", acc.agree_with_ort);
}
