//! `googlenet inspect` on the shared GoogLeNet: Table 1 of the paper derived from the graph,
//! totals, and the profile.

use crate::common::googlenet;
use serde_json::Value;

fn inspect_json(args: &[&str]) -> Value {
    let output = googlenet().arg("inspect").args(args).args(["--format", "json"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The rows of `../shared/data/googlenet-table1.tsv` as header -> cell maps.
fn paper_table() -> Vec<std::collections::HashMap<String, String>> {
    let tsv =
        std::fs::read_to_string(crate::common::shared().join("data/googlenet-table1.tsv")).unwrap();
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    lines
        .map(|line| {
            header.iter().map(|h| h.to_string()).zip(line.split('\t').map(str::to_owned)).collect()
        })
        .collect()
}

#[test]
fn modules_reproduce_table_1_of_the_paper() {
    let table = inspect_json(&["--modules"]);
    let ours: Vec<&Value> =
        table["stages"].as_array().unwrap().iter().filter(|s| s["stage"] != "LRN").collect();
    let paper: Vec<_> =
        paper_table().into_iter().filter(|row| row["stage"] != "dropout (40%)").collect();
    assert_eq!(ours.len(), paper.len(), "{ours:#?}");
    let columns = ["n1x1", "n3x3_reduce", "n3x3", "n5x5_reduce", "n5x5", "pool_proj"];
    for (stage, row) in ours.iter().zip(&paper) {
        let name = row["stage"].as_str();
        assert_eq!(stage["stage"], name, "stage order");
        assert_eq!(stage["output"], row["output_size"].as_str(), "{name}: output size");
        assert_eq!(stage["depth"].to_string(), row["depth"], "{name}: depth");
        if !row["patch_stride"].is_empty() {
            assert_eq!(stage["patch"], row["patch_stride"].as_str(), "{name}: patch/stride");
        }
        for column in columns {
            let expected: Value = match row[column].as_str() {
                "" => Value::Null,
                n => n.parse::<u64>().unwrap().into(),
            };
            let is_module = name.starts_with("inception");
            if is_module || !expected.is_null() {
                assert_eq!(stage[column], expected, "{name}: {column}");
            }
        }
    }
    let modules = table["modules"].as_array().unwrap();
    assert_eq!(modules.len(), 9);
    assert_eq!(modules[0]["name"], "inception_3a");
    assert_eq!(modules[0]["order"], "135m");
    let ranges: Vec<&Value> =
        modules[0]["branches"].as_array().unwrap().iter().map(|b| &b["range"]).collect();
    assert_eq!(
        ranges,
        [
            &serde_json::json!([0, 63]),
            &serde_json::json!([64, 191]),
            &serde_json::json!([192, 223]),
            &serde_json::json!([224, 255])
        ]
    );
}

/// The naive module's cost, from the paper's table alone: a module fed C channels of an H x W
/// map (the stage before it) with #1x1, #3x3 and #5x5 outputs has C x (#1x1 + 9 #3x3 +
/// 25 #5x5) weights, one bias per output, and H x W multiply-adds per weight.
#[test]
fn modules_cost_what_the_naive_module_would_without_reductions() {
    let table = inspect_json(&["--modules"]);
    let ours = table["stages"].as_array().unwrap();
    let paper: Vec<_> =
        paper_table().into_iter().filter(|row| row["stage"] != "dropout (40%)").collect();
    let size = |text: &str| -> Vec<u64> { text.split('x').map(|d| d.parse().unwrap()).collect() };
    let mut checked = 0;
    for (index, row) in
        paper.iter().enumerate().filter(|(_, r)| r["stage"].starts_with("inception"))
    {
        let stage = ours.iter().find(|s| s["stage"] == row["stage"].as_str()).unwrap();
        let input = size(&paper[index - 1]["output_size"])[2];
        let output = size(&row["output_size"]);
        let n = |column: &str| row[column].parse::<u64>().unwrap();
        let weights = input * (n("n1x1") + 9 * n("n3x3") + 25 * n("n5x5"));
        let name = &row["stage"];
        assert_eq!(stage["naive_params"], weights + n("n1x1") + n("n3x3") + n("n5x5"), "{name}");
        assert_eq!(stage["naive_macs"], weights * output[0] * output[1], "{name}");
        let share = stage["share_3x3_channels"].as_f64().unwrap();
        assert!((share - n("n3x3") as f64 / output[2] as f64).abs() < 1e-9, "{name}");
        let ops =
            stage["share_3x3_macs"].as_f64().unwrap() + stage["share_5x5_macs"].as_f64().unwrap();
        assert!(ops > 0.5 && ops < 1.0, "{name}: the 3x3 and 5x5 branches hold most of the work");
        checked += 1;
    }
    assert_eq!(checked, 9);
    let text = googlenet().args(["inspect", "--modules"]).output().unwrap().stdout;
    let text = String::from_utf8(text).unwrap();
    let total = text.lines().rfind(|l| l.starts_with("total")).unwrap();
    let total: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(
        total,
        ["total", "5,849,136", "23,723,664", "4.1x", "1,103,972,352", "3,881,213,952", "3.5x"]
    );
}

#[test]
fn layers_total_the_known_parameters_and_multiply_adds() {
    let network = inspect_json(&[]);
    assert_eq!(network["input_shape"], serde_json::json!(["N", "3", "224", "224"]));
    assert_eq!(network["total_params"], 6_998_552);
    let macs = network["total_macs"].as_u64().unwrap();
    assert!((1_570_000_000..1_590_000_000).contains(&macs), "{macs}");
    let layers = network["layers"].as_array().unwrap();
    let count = |op: &str| layers.iter().filter(|l| l["op"] == op).count();
    assert_eq!((count("Conv"), count("Relu"), count("MaxPool"), count("LRN")), (57, 57, 13, 2));
    assert_eq!(
        (count("Concat"), count("AveragePool"), count("Gemm"), count("Softmax")),
        (9, 1, 1, 1)
    );
    let conv1 = &layers[0];
    assert_eq!(conv1["name"], "conv1/7x7_s2");
    assert_eq!(conv1["attributes"], "7x7/2 pad 3");
    assert_eq!(conv1["shape"], serde_json::json!(["N", "64", "112", "112"]));
    assert_eq!(conv1["macs"], 112 * 112 * 64 * 7 * 7 * 3);
    let lrn = layers.iter().find(|l| l["op"] == "LRN").unwrap();
    assert_eq!(lrn["attributes"], "size 5 alpha 0.0001 beta 0.75 bias 1");
}

#[test]
fn the_profile_names_the_lrn_and_convolution_layers_and_adds_up() {
    for batch in [1, 2] {
        let profile =
            inspect_json(&["--profile", "--runs", "2", "--batch-size", &batch.to_string()]);
        assert_eq!(profile["batch"], batch);
        assert_profile_adds_up(&profile);
    }
}

/// The normalisation and convolution layers are in `profile`, and their times fit its run's.
fn assert_profile_adds_up(profile: &Value) {
    let layers = profile["layers"].as_array().unwrap();
    for name in ["pool1/norm1", "conv2/norm2"] {
        assert!(
            layers.iter().any(|l| l["name"] == name && l["ms"].as_f64().unwrap() > 0.0),
            "{name}"
        );
    }
    assert!(layers.iter().any(|l| l["name"].as_str().unwrap().starts_with("conv1/7x7_s2")));
    let total = profile["total_ms"].as_f64().unwrap();
    let nodes = profile["nodes_ms"].as_f64().unwrap();
    // Each node is timed inside the run it belongs to, so their sum fits in the run (no claim
    // about how fast: that is `scripts/bench`'s).
    assert!(nodes > 0.0 && nodes <= total, "nodes {nodes} ms against a run of {total} ms");
    let shares: f64 = layers.iter().map(|l| l["share"].as_f64().unwrap()).sum();
    assert!((shares - nodes / total).abs() < 1e-6);
}

#[test]
fn a_model_without_inception_modules_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("random.onnx");
    std::fs::write(&model, crate::common::random_classifier(64, 10)).unwrap();
    let output =
        googlenet().args(["inspect", "--modules", "--model"]).arg(&model).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("no Inception modules"), "{text}");
    let network = inspect_json(&["--model", model.to_str().unwrap(), "--input-shape", "2,3,64,64"]);
    assert_eq!(network["input_shape"], serde_json::json!(["2", "3", "64", "64"]));
    assert_eq!(network["layers"][0]["shape"], serde_json::json!(["2", "8", "32", "32"]));
    assert_eq!(network["total_params"], 8 * 3 * 3 * 3 + 8 + 10 * 8 + 10);
}

/// `inception_3a/output`'s shape in a list of layer shapes.
fn inception_3a(shapes: &Value) -> &Value {
    let layers = shapes.as_array().unwrap();
    &layers.iter().find(|l| l["name"] == "inception_3a/output").unwrap()["shape"]
}

#[test]
fn classify_gives_the_layer_shapes_in_every_format_with_a_place_for_them() {
    // Piped, the default format is JSON Lines: the shapes are its first line, then the records.
    let output = googlenet().args(["classify", "--shapes", "assets/chelsea.png"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(inception_3a(&lines[0]["shapes"]), &serde_json::json!([256, 28, 28]));
    assert_eq!(lines[1]["path"], "assets/chelsea.png");

    let json = googlenet()
        .args(["classify", "--shapes", "--format", "json", "assets/chelsea.png"])
        .output()
        .unwrap();
    let document: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(inception_3a(&document["shapes"]), &serde_json::json!([256, 28, 28]));
    let table = googlenet()
        .args(["classify", "--shapes", "--format", "table", "assets/chelsea.png"])
        .output()
        .unwrap();
    let text = String::from_utf8(table.stdout).unwrap();
    let row = text.lines().find(|l| l.contains("inception_3a/output")).unwrap();
    assert!(row.ends_with("256x28x28"), "{row}");

    let refused = googlenet()
        .args(["classify", "--shapes", "--format", "csv", "assets/chelsea.png"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--shapes has no place in CSV: use --format jsonl"), "{stderr}");

    // Resumed, a file keeps its one line of shapes, and the line names no image.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    for photo in ["assets/chelsea.png", "assets/coffee.png"] {
        let run = googlenet()
            .args(["classify", "-q", "--shapes", "--resume", "-o"])
            .arg(&out)
            .args(["assets/chelsea.png", photo])
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    }
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with(r#"{"shapes":"#));
    assert_eq!(text.matches("assets/chelsea.png").count(), 1, "{text}");
}
