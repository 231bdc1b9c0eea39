//! The `googlenet classify` command line, driven through the real binary.

use std::path::Path;
use std::process::Output;

use crate::common::{asset, googlenet, shared_model};
use predicates::prelude::*;
use serde_json::Value;

/// Runs `googlenet classify --format json ARGS` and returns the exit code and the document.
fn classify_json(args: &[&str]) -> (i32, Value) {
    let output =
        googlenet().arg("classify").args(["--format", "json"]).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let document = serde_json::from_slice(&output.stdout).expect("stdout is one JSON document");
    (output.status.code().unwrap(), document)
}

fn top1_synset(result: &Value) -> &str {
    result["predictions"][0]["synset"].as_str().unwrap()
}

#[test]
fn the_default_model_recognises_the_committed_photos() {
    googlenet()
        .args(["classify", "--format", "table", "assets/chelsea.png", "assets/coffee.png"])
        .assert()
        .success()
        .stdout(predicate::str::contains("assets/chelsea.png\n   1 "))
        .stdout(predicate::str::contains("n02124075  Egyptian cat"))
        .stdout(predicate::str::contains("n07920052  espresso"));
}

#[test]
fn json_output_is_a_ranked_top_k_per_image() {
    let (code, document) = classify_json(&["-k", "3", "assets/chelsea.png", "assets/coffee.png"]);
    assert_eq!(code, 0);
    let results = document["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["path"], "assets/chelsea.png");
    assert_eq!(top1_synset(&results[0]), "n02124075");
    assert_eq!(top1_synset(&results[1]), "n07920052");
    for result in results {
        let predictions = result["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), 3);
        let probabilities: Vec<f64> =
            predictions.iter().map(|p| p["probability"].as_f64().unwrap()).collect();
        assert!(probabilities.windows(2).all(|w| w[0] >= w[1]), "{probabilities:?}");
        assert!(probabilities.iter().sum::<f64>() <= 1.0 + 1e-6);
        let ranks: Vec<u64> = predictions.iter().map(|p| p["rank"].as_u64().unwrap()).collect();
        assert_eq!(ranks, [1, 2, 3]);
        assert!(predictions.iter().all(|p| p["index"].as_u64().unwrap() < 1000));
        assert!(predictions.iter().all(|p| p["name"].as_str().is_some_and(|n| !n.is_empty())));
    }
}

#[test]
fn model_flag_and_environment_variable_are_used_and_reported() {
    let model = shared_model();
    googlenet()
        .args(["classify", "-v", "-k", "1", "assets/chelsea.png", "--model"])
        .arg(&model)
        .assert()
        .success()
        .stdout(predicate::str::contains("Egyptian cat"))
        .stderr(predicate::str::contains(format!("model: {}", model.display())))
        .stderr(predicate::str::contains("preset Caffe"))
        .stderr(predicate::str::contains("the graph ends in Softmax"));
    googlenet()
        .args(["classify", "--verbose", "-k", "1", "assets/chelsea.png"])
        .env("GOOGLENET_MODEL", &model)
        .assert()
        .success()
        .stderr(predicate::str::contains("(GOOGLENET_MODEL)"));
    googlenet()
        .args(["classify", "--verbose", "-k", "1", "assets/chelsea.png"])
        .assert()
        .success()
        .stderr(predicate::str::contains("model: embedded in the binary"));
}

#[test]
fn crop_and_channel_overrides_change_the_input() {
    let (_, squash) = classify_json(&["-k", "1", "assets/chelsea.png"]);
    let (_, crop) = classify_json(&["-k", "1", "--resize", "crop", "assets/chelsea.png"]);
    let (_, rgb) = classify_json(&["-k", "1", "--rgb", "assets/chelsea.png"]);
    let p = |doc: &Value| doc["results"][0]["predictions"][0]["probability"].as_f64().unwrap();
    assert_ne!(p(&squash), p(&crop));
    assert_ne!(p(&squash), p(&rgb));
}

/// Runs `googlenet classify ARGS assets/chelsea.png` on `model` with the labels `thing 0` to
/// `thing 9`, written beside it.
fn classify_ten_classes(model: &Path, args: &[&str]) -> Output {
    let labels = model.with_extension("labels.txt");
    let names: Vec<String> = (0..10).map(|i| format!("thing {i}")).collect();
    std::fs::write(&labels, names.join("\n")).unwrap();
    googlenet()
        .arg("classify")
        .args(args)
        .arg("assets/chelsea.png")
        .arg("--model")
        .arg(model)
        .arg("--labels")
        .arg(&labels)
        .output()
        .unwrap()
}

#[test]
fn a_torchvision_style_model_gets_the_torchvision_preset_and_softmax() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("random.onnx");
    std::fs::write(&model, crate::common::random_classifier(64, 10)).unwrap();
    let output = classify_ten_classes(&model, &["-v", "--format", "json", "-k", "10"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("preset Torchvision"), "{stderr}");
    assert!(stderr.contains("input `x` 1x3x64x64"), "{stderr}");
    assert!(stderr.contains("output `logits`: 10 classes, logits (softmax applied)"), "{stderr}");
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    let predictions = document["results"][0]["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 10);
    let total: f64 = predictions.iter().map(|p| p["probability"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4, "softmax sums to {total}");
    assert!(predictions.iter().all(|p| p["synset"].is_null()));
    assert!(predictions.iter().all(|p| p["name"].as_str().unwrap().starts_with("thing ")));

    googlenet()
        .args(["classify", "assets/chelsea.png", "--model"])
        .arg(&model)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("has 1000 labels but the model scores 10 classes"));
}

#[test]
fn lengths_that_cannot_broadcast_fail_as_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("empty-exponent.onnx");
    std::fs::write(&model, crate::common::empty_exponent()).unwrap();
    let output = classify_ten_classes(&model, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let disagree = "`powered`: its inputs disagree on the length of axis 1: 3 and 0\n";
    assert!(stderr.ends_with(disagree), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn bad_images_are_reported_and_the_rest_classified() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.jpg");
    std::fs::write(&text, "not an image").unwrap();
    let missing = dir.path().join("missing.jpg");
    let output = googlenet()
        .args(["classify", "--quiet", "--format", "table"])
        .args([text.as_path(), asset("chelsea.png").as_path(), missing.as_path()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Egyptian cat"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one line per bad file: {stderr}");
    assert!(lines[0].contains("missing.jpg: cannot read: No such file"), "{stderr}");
    assert!(lines[1].contains("notes.jpg: not an image"), "{stderr}");

    let (code, document) = classify_json(&[text.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(document["results"][0]["error"], "not an image (unrecognised format)");
}

#[test]
fn fatal_errors_are_one_line_with_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, "definitely not protobuf").unwrap();
    let vector = dir.path().join("vector.onnx");
    std::fs::write(&vector, crate::common::non_image_model()).unwrap();
    let huge = dir.path().join("huge.onnx");
    std::fs::write(&huge, crate::common::random_classifier(100_000, 1000)).unwrap();
    let blowup = dir.path().join("blowup.onnx");
    std::fs::write(&blowup, crate::common::constant_blowup(40_000, 1)).unwrap();
    let blowups = dir.path().join("blowups.onnx");
    std::fs::write(&blowups, crate::common::constant_blowup(20_000, 2)).unwrap();
    let sprawling = dir.path().join("sprawling.onnx");
    std::fs::write(&sprawling, crate::common::relu_chain(5_000)).unwrap();
    let oversized = dir.path().join("oversized.onnx");
    std::fs::File::create(&oversized).unwrap().set_len(3 << 30).unwrap();
    let empty = dir.path().join("empty.onnx");
    std::fs::write(&empty, "").unwrap();
    let truncated = dir.path().join("truncated.onnx");
    let whole = std::fs::read(crate::common::shared_model()).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let zero_height = dir.path().join("zero-height.onnx");
    std::fs::write(&zero_height, crate::common::classifier_of_size(0, 8)).unwrap();
    let vector_pool = dir.path().join("vector-pool.onnx");
    std::fs::write(&vector_pool, crate::common::vector_pool()).unwrap();
    let mismatched = dir.path().join("mismatched.onnx");
    std::fs::write(&mismatched, crate::common::mismatched_product()).unwrap();
    let cases: [(Vec<&str>, &str); 17] = [
        (vec!["--model", "/nonexistent/model.onnx"], "cannot read model /nonexistent/model.onnx"),
        (vec!["--model", garbage.to_str().unwrap()], "not an ONNX model"),
        (vec!["--model", empty.to_str().unwrap()], "empty.onnx: empty file"),
        (vec!["--model", truncated.to_str().unwrap()], "not an ONNX model, or a truncated one"),
        (vec!["--model", vector.to_str().unwrap()], "expected an image input [N,3,H,W]"),
        (vec!["--model", vector_pool.to_str().unwrap()], "MaxPool: an input of rank 1 has no"),
        (
            vec!["--model", mismatched.to_str().unwrap()],
            "`vector`: its shape depends on values computed as the model runs",
        ),
        (
            vec!["--model", zero_height.to_str().unwrap()],
            "input `x` has shape 1,3,0,8: an image is at least 1x1",
        ),
        (
            vec!["--model", huge.to_str().unwrap()],
            "GiB of tensors at once (at `conv`), over the limit of 4 GiB",
        ),
        (
            vec!["--model", blowup.to_str().unwrap()],
            "the model needs a tensor of 6104 MiB, over the limit of 4 GiB",
        ),
        (
            vec!["--model", blowups.to_str().unwrap()],
            "loading the model needs more than 4 GiB of memory",
        ),
        (vec!["--model", oversized.to_str().unwrap()], "larger than an ONNX file can be (2 GiB)"),
        (
            vec!["--model", sprawling.to_str().unwrap()],
            "the graph has 5012 node inputs and initializers, over the limit of 5000",
        ),
        (vec!["--labels", "/nonexistent/labels.txt"], "cannot read labels file"),
        (vec!["--labels", "/dev/zero"], "labels file /dev/zero is over 64 MiB"),
        (vec!["--top-k", "5000"], "--top-k 5000 exceeds the 1000 classes"),
        (vec!["--top-k", "0"], "0 is not in 1..=65535"),
    ];
    for (args, message) in cases {
        let output =
            googlenet().arg("classify").args(&args).arg("assets/chelsea.png").output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
        if !args.contains(&"--top-k") || args.contains(&"5000") {
            assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        }
    }
}

/// Runs `googlenet classify` on two photos with stdout or stderr closed from the start, as
/// `| head -0` or `2>&1 | head -0` would.
fn classify_with_closed(stream: &str) -> std::process::Output {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("googlenet"))
        .args(["classify", "assets/chelsea.png", "assets/coffee.png"])
        .current_dir(crate::common::root())
        .env_remove("GOOGLENET_MODEL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    match stream {
        "stdout" => drop(child.stdout.take()),
        _ => drop(child.stderr.take()),
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_or_stderr_ends_the_run_quietly_or_not_at_all() {
    let closed_stdout = classify_with_closed("stdout");
    let stderr = String::from_utf8_lossy(&closed_stdout.stderr);
    assert_eq!(closed_stdout.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    let closed_stderr = classify_with_closed("stderr");
    assert_eq!(closed_stderr.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&closed_stderr.stdout).lines().count(), 2);
}

#[test]
fn help_and_version_exit_0() {
    googlenet().arg("--help").assert().success().stdout(predicate::str::contains("classify"));
    googlenet().arg("--version").assert().success();
}

#[test]
fn malformed_or_conflicting_flags_are_refused_with_the_reason() {
    let cases: [(&[&str], &str); 8] = [
        (&["--top-k", "0"], "0 is not in 1..=65535"),
        (&["--max-pixels", "268435457"], "268435457 is not in 1..=268435456"),
        (&["--shard", "4/3"], "4/3: K must be between 1 and N"),
        (&["--shard", "x"], "'--shard <K/N>': must be K/N, e.g. 2/8"),
        (&["--mean", "1,2"], "expected 3 comma-separated values (R,G,B), got 2"),
        (&["--std", "1,0,1"], "must be positive"),
        (&["--bgr", "--rgb"], "'--bgr' cannot be used with '--rgb'"),
        (&["--resume"], "--output <FILE>"),
    ];
    for (args, message) in cases {
        let output =
            googlenet().arg("classify").args(args).arg("assets/chelsea.png").output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn a_failed_write_is_an_error_and_the_summary_says_so() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full on this system");
        return;
    }
    for format in ["jsonl", "json", "csv", "table"] {
        let output = googlenet()
            .args(["classify", "assets/chelsea.png", "--format", format, "-o", "/dev/full"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{format}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(lines[0].ends_with(", but the results were not all written"), "{stderr}");
        assert!(lines[1].contains("cannot write results to /dev/full: No space left"), "{stderr}");
        let device = std::fs::metadata("/dev/full").unwrap();
        assert!(!device.is_file(), "/dev/full was replaced by a file");
    }
}

#[test]
fn a_run_that_classified_nothing_gives_no_rate() {
    let output = googlenet().args(["classify", "missing.jpg"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    let summary = stderr.lines().last().unwrap();
    assert!(summary.starts_with("googlenet: 0 classified, 1 failed in "), "{stderr}");
    assert!(summary.ends_with(" s") && !summary.contains("images/s"), "{stderr}");
}
