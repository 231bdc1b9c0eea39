//! The experiments on the real network: concatenation orders with and without compensation,
//! channel use against a direct computation, occlusion maps on a photo whose object sits in a
//! known place, and ablated branches.

use crate::common::{googlenet, reference_input, reference_stems, shared_model};
use googlenet::classify::ranking;
use googlenet::experiment::ablate::{ablate, Ablation};
use googlenet::experiment::channel_use::ChannelUse;
use googlenet::experiment::concat_order::{reorder, Order};
use googlenet::explain::occlusion;
use googlenet::inspect::modules::BranchKind;
use googlenet::inspect::Network;
use googlenet::model::{read_proto, Model, Probe};
use googlenet::preprocess::Preset;
use prost::Message;
use serde_json::Value;
use tract_onnx::prelude::tract_ndarray::Array3;

fn bytes() -> Vec<u8> {
    std::fs::read(shared_model()).unwrap()
}

fn probabilities(model: &Model, input: &Array3<f32>) -> Vec<f32> {
    model.run(std::slice::from_ref(input)).unwrap().remove(0)
}

/// The shared model reordered to `order` in every module, loaded.
fn variant(bytes: &[u8], order: &str, compensate: bool) -> Model {
    let proto = read_proto(bytes).unwrap();
    let network = Network::analyse(bytes, None).unwrap();
    let order: Order = order.parse().unwrap();
    let variant = reorder(&proto, &network, &order, &[], compensate).unwrap();
    assert_eq!(variant.modules.len(), 9, "all nine modules");
    Model::from_bytes(&variant.proto.encode_to_vec(), 1).unwrap()
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
    let bytes = bytes();
    let original = Model::from_bytes(&bytes, 1).unwrap();
    let inputs: Vec<Array3<f32>> = reference_stems().iter().map(|s| reference_input(s)).collect();
    let expected: Vec<Vec<f32>> = inputs.iter().map(|i| probabilities(&original, i)).collect();
    for order in ["m531", "531m", "53m1", &random_order(7)] {
        let model = variant(&bytes, order, true);
        for (input, expected) in inputs.iter().zip(&expected) {
            let actual = probabilities(&model, input);
            let worst = actual.iter().zip(expected).map(|(a, e)| (a - e).abs()).fold(0.0, f32::max);
            println!("{order}: max |variant - original| = {worst:.2e}");
            assert!(worst <= 1e-5, "{order}: {worst}");
        }
        let uncompensated = variant(&bytes, order, false);
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
fn a_saved_variant_classifies_like_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("m531.onnx");
    let output = googlenet()
        .args(["experiment", "concat-order", "--order", "m531", "--format", "json", "--save"])
        .arg(&saved)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["comparison"]["top5_agree"], 1, "{report}");
    assert_eq!(report["permuted_weights"], 33, "4 readers of 8 module outputs and the classifier");
    let classify = |model: &std::path::Path| -> Value {
        let output = googlenet()
            .args(["classify", "--format", "json", "--model"])
            .arg(model)
            .arg(crate::common::asset("coffee.png"))
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let (original, reordered) = (classify(&shared_model()), classify(&saved));
    let predictions = |v: &Value| v["results"][0]["predictions"].as_array().unwrap().clone();
    for (a, b) in predictions(&original).iter().zip(&predictions(&reordered)) {
        assert_eq!(a["index"], b["index"]);
        let diff = (a["probability"].as_f64().unwrap() - b["probability"].as_f64().unwrap()).abs();
        assert!(diff < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn channel_use_tags_every_input_channel_and_adds_up_to_the_convolution() {
    let bytes = bytes();
    let proto = read_proto(&bytes).unwrap();
    let network = Network::analyse(&bytes, None).unwrap();
    let mut usage = ChannelUse::new(&proto, &network, "inception_4a/1x1").unwrap();
    assert_eq!(usage.channels.len(), 480, "inception (3b) gives 128 + 192 + 96 + 64 channels");
    let sources: Vec<&str> = usage.channels.iter().map(|c| c.source.as_str()).collect();
    assert_eq!(sources[0], "inception_3b/1x1");
    assert_eq!(sources[128], "inception_3b/3x3");
    assert_eq!(sources[320], "inception_3b/5x5");
    assert_eq!(sources[479], "inception_3b/pool_proj");

    let probe = Probe::new(&bytes, &[&usage.input, &usage.output]).unwrap();
    let bias = proto
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .find(|t| t.name.contains("inception_4a/1x1") && t.dims.len() == 1)
        .map(|t| {
            let raw = t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()));
            if t.float_data.is_empty() {
                raw.collect::<Vec<_>>()
            } else {
                t.float_data.clone()
            }
        })
        .unwrap();
    assert_eq!(bias.len(), 192);
    let mut direct = 0.0;
    let stems = reference_stems();
    for stem in &stems {
        let [input, output] =
            <[_; 2]>::try_from(probe.run(&reference_input(stem)).unwrap()).unwrap();
        usage.add(&input).unwrap();
        let mean_output = output.iter().map(|&v| f64::from(v)).sum::<f64>() / output.len() as f64;
        let mean_bias = bias.iter().map(|&v| f64::from(v)).sum::<f64>() / bias.len() as f64;
        direct += (mean_output - mean_bias) / stems.len() as f64;
    }
    let summed: f64 = usage.channels.iter().map(|c| c.signed_contribution.unwrap()).sum();
    println!("sum of channel contributions {summed:.6}, direct {direct:.6}");
    assert!((summed - direct).abs() < 1e-4 * direct.abs().max(1.0), "{summed} vs {direct}");
    assert!(usage.channels.iter().all(|c| c.contribution.unwrap() >= 0.0 && c.weight_norm > 0.0));

    let output = googlenet()
        .args([
            "experiment",
            "channel-use",
            "--layer",
            "inception_5a/pool_proj",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let channels = report["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 832, "inception (4e) gives 256 + 320 + 128 + 128");
    assert_eq!(channels[831]["source"], "inception_4e/pool_proj");
}

#[test]
fn the_occlusion_map_is_hottest_where_the_object_is() {
    // The cat photo in the top-left corner of a grey canvas twice its size.
    let cat = image::open(crate::common::asset("chelsea.png")).unwrap().to_rgb8();
    let (w, h) = cat.dimensions();
    let mut canvas = image::RgbImage::from_pixel(w * 2, h * 2, image::Rgb([124, 116, 104]));
    image::imageops::replace(&mut canvas, &cat, 0, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corner.png");
    canvas.save(&path).unwrap();

    let model = Model::from_bytes(&bytes(), 1).unwrap();
    let tensor = Preset::Caffe.settings(224, 224).load(&path).unwrap();
    let (patch, stride) = (56, 28);
    let map = occlusion(&model, &tensor, (patch, stride), (2, &googlenet::Cancel::new())).unwrap();
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
    let quadrant = |ys: std::ops::Range<usize>, xs: std::ops::Range<usize>| {
        map.map.slice(tract_onnx::prelude::tract_ndarray::s![ys, xs]).sum()
    };
    assert!(quadrant(0..112, 0..112) > 3.0 * quadrant(112..224, 112..224).abs());

    let out = dir.path().join("heat.png");
    let output = googlenet()
        .args(["explain", "--patch", "56", "--stride", "28", "--format", "json", "--out"])
        .arg(&out)
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(image::image_dimensions(&out).unwrap(), (w * 2, h * 2));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let [x0, y0, x1, y1] = [0, 1, 2, 3].map(|i| report["hottest_patch"][i].as_u64().unwrap());
    assert!((x0 + x1) / 2 < u64::from(w) && (y0 + y1) / 2 < u64::from(h), "{report}");
}

/// The concatenated output of `module` (channels first) for one input, from `bytes`.
fn concat_output(bytes: &[u8], module: &str, input: &Array3<f32>) -> Vec<f32> {
    let probe = Probe::new(bytes, &[&format!("{module}/output")]).unwrap();
    probe.run(input).unwrap().remove(0).iter().copied().collect()
}

#[test]
fn ablating_a_branch_zeroes_exactly_its_channels_of_the_concatenation() {
    let bytes = bytes();
    let proto = read_proto(&bytes).unwrap();
    let network = Network::analyse(&bytes, None).unwrap();
    let input = reference_input(&reference_stems()[0]);
    let module = "inception_4c";
    let original = concat_output(&bytes, module, &input);
    let plane = 14 * 14;
    // inception_4c: 1x1 0..127, 3x3 128..383, 5x5 384..447, pool proj 448..511.
    for (kind, first, last) in
        [(BranchKind::ThreeByThree, 128, 383), (BranchKind::PoolProj, 448, 511)]
    {
        let ablation = Ablation::Branch { kind, modules: vec![module.into()] };
        let (variant, changed) = ablate(&proto, &network, &ablation).unwrap();
        assert_eq!(changed.len(), 1, "{changed:?}");
        let ablated = concat_output(&variant.encode_to_vec(), module, &input);
        assert_eq!(ablated.len(), original.len());
        for (channel, (a, b)) in ablated.chunks(plane).zip(original.chunks(plane)).enumerate() {
            if (first..=last).contains(&channel) {
                assert!(a.iter().all(|v| *v == 0.0), "{kind:?}: channel {channel} is not zero");
            } else {
                assert_eq!(a, b, "{kind:?}: channel {channel} changed");
            }
        }
    }
    let (without_lrn, removed) = ablate(&proto, &network, &Ablation::Lrn).unwrap();
    assert_eq!(removed, ["pool1/norm1", "conv2/norm2"]);
    assert!(without_lrn.graph.as_ref().unwrap().node.iter().all(|n| n.op_type != "LRN"));
    assert!(Model::from_bytes(&without_lrn.encode_to_vec(), 1).is_ok());
}

#[test]
fn ablate_reports_what_it_removed_and_saves_the_variant() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("no-5x5.onnx");
    let output = googlenet()
        .args(["experiment", "ablate", "--branch", "5x5", "--module", "inception_5b", "--format"])
        .args(["json", "--model", shared_model().to_str().unwrap(), "--save"])
        .arg(&saved)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["removed"], "the 5x5 branch of inception_5b");
    assert_eq!(report["changed"], serde_json::json!(["inception_5b/5x5"]));
    assert_eq!(report["comparison"]["images"], 1);
    assert!(Model::from_bytes(&std::fs::read(&saved).unwrap(), 1).is_ok());
    let both = googlenet().args(["experiment", "ablate", "--branch", "1x1", "--lrn"]).output();
    assert_eq!(both.unwrap().status.code(), Some(1), "one ablation at a time");
}
