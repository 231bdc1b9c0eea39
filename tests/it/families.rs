//! The operator allowlist against the classifier families it must serve: a small random-weight
//! graph of each family's characteristic block, built here, loaded and run end to end through
//! the binary, its ten probabilities equal within 1e-4 to those of the same run on tract's own
//! operators (`GOOGLENET_ISA=tract`, the differential reference), on every kernel path this CPU
//! has, and at int8 and bf16 within 0.02; and operators that are no image classifier's, refused.

use crate::common::{googlenet, Attr, Graph};
use serde_json::Value;

/// Classifies the bundled photo with `model` (10 classes) on each of the project's kernel paths
/// this CPU has and on tract's operators, checks that each gives each class the same
/// probability as tract within 1e-4, and returns the default path's JSON record.
fn classify(model: Vec<u8>, name: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.onnx"));
    std::fs::write(&path, model).unwrap();
    let reference = classify_with(&path, Some("tract"), "f32");
    for isa in crate::common::kernel_paths() {
        let ours = classify_with(&path, Some(isa), "f32");
        compare(&ours, &reference, 1e-4, &format!("{name} on {isa}"));
        for precision in ["int8", "bf16"] {
            let lower = classify_with(&path, Some(isa), precision);
            compare(&lower, &reference, LOWER_BOUND, &format!("{name} at {precision} on {isa}"));
        }
    }
    let ours = classify_with(&path, None, "f32");
    compare(&ours, &reference, 1e-4, name);
    ours
}

/// How far int8's and bf16's probabilities may stray from f32's on these small random-weight
/// graphs.
const LOWER_BOUND: f64 = 0.02;

/// Checks that `ours` gives each class the probability `reference` gives it, within `bound`.
fn compare(ours: &Value, reference: &Value, bound: f64, name: &str) {
    let by_class = |record: &Value| -> Vec<(u64, f64)> {
        let mut p: Vec<(u64, f64)> = record["predictions"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {record}"))
            .iter()
            .map(|p| (p["index"].as_u64().unwrap(), p["probability"].as_f64().unwrap()))
            .collect();
        p.sort_by_key(|&(index, _)| index);
        p
    };
    let (ours_p, reference_p) = (by_class(ours), by_class(reference));
    assert_eq!(ours_p.len(), 10, "{name}");
    for ((index, a), (_, b)) in ours_p.iter().zip(&reference_p) {
        assert!((a - b).abs() <= bound, "{name}: class {index}: {a} against tract's {b}");
    }
}

/// The one JSON record of classifying the bundled photo with the model at `path` (10 classes,
/// all kept), with `GOOGLENET_ISA` set to `isa`, at `precision`.
fn classify_with(path: &std::path::Path, isa: Option<&str>, precision: &str) -> Value {
    let name = path.display();
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.txt");
    std::fs::write(&labels, (0..10).map(|i| format!("class {i}\n")).collect::<String>()).unwrap();
    let mut command = googlenet();
    if let Some(isa) = isa {
        command.env("GOOGLENET_ISA", isa);
    }
    let output = command
        .args(["classify", "--format", "jsonl", "--preset", "torchvision", "-k", "10"])
        .args(["--precision", precision])
        .arg("assets/chelsea.png")
        .arg("--model")
        .arg(path)
        .arg("--labels")
        .arg(&labels)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{name}: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Checks that `record` holds ten finite probabilities, most probable first, summing to about
/// 1, and not all equal (the weights reached the output).
fn assert_classified(record: &Value, name: &str) {
    let predictions =
        record["predictions"].as_array().unwrap_or_else(|| panic!("{name}: {record}"));
    let p: Vec<f64> = predictions.iter().map(|p| p["probability"].as_f64().unwrap()).collect();
    assert_eq!(p.len(), 10, "{name}");
    assert!(p.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)), "{name}: {p:?}");
    let sum = p.iter().sum::<f64>();
    assert!(p.windows(2).all(|w| w[0] >= w[1]) && (sum - 1.0).abs() <= 1e-4, "{name}: {p:?}");
    assert!(p[0] > p[9], "{name}: {p:?}");
}

#[test]
fn an_inception_module_with_lrn() {
    let mut g = Graph::default();
    g.conv("x", "stem", [3, 16, 3, 1]);
    g.op("Relu", &["stem"], "stem_relu", &[]);
    let lrn = [("size", Attr::Int(5)), ("alpha", Attr::Float(1e-4)), ("beta", Attr::Float(0.75))];
    g.op("LRN", &["stem_relu"], "norm", &lrn);
    g.conv("norm", "b1", [16, 8, 1, 1]);
    g.conv("norm", "b3r", [16, 8, 1, 1]);
    g.conv("b3r", "b3", [8, 12, 3, 1]);
    g.conv("norm", "b5r", [16, 4, 1, 1]);
    g.conv("b5r", "b5", [4, 4, 5, 1]);
    let pool = [("kernel_shape", Attr::Ints(&[3, 3])), ("pads", Attr::Ints(&[1, 1, 1, 1]))];
    g.op("MaxPool", &["norm"], "bp", &pool);
    g.conv("bp", "bpp", [16, 4, 1, 1]);
    g.op("Concat", &["b1", "b3", "b5", "bpp"], "module", &[("axis", Attr::Int(1))]);
    g.op("Relu", &["module"], "module_relu", &[]);
    g.head("module_relu", 28, 10);
    g.op("Softmax", &["logits"], "prob", &[("axis", Attr::Int(1))]);
    assert_classified(&classify(g.model(32, "prob", 10, 13), "inception"), "inception");
}

