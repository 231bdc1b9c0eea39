//! `googlenet embed` through the real binary: the features are what the classifier reads
//! (checked against the classifier's own weights), in JSON Lines or a NumPy array read back
//! with a reader here and with numpy when it is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{googlenet, samples, shared_model};
use prost::Message;
use serde_json::Value;
use tract_onnx::pb::{ModelProto, TensorProto};

/// Six of the shared photos and a file that is not an image, in a folder of their own.
fn photos() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let mut paths: Vec<PathBuf> = samples()
        .iter()
        .step_by(17)
        .map(|photo| {
            let dest = dir.path().join(photo.file_name().unwrap());
            std::fs::copy(photo, &dest).unwrap();
            dest
        })
        .collect();
    let broken = dir.path().join("zz_broken.jpg");
    std::fs::write(&broken, b"not a photo").unwrap();
    paths.push(broken);
    (dir, paths)
}

/// The JSON Lines records of a run.
fn records(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn embedding(record: &Value) -> Vec<f32> {
    let values = record["embedding"].as_array().unwrap_or_else(|| panic!("{record}"));
    values.iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

/// The float values of an ONNX initializer, stored as `float_data` or as raw bytes.
fn floats(tensor: &TensorProto) -> Vec<f32> {
    if !tensor.float_data.is_empty() {
        return tensor.float_data.clone();
    }
    tensor.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

/// The weights and bias of the shared model's last layer, `loss3/classifier` (1000 x 1024).
fn classifier_weights() -> (Vec<f32>, Vec<f32>) {
    let proto = ModelProto::decode(std::fs::read(shared_model()).unwrap().as_slice()).unwrap();
    let graph = proto.graph.unwrap();
    let gemm = graph.node.iter().find(|n| n.op_type == "Gemm").unwrap();
    let initializer =
        |name: &String| floats(graph.initializer.iter().find(|t| &t.name == name).unwrap());
    (initializer(&gemm.input[1]), initializer(&gemm.input[2]))
}

/// The softmax of `scores`.
fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

fn embed(args: &[&str]) -> std::process::Output {
    googlenet()
        .arg("embed")
        .args(["--model", shared_model().to_str().unwrap(), "-q"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_default_features_are_what_the_classifier_reads() {
    let (_dir, paths) = photos();
    let output = embed(&[paths[0].parent().unwrap().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "one file is not an image");
    let records = records(&output.stdout);
    assert_eq!(records.len(), paths.len());
    let bad = records.last().unwrap();
    assert!(bad["error"].as_str().unwrap().starts_with("not an image"), "{bad}");
    let classified = googlenet()
        .args(["classify", "--model", shared_model().to_str().unwrap(), "-q", "-k", "1"])
        .args(&paths[..paths.len() - 1])
        .output()
        .unwrap();
    let (weights, bias) = classifier_weights();
    for (record, top) in records.iter().zip(self::records(&classified.stdout)) {
        let features = embedding(record);
        assert_eq!(features.len(), 1024);
        // loss3/classifier is Gemm with transB: scores = W x + b, W of 1000 rows.
        let scores: Vec<f32> = weights
            .chunks_exact(1024)
            .zip(&bias)
            .map(|(row, b)| b + row.iter().zip(&features).map(|(w, x)| w * x).sum::<f32>())
            .collect();
        let probabilities = softmax(&scores);
        let best =
            (0..1000).max_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b])).unwrap();
        let expected = &top["predictions"][0];
        assert_eq!(best as u64, expected["index"].as_u64().unwrap(), "{}", record["path"]);
        let p = expected["probability"].as_f64().unwrap() as f32;
        assert!((probabilities[best] - p).abs() < 1e-4, "{} vs {p}", probabilities[best]);
    }
}

/// What numpy prints of the array at `path` (its type, shape and the start of row 2), from
/// the first Python that has numpy (`python3`, or Debian's); `None` when none has it.
fn numpy_view(path: &Path) -> Option<String> {
    const SCRIPT: &str = "import numpy, sys; a = numpy.load(sys.argv[1]); \
                          print(a.dtype, a.shape, a[2, :3].tolist())";
    let python = ["python3", "/usr/bin/python3"].into_iter().find(|python| {
        Command::new(python).args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success())
    })?;
    let out = Command::new(python).args(["-c", SCRIPT]).arg(path).output().unwrap();
    assert!(out.status.success(), "numpy cannot load it: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn npy_arrays_hold_the_same_rows_as_json_lines_in_order() {
    let (dir, paths) = photos();
    let folder = dir.path().to_str().unwrap();
    let jsonl = records(&embed(&[folder, "--normalize", "--batch-size", "4"]).stdout);
    let npy = dir.path().join("feats.npy");
    let output = embed(&[folder, "--normalize", "-o", npy.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let matrix = googlenet::npy::read(&npy).unwrap();
    let names = std::fs::read_to_string(googlenet::npy::names_path(&npy)).unwrap();
    let names: Vec<&str> = names.lines().collect();
    assert_eq!((matrix.rows, matrix.width, names.len()), (paths.len() - 1, 1024, paths.len() - 1));
    for (row, (name, record)) in names.iter().zip(&jsonl).enumerate() {
        assert_eq!(*name, record["path"]);
        let values = matrix.row(row);
        let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{name}: norm {norm}");
        let batched = embedding(record);
        assert!(values.iter().zip(&batched).all(|(a, b)| (a - b).abs() < 1e-5), "{name}");
    }
    match numpy_view(&npy) {
        Some(text) => {
            let row = matrix.row(2);
            assert!(text.starts_with(&format!("float32 ({}, 1024) [", paths.len() - 1)), "{text}");
            let listed = text.split(['[', ']']).nth(1).unwrap().split(", ");
            let listed: Vec<f32> = listed.map(|v| v.parse::<f64>().unwrap() as f32).collect();
            assert_eq!(listed, row[..3], "{text}");
        }
        None => {
            eprintln!("numpy is not installed: the .npy file was checked by the reader here only")
        }
    }
}

#[test]
fn any_layer_can_be_embedded_and_runs_resume() {
    let (dir, paths) = photos();
    let one = paths[0].to_str().unwrap();
    let layer = records(&embed(&["--layer", "inception_4e/output", one]).stdout);
    assert_eq!(embedding(&layer[0]).len(), 832 * 14 * 14);
    let missing = embed(&["--layer", "no/such", one]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no node or tensor `no/such`"));
    let out = dir.path().join("feats.jsonl");
    let out_arg = out.to_str().unwrap();
    assert!(embed(&[one, "-o", out_arg]).status.success());
    let all: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    let resumed = embed(&[&["--resume", "-o", out_arg][..], &all].concat());
    assert_eq!(resumed.status.code(), Some(2));
    let written = records(&std::fs::read(&out).unwrap());
    let written: Vec<&str> = written.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(written.len(), paths.len());
    assert_eq!(written[0], one, "the first run's record stays first");
    assert!(Path::new(written[1]).exists());
}

#[test]
fn int8_features_point_the_way_f32_features_do() {
    let (_dir, paths) = photos();
    let good: Vec<&str> = paths[..paths.len() - 1].iter().map(|p| p.to_str().unwrap()).collect();
    let f32 = records(&embed(&[&["--normalize"][..], &good].concat()).stdout);
    let int8 =
        records(&embed(&[&["--normalize", "--precision", "int8"][..], &good].concat()).stdout);
    assert_eq!((f32.len(), int8.len()), (good.len(), good.len()));
    for (a, b) in f32.iter().zip(&int8) {
        let cosine: f32 = embedding(a).iter().zip(embedding(b)).map(|(x, y)| x * y).sum();
        assert!(cosine > 0.99, "{}: cosine {cosine} between f32 and int8 features", a["path"]);
    }
}
