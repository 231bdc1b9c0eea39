//! The experiments on the real network: concatenation orders with and without compensation,
//! channel use against a direct computation, occlusion maps on a photo whose object sits in a
//! known place, and ablated branches. Unit tests, as they check the variants' tensors inside
//! the network, which the library does not make public.

use std::sync::Arc;

use tract_onnx::prelude::tract_ndarray::Array3;

use super::ablate::{ablate, Ablation};
use super::channel_use::measure;
use super::concat_order::{reorder, Order};
use crate::classify::ranking;
use crate::inspect::modules::BranchKind;
use crate::model::{read_proto, Model, Probe};
use crate::{Cancel, Classifier, Input};

use crate::reference::{asset, reference_input, reference_stems, shared_model};

/// The shared model as a classifier, on two threads.
fn classifier() -> Classifier {
    Classifier::builder().model(shared_model()).threads(Some(2)).build().unwrap()
}

fn probabilities(model: &Model, input: &Array3<f32>) -> Vec<f32> {
    model.run(std::slice::from_ref(input)).unwrap().remove(0)
}

/// The shared model reordered to `order` in every module, loaded.
fn variant(classifier: &Classifier, order: &str, compensate: bool) -> Model {
    let order: Order = order.parse().unwrap();
    let variant = reorder(classifier, &order, &[], compensate).unwrap();
    assert_eq!(variant.modules.len(), 9, "all nine modules");
    Model::from_bytes(&variant.onnx, 1).unwrap()
}

/// A pseudo-random order of the four branches, other than the original one.
fn random_order(seed: u64) -> String {
    let mut letters = vec!['1', '3', '5', 'm'];
    let mut state = seed;
    for i in (1..letters.len()).rev() {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        letters.swap(i, (state >> 33) as usize % (i + 1));
    }
    let order: String = letters.into_iter().collect();
    if order == "135m" {
        random_order(seed + 1)
    } else {
        order
    }
}

#[test]
fn compensated_orders_compute_the_same_function_and_uncompensated_ones_do_not() {
    let classifier = classifier();
    let original = Model::from_bytes(classifier.model_bytes(), 1).unwrap();
    let inputs: Vec<Array3<f32>> = reference_stems().iter().map(|s| reference_input(s)).collect();
    let expected: Vec<Vec<f32>> = inputs.iter().map(|i| probabilities(&original, i)).collect();
    for order in ["m531", "531m", "53m1", &random_order(7)] {
        let model = variant(&classifier, order, true);
        for (input, expected) in inputs.iter().zip(&expected) {
            let actual = probabilities(&model, input);
            let worst = actual.iter().zip(expected).map(|(a, e)| (a - e).abs()).fold(0.0, f32::max);
            println!("{order}: max |variant - original| = {worst:.2e}");
            assert!(worst <= 1e-5, "{order}: {worst}");
        }
        let uncompensated = variant(&classifier, order, false);
        let same_top1 = inputs
            .iter()
            .zip(&expected)
            .filter(|(input, e)| ranking(&probabilities(&uncompensated, input))[0] == ranking(e)[0])
            .count();
        println!("{order} uncompensated: top-1 agrees on {same_top1} of {}", inputs.len());
        assert!(same_top1 * 2 < inputs.len(), "{order}: uncompensated top-1 agrees on {same_top1}");
    }
}

#[test]
fn channel_use_tags_every_input_channel_and_adds_up_to_the_convolution() {
    let classifier = classifier();
    let photos: Vec<Input> = reference_stems()
        .iter()
        .map(|stem| {
            let name = stem.file_name().unwrap().to_str().unwrap();
            Input::from_arg(
                crate::reference::shared().join(format!("data/imagenet-samples/{name}.JPEG")),
            )
        })
        .collect();
    let mut failed = 0;
    let uses = measure(&classifier, Some("inception_4a/1x1"), &photos, |_, _| failed += 1);
    let [usage] = <[_; 1]>::try_from(uses.unwrap()).unwrap();
    assert_eq!(failed, 0);
    assert_eq!(usage.images, photos.len());
    assert_eq!(usage.channels.len(), 480, "inception (3b) gives 128 + 192 + 96 + 64 channels");
    let sources: Vec<&str> = usage.channels.iter().map(|c| c.source.as_str()).collect();
    assert_eq!(sources[0], "inception_3b/1x1");
    assert_eq!(sources[128], "inception_3b/3x3");
    assert_eq!(sources[320], "inception_3b/5x5");
    assert_eq!(sources[479], "inception_3b/pool_proj");

    let proto = read_proto(classifier.model_bytes()).unwrap();
    let probe = Probe::new(classifier.model_bytes(), &[&usage.output]).unwrap();
    let bias = proto
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .find(|t| t.name.contains("inception_4a/1x1") && t.dims.len() == 1)
        .map(|t| super::weights::floats(t).unwrap())
        .unwrap();
    assert_eq!(bias.len(), 192);
    let mean_bias = bias.iter().map(|&v| f64::from(v)).sum::<f64>() / bias.len() as f64;
    let runner = classifier.runner();
    let mut direct = 0.0;
    for photo in &photos {
        let output = probe.run(&runner.tensor(photo).unwrap()).unwrap().remove(0);
        let mean_output = output.iter().map(|&v| f64::from(v)).sum::<f64>() / output.len() as f64;
        direct += (mean_output - mean_bias) / photos.len() as f64;
    }
    let summed: f64 = usage.channels.iter().map(|c| c.signed_contribution.unwrap()).sum();
    println!("sum of channel contributions {summed:.6}, direct {direct:.6}");
    assert!((summed - direct).abs() < 1e-4 * direct.abs().max(1.0), "{summed} vs {direct}");
    assert!(usage.channels.iter().all(|c| c.contribution.unwrap() >= 0.0 && c.weight_norm > 0.0));
}