/// Convolution then batch normalization, of `channels` to `channels`.
fn conv_bn(g: &mut Graph, input: &str, out: &str, channels: i64, group: i64) -> String {
    let conv = g.conv(input, &format!("{out}_conv"), [channels, channels, 3, group]);
    let scale = g.weight(&format!("{out}_scale"), &[channels]);
    let bias = g.weight(&format!("{out}_bias"), &[channels]);
    let mean = g.weight(&format!("{out}_mean"), &[channels]);
    let raw = g.weight(&format!("{out}_v"), &[channels]);
    let var = g.op("Abs", &[&raw], &format!("{out}_var"), &[]);
    g.op("BatchNormalization", &[&conv, &scale, &bias, &mean, &var], out, &[])
}

#[test]
fn a_residual_block_with_batch_normalization() {
    let mut g = Graph::default();
    g.conv("x", "stem", [3, 8, 3, 1]);
    conv_bn(&mut g, "stem", "bn1", 8, 1);
    g.op("Relu", &["bn1"], "relu1", &[]);
    conv_bn(&mut g, "relu1", "bn2", 8, 1);
    g.op("Add", &["bn2", "stem"], "sum", &[]);
    g.op("Relu", &["sum"], "out", &[]);
    g.head("out", 8, 10);
    assert_classified(&classify(g.model(32, "logits", 10, 13), "resnet"), "resnet");
}

#[test]
fn a_depthwise_block_with_hard_swish_and_squeeze_excitation() {
    let mut g = Graph::default();
    g.conv("x", "expand", [3, 16, 1, 1]);
    g.op("HardSwish", &["expand"], "act1", &[]);
    conv_bn(&mut g, "act1", "depthwise", 16, 16);
    g.op("HardSwish", &["depthwise"], "act2", &[]);
    // Squeeze and excitation: channel weights from the pooled block, applied by Mul.
    g.op("GlobalAveragePool", &["act2"], "squeeze", &[]);
    g.conv("squeeze", "reduce", [16, 4, 1, 1]);
    g.op("Relu", &["reduce"], "reduce_relu", &[]);
    g.conv("reduce_relu", "excite", [4, 16, 1, 1]);
    g.op("HardSigmoid", &["excite"], "gate", &[]);
    g.op("Mul", &["act2", "gate"], "scaled", &[]);
    g.conv("scaled", "project", [16, 8, 1, 1]);
    g.op("Sigmoid", &["project"], "swish_gate", &[]);
    g.op("Mul", &["project", "swish_gate"], "swish", &[]);
    g.head("swish", 8, 10);
    assert_classified(&classify(g.model(32, "logits", 10, 13), "mobilenet"), "mobilenet");
}

