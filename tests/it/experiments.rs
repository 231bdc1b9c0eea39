//! The experiments from the command line: a saved variant, channel use, occlusion maps and
//! ablations as `googlenet experiment` and `explain` report them. What the experiments compute
//! is tested in the library (`crates/googlenet/src/experiment/tests.rs`).

use crate::common::{googlenet, shared_model};
use serde_json::Value;

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
fn channel_use_reports_every_input_channel_of_a_layer() {
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
fn explain_draws_the_map_over_the_photo_and_reports_the_hottest_patch() {
    // The cat photo in the top-left corner of a grey canvas twice its size.
    let cat = image::open(crate::common::asset("chelsea.png")).unwrap().to_rgb8();
    let (w, h) = cat.dimensions();
    let mut canvas = image::RgbImage::from_pixel(w * 2, h * 2, image::Rgb([124, 116, 104]));
    image::imageops::replace(&mut canvas, &cat, 0, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corner.png");
    canvas.save(&path).unwrap();

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
    let classified = googlenet()
        .args(["classify", "--quiet", "--format", "jsonl", "--model"])
        .arg(&saved)
        .arg(crate::common::asset("chelsea.png"))
        .output()
        .unwrap();
    assert!(classified.status.success(), "the saved variant loads and runs");
    let both = googlenet().args(["experiment", "ablate", "--branch", "1x1", "--lrn"]).output();
    assert_eq!(both.unwrap().status.code(), Some(1), "one ablation at a time");
}