#[test]
fn the_occlusion_map_is_hottest_where_the_object_is() {
    // The cat photo in the top-left corner of a grey canvas twice its size.
    let cat = image::open(asset("chelsea.png")).unwrap().to_rgb8();
    let (w, h) = cat.dimensions();
    let mut canvas = image::RgbImage::from_pixel(w * 2, h * 2, image::Rgb([124, 116, 104]));
    image::imageops::replace(&mut canvas, &cat, 0, 0);
    let mut png = Vec::new();
    canvas.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    let photo = Input::Upload { name: "corner.png".into(), bytes: Arc::from(png) };

    let (patch, stride) = (56, 28);
    let explained =
        crate::explain::explain(&classifier(), &photo, (patch, stride), &Cancel::new()).unwrap();
    let map = &explained.occlusion;
    let (top, left, drop) = map.hottest;
    println!(
        "class {} p {:.3}: hottest patch at ({left}, {top}), drop {drop:.3}",
        map.class, map.probability
    );
    assert!(drop > 0.0);
    assert!(
        left + patch / 2 <= 112 && top + patch / 2 <= 112,
        "hottest patch at ({left}, {top}) not in the top-left"
    );
    let quadrant = |ys: std::ops::Range<usize>, xs: std::ops::Range<usize>| -> f32 {
        ys.flat_map(|y| xs.clone().map(move |x| (y, x))).map(|(y, x)| map.map[[y, x]]).sum()
    };
    assert!(quadrant(0..112, 0..112) > 3.0 * quadrant(112..224, 112..224).abs());
    assert_eq!(explained.heatmap.dimensions(), (w * 2, h * 2));
}

/// The concatenated output of `module` (channels first) for one input, from `bytes`.
fn concat_output(bytes: &[u8], module: &str, input: &Array3<f32>) -> Vec<f32> {
    let probe = Probe::new(bytes, &[&format!("{module}/output")]).unwrap();
    probe.run(input).unwrap().remove(0).iter().copied().collect()
}

#[test]
fn ablating_a_branch_zeroes_exactly_its_channels_of_the_concatenation() {
    let classifier = classifier();
    let bytes = classifier.model_bytes();
    let input = reference_input(&reference_stems()[0]);
    let module = "inception_4c";
    let original = concat_output(bytes, module, &input);
    let plane = 14 * 14;
    // inception_4c: 1x1 0..127, 3x3 128..383, 5x5 384..447, pool proj 448..511.
    for (kind, first, last) in
        [(BranchKind::ThreeByThree, 128, 383), (BranchKind::PoolProj, 448, 511)]
    {
        let ablation = Ablation::Branch { kind, modules: vec![module.into()] };
        let (variant, changed) = ablate(&classifier, &ablation).unwrap();
        assert_eq!(changed.len(), 1, "{changed:?}");
        let ablated = concat_output(&variant, module, &input);
        assert_eq!(ablated.len(), original.len());
        for (channel, (a, b)) in ablated.chunks(plane).zip(original.chunks(plane)).enumerate() {
            if (first..=last).contains(&channel) {
                assert!(a.iter().all(|v| *v == 0.0), "{kind:?}: channel {channel} is not zero");
            } else {
                assert_eq!(a, b, "{kind:?}: channel {channel} changed");
            }
        }
    }
    let (without_lrn, removed) = ablate(&classifier, &Ablation::Lrn).unwrap();
    assert_eq!(removed, ["pool1/norm1", "conv2/norm2"]);
    let proto = read_proto(&without_lrn).unwrap();
    assert!(proto.graph.as_ref().unwrap().node.iter().all(|n| n.op_type != "LRN"));
    assert!(Model::from_bytes(&without_lrn, 1).is_ok());
}