/// A ViT-style encoder block on 16 patches of 8 x 8 (32 x 32 input), 16 wide: patch embedding,
/// the tokens' reshape computed from the input's shape, attention and an MLP, each behind a
/// layer norm, and the mean token classified. `decomposed` writes the layer norm and Gelu out
/// in elementary operators, as older exports do.
fn attention_block(decomposed: bool) -> Vec<u8> {
    let mut g = Graph::default();
    let patch = [("kernel_shape", Attr::Ints(&[8, 8])), ("strides", Attr::Ints(&[8, 8]))];
    let (w, b) = (g.weight("patch_w", &[16, 3, 8, 8]), g.weight("patch_b", &[16]));
    g.op("Conv", &["x", &w, &b], "patches", &patch);
    // [1, 16, 4, 4] -> [1, 16, 16] with the batch taken from the input's shape.
    g.op("Shape", &["patches"], "shape", &[]);
    let zero = g.ints("zero", &[0]);
    g.op("Gather", &["shape", &zero], "batch", &[("axis", Attr::Int(0))]);
    let rest = g.ints("rest", &[16, -1]);
    g.op("Concat", &["batch", &rest], "tokens_shape", &[("axis", Attr::Int(0))]);
    g.op("Reshape", &["patches", "tokens_shape"], "channels_first", &[]);
    g.op("Transpose", &["channels_first"], "tokens", &[("perm", Attr::Ints(&[0, 2, 1]))]);
    let norm = |g: &mut Graph, input: &str, out: &str| -> String {
        let (scale, bias) =
            (g.weight(&format!("{out}_s"), &[16]), g.weight(&format!("{out}_b"), &[16]));
        if !decomposed {
            let axis = [("axis", Attr::Int(-1))];
            return g.op("LayerNormalization", &[input, &scale, &bias], out, &axis);
        }
        let last = [("axes", Attr::Ints(&[-1]))];
        g.op("ReduceMean", &[input], &format!("{out}_mean"), &last);
        g.op("Sub", &[input, &format!("{out}_mean")], &format!("{out}_centred"), &[]);
        let two = g.scalar(&format!("{out}_two"), 2.0);
        g.op("Pow", &[&format!("{out}_centred"), &two], &format!("{out}_sq"), &[]);
        g.op("ReduceMean", &[&format!("{out}_sq")], &format!("{out}_var"), &last);
        let eps = g.scalar(&format!("{out}_eps"), 1e-5);
        g.op("Add", &[&format!("{out}_var"), &eps], &format!("{out}_vare"), &[]);
        g.op("Sqrt", &[&format!("{out}_vare")], &format!("{out}_sd"), &[]);
        g.op("Div", &[&format!("{out}_centred"), &format!("{out}_sd")], &format!("{out}_n"), &[]);
        g.op("Mul", &[&format!("{out}_n"), &scale], &format!("{out}_ns"), &[]);
        g.op("Add", &[&format!("{out}_ns"), &bias], out, &[])
    };
    norm(&mut g, "tokens", "ln1");
    for head in ["q", "k", "v"] {
        let w = g.weight(&format!("w{head}"), &[16, 16]);
        g.op("MatMul", &["ln1", &w], head, &[]);
    }
    g.op("Transpose", &["k"], "kt", &[("perm", Attr::Ints(&[0, 2, 1]))]);
    g.op("MatMul", &["q", "kt"], "scores", &[]);
    let root = g.scalar("root", 4.0);
    g.op("Div", &["scores", &root], "scaled", &[]);
    g.op("Softmax", &["scaled"], "attention", &[("axis", Attr::Int(-1))]);
    g.op("MatMul", &["attention", "v"], "attended", &[]);
    g.op("Add", &["tokens", "attended"], "residual", &[]);
    norm(&mut g, "residual", "ln2");
    let w1 = g.weight("mlp1", &[16, 32]);
    g.op("MatMul", &["ln2", &w1], "hidden", &[]);
    if decomposed {
        let (root2, one, half) =
            (g.scalar("root2", 2f32.sqrt()), g.scalar("one", 1.0), g.scalar("half", 0.5));
        g.op("Div", &["hidden", &root2], "h_scaled", &[]);
        g.op("Erf", &["h_scaled"], "h_erf", &[]);
        g.op("Add", &["h_erf", &one], "h_cdf", &[]);
        g.op("Mul", &["hidden", "h_cdf"], "h_times", &[]);
        g.op("Mul", &["h_times", &half], "gelu", &[]);
    } else {
        g.op("Gelu", &["hidden"], "gelu", &[]);
    }
    let w2 = g.weight("mlp2", &[32, 16]);
    g.op("MatMul", &["gelu", &w2], "mlp", &[]);
    g.op("Add", &["residual", "mlp"], "encoded", &[]);
    let keepdims = ("keepdims", Attr::Int(0));
    if decomposed {
        g.op("ReduceMean", &["encoded"], "mean_token", &[("axes", Attr::Ints(&[1])), keepdims]);
    } else {
        let axes = g.ints("token_axis", &[1]);
        g.op("ReduceMean", &["encoded", &axes], "mean_token", &[keepdims]);
    }
    g.linear("mean_token", "logits", 16, 10);
    // LayerNormalization needs opset 17, Gelu 20; ReduceMean takes `axes` as an attribute
    // until 18, so the decomposed block stays at 17.
    g.model(32, "logits", 10, if decomposed { 17 } else { 20 })
}

#[test]
fn an_attention_block_with_layer_normalization_and_gelu() {
    assert_classified(&classify(attention_block(false), "vit"), "vit");
}

#[test]
fn an_attention_block_with_both_written_out() {
    assert_classified(&classify(attention_block(true), "vit-decomposed"), "vit-decomposed");
}

#[test]
fn operators_of_no_image_classifier_are_refused_by_name() {
    for op in ["DFT", "If", "LSTM", "NonZero", "OneHot", "STFT", "TreeEnsembleClassifier"] {
        let model = format!("fuzz/seeds/model/op-{op}.onnx");
        let output = googlenet()
            .args(["classify", "assets/chelsea.png", "--model", &model])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{op}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{op}: {stderr}");
        let domain = if op == "TreeEnsembleClassifier" { "ai.onnx.ml." } else { "" };
        assert!(stderr.contains(&format!(": the model uses `{domain}{op}` (node `t")), "{stderr}");
        let refusal = "which image classifiers do not; googlenet runs convolutional and \
                       transformer image classifiers\n";
        assert!(stderr.ends_with(refusal), "{op}: {stderr}");
    }
}
