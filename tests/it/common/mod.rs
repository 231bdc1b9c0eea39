//! Helpers shared by the integration tests: paths into `../shared`, the binary, and small ONNX
//! models built here with random weights.
#![allow(dead_code)]

pub mod http;
#[path = "../../../crates/googlenet/tests/it/images.rs"]
pub mod images;
#[path = "../../../crates/googlenet/tests/it/reference.rs"]
mod reference;
pub mod server;

pub use reference::*;

use std::path::Path;

use prost::Message;
use tract_onnx::pb::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

/// The `googlenet` binary, with no model or cache from the environment, run from the
/// repository root (so that `assets/...` names the committed photos).
pub fn googlenet() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("googlenet").unwrap();
    cmd.env_remove("GOOGLENET_MODEL").current_dir(root());
    cmd
}

/// The project's kernel paths this CPU runs (`GOOGLENET_ISA` values): the tests that run every
/// path run these. The first call says on stderr which it skips and why, past the test
/// harness's capture, so that the suite's output shows it.
pub fn kernel_paths() -> Vec<&'static str> {
    static SAID: std::sync::Once = std::sync::Once::new();
    let features = [
        ("AMX-BF16", amx_bf16()),
        ("AVX512-BF16", is_x86_feature_detected!("avx512bf16")),
        ("AVX-512F", is_x86_feature_detected!("avx512f")),
        ("AVX2", is_x86_feature_detected!("avx2")),
        ("FMA", is_x86_feature_detected!("fma")),
    ];
    let paths: [(&str, &[&str]); 4] = [
        ("amx", &["AMX-BF16", "AVX-512F", "AVX2", "FMA"]),
        ("avx512bf16", &["AVX512-BF16", "AVX-512F", "AVX2", "FMA"]),
        ("avx512", &["AVX-512F", "AVX2", "FMA"]),
        ("avx2", &["AVX2", "FMA"]),
    ];
    let lacks = |needs: &[&'static str]| -> Vec<&'static str> {
        let present = |need: &&str| features.iter().any(|&(name, has)| name == *need && has);
        needs.iter().copied().filter(|need| !present(need)).collect()
    };
    let (runs, skipped): (Vec<_>, Vec<_>) =
        paths.into_iter().partition(|&(_, needs)| lacks(needs).is_empty());
    SAID.call_once(|| {
        for (path, needs) in skipped {
            let lacking = lacks(needs).join(", ");
            let line = format!("skipped kernel path {path}: this CPU lacks {lacking}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        }
    });
    runs.into_iter().map(|(path, _)| path).collect()
}

/// Whether the CPU has AMX-BF16 and AMX-TILE (CPUID leaf 7, EDX bits 22 and 24).
fn amx_bf16() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    __cpuid(0).eax >= 7 && __cpuid_count(7, 0).edx & (1 << 22 | 1 << 24) == 1 << 22 | 1 << 24
}

/// Makes a named pipe at `path` that nothing writes to: a run that reads it waits there until
/// it is killed.
pub fn blocking_fifo(path: &Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

/// The JSON Lines records `googlenet classify --quiet ARGS...` prints, after checking that
/// it succeeded.
pub fn classify_records<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> Vec<serde_json::Value> {
    let output =
        googlenet().args(["classify", "--quiet", "--format", "jsonl"]).args(args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Deterministic pseudo-random floats in -scale..scale.
fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn tensor(name: &str, dims: &[i64], seed: u64) -> TensorProto {
    let count = dims.iter().product::<i64>() as usize;
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 1,
        float_data: noise(count, seed, 0.5),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v),
                None => dimension::Value::DimParam("batch".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attributes: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attributes,
        ..Default::default()
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: 7, ints: values.to_vec(), ..Default::default() }
}

/// A torchvision-style classifier with random weights: input `x` `[batch, 3, size, size]`,
/// Conv 3x3/2 -> ReLU -> GlobalAveragePool -> Flatten -> Gemm, output `logits` `[batch, classes]`.
pub fn random_classifier(size: i64, classes: i64) -> Vec<u8> {
    encode(classifier_graph(size, classes))
}

/// [`random_classifier`] with 1000 classes whose scores get the sum of `planes` added
/// `side x side` `ConstantOfShape`s (of 1, 2, ...): a few bytes of model that tract evaluates
/// while loading.
pub fn constant_blowup(side: i64, planes: u8) -> Vec<u8> {
    let mut graph = classifier_graph(16, 1000);
    let gemm = graph.node.last_mut().unwrap();
    gemm.name = "gemm".into();
    gemm.output = vec!["gemm".into()];
    graph.initializer.push(int64s("side", &[side, side]));
    let filled = |value: u8| AttributeProto {
        name: "value".into(),
        r#type: 4,
        t: Some(TensorProto {
            dims: vec![1],
            data_type: 1,
            float_data: vec![f32::from(value)],
            ..Default::default()
        }),
        ..Default::default()
    };
    graph.node.push(node("ConstantOfShape", &["side"], "plane1", vec![filled(1)]));
    let mut last = "plane1".to_owned();
    for value in 2..=planes {
        let (plane, total) = (format!("plane{value}"), format!("total{value}"));
        graph.node.extend([
            node("ConstantOfShape", &["side"], &plane, vec![filled(value)]),
            node("Add", &[&last, &plane], &total, vec![]),
        ]);
        last = total;
    }
    let sum = AttributeProto { name: "keepdims".into(), r#type: 2, i: 0, ..Default::default() };
    graph.node.extend([
        node("ReduceSum", &[&last], "sum", vec![sum]),
        node("Add", &["gemm", "sum"], "logits", vec![]),
    ]);
    encode(graph)
}

/// [`random_classifier`] (16 x 16, 1000 classes) with a chain of `relus` ReLUs for its one:
/// a graph that grows by one node and one edge per ReLU.
pub fn relu_chain(relus: usize) -> Vec<u8> {
    let mut graph = classifier_graph(16, 1000);
    let after_relu = graph.node.split_off(2);
    graph.node.truncate(1);
    let mut last = "conv".to_owned();
    for i in 1..relus {
        let out = format!("relu{i}");
        graph.node.push(node("Relu", &[&last], &out, vec![]));
        last = out;
    }
    graph.node.push(node("Relu", &[&last], "relu", vec![]));
    graph.node.extend(after_relu);
    encode(graph)
}

/// A model of 10 classes, on 16 x 16 images, that multiplies the image's values, sliced to as
/// many as its largest value says (a length known only as it runs), by an `8 x 10` matrix.
pub fn mismatched_product() -> Vec<u8> {
    let to_int = AttributeProto { name: "to".into(), r#type: 2, i: 7, ..Default::default() };
    encode(GraphProto {
        name: "mismatched".into(),
        node: vec![
            node("Reshape", &["x", "minus_one"], "flat", vec![]),
            node("ReduceMax", &["flat"], "largest", vec![]),
            node("Cast", &["largest"], "end", vec![to_int]),
            node("Slice", &["flat", "zero", "end"], "vector", vec![]),
            node("MatMul", &["vector", "weights"], "scores", vec![]),
            node("Reshape", &["scores", "row"], "logits", vec![]),
        ],
        initializer: vec![
            int64s("minus_one", &[-1]),
            int64s("zero", &[0]),
            int64s("row", &[1, 10]),
            tensor("weights", &[8, 10], 5),
        ],
        input: vec![value_info("x", &[Some(1), Some(3), Some(16), Some(16)])],
        output: vec![value_info("logits", &[Some(1), Some(10)])],
        ..Default::default()
    })
}

/// A model of 10 classes, on `height x width` images: [`random_classifier`]'s graph.
pub fn classifier_of_size(height: i64, width: i64) -> Vec<u8> {
    let mut graph = classifier_graph(16, 10);
    graph.input = vec![value_info("x", &[Some(1), Some(3), Some(height), Some(width)])];
    encode(graph)
}

/// A model of 10 classes that adds to its scores the max-pool of its image flattened to one
/// axis, which has no channels.
pub fn vector_pool() -> Vec<u8> {
    let mut graph = classifier_graph(16, 10);
    let gemm = graph.node.last_mut().unwrap();
    gemm.output = vec!["gemm".into()];
    graph.initializer.push(int64s("minus_one", &[-1]));
    let keepdims = AttributeProto { name: "keepdims".into(), r#type: 2, ..Default::default() };
    graph.node.extend([
        node("Reshape", &["x", "minus_one"], "vector", vec![]),
        node("MaxPool", &["vector"], "vector_pooled", vec![ints("kernel_shape", &[2])]),
        node("ReduceSum", &["vector_pooled"], "sum", vec![keepdims]),
        node("Add", &["gemm", "sum"], "logits", vec![]),
    ]);
    encode(graph)
}

/// A model of 10 classes, on 16 x 16 images, that raises the image's 3 channels to the power
/// of an empty `1 x 0 x 1 x 1` exponent: lengths that cannot broadcast, known as it loads.
pub fn empty_exponent() -> Vec<u8> {
    let keepdims = AttributeProto { name: "keepdims".into(), r#type: 2, ..Default::default() };
    encode(GraphProto {
        name: "empty exponent".into(),
        node: vec![
            node("Pow", &["x", "exponent"], "powered", vec![]),
            node("ReduceSum", &["powered", "spatial"], "pooled", vec![keepdims]),
            node("MatMul", &["pooled", "weights"], "logits", vec![]),
        ],
        initializer: vec![
            tensor("exponent", &[1, 0, 1, 1], 1),
            int64s("spatial", &[2, 3]),
            tensor("weights", &[3, 10], 5),
        ],
        input: vec![value_info("x", &[Some(1), Some(3), Some(16), Some(16)])],
        output: vec![value_info("logits", &[Some(1), Some(10)])],
        ..Default::default()
    })
}

fn int64s(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: 7,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

fn classifier_graph(size: i64, classes: i64) -> GraphProto {
    GraphProto {
        name: "random".into(),
        node: vec![
            node(
                "Conv",
                &["x", "conv_w", "conv_b"],
                "conv",
                vec![
                    ints("kernel_shape", &[3, 3]),
                    ints("strides", &[2, 2]),
                    ints("pads", &[1, 1, 1, 1]),
                ],
            ),
            node("Relu", &["conv"], "relu", vec![]),
            node("GlobalAveragePool", &["relu"], "pool", vec![]),
            node("Flatten", &["pool"], "flat", vec![]),
            node(
                "Gemm",
                &["flat", "fc_w", "fc_b"],
                "logits",
                vec![AttributeProto {
                    name: "transB".into(),
                    r#type: 2,
                    i: 1,
                    ..Default::default()
                }],
            ),
        ],
        initializer: vec![
            tensor("conv_w", &[8, 3, 3, 3], 1),
            tensor("conv_b", &[8], 2),
            tensor("fc_w", &[classes, 8], 3),
            tensor("fc_b", &[classes], 4),
        ],
        input: vec![value_info("x", &[None, Some(3), Some(size), Some(size)])],
        output: vec![value_info("logits", &[None, Some(classes)])],
        ..Default::default()
    }
}

/// A model whose input is not an image: `[batch, 10]` -> Relu.
pub fn non_image_model() -> Vec<u8> {
    let graph = GraphProto {
        name: "vector".into(),
        node: vec![node("Relu", &["v"], "out", vec![])],
        input: vec![value_info("v", &[None, Some(10)])],
        output: vec![value_info("out", &[None, Some(10)])],
        ..Default::default()
    };
    encode(graph)
}

fn encode(graph: GraphProto) -> Vec<u8> {
    encode_at(graph, 13)
}

/// `graph` as an ONNX file of operator set `opset`.
fn encode_at(graph: GraphProto, opset: i64) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
        producer_name: "googlenet tests".into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A small ONNX graph built node by node, with random weights, for the classifier families'
/// characteristic blocks. Its input is `x` `[1, 3, size, size]`.
#[derive(Default)]
pub struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

/// An attribute of `value`: an integer, a float or integers.
pub enum Attr<'a> {
    Int(i64),
    Float(f32),
    Ints(&'a [i64]),
}

impl Graph {
    /// A random float initializer of `dims`, named `name`.
    pub fn weight(&mut self, name: &str, dims: &[i64]) -> String {
        let seed = self.initializers.len() as u64 + 1;
        self.initializers.push(tensor(name, dims, seed));
        name.to_owned()
    }

    /// An int64 initializer.
    pub fn ints(&mut self, name: &str, values: &[i64]) -> String {
        self.initializers.push(int64s(name, values));
        name.to_owned()
    }

    /// A float scalar initializer.
    pub fn scalar(&mut self, name: &str, value: f32) -> String {
        let scalar = TensorProto {
            name: name.into(),
            data_type: 1,
            float_data: vec![value],
            ..Default::default()
        };
        self.initializers.push(scalar);
        name.to_owned()
    }

    /// A node of `op` on `inputs`, whose output is named `output`.
    pub fn op(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attrs: &[(&str, Attr)],
    ) -> String {
        let attributes = attrs
            .iter()
            .map(|(name, value)| {
                let name = (*name).into();
                match value {
                    Attr::Int(i) => AttributeProto { name, r#type: 2, i: *i, ..Default::default() },
                    Attr::Float(f) => {
                        AttributeProto { name, r#type: 1, f: *f, ..Default::default() }
                    }
                    Attr::Ints(v) => {
                        AttributeProto { name, r#type: 7, ints: v.to_vec(), ..Default::default() }
                    }
                }
            })
            .collect();
        self.nodes.push(node(op, inputs, output, attributes));
        output.to_owned()
    }

    /// A `channels`-out convolution of `input` (`inputs` channels) with a `kernel`-wide square
    /// kernel, "same" padding, and `group` groups.
    pub fn conv(
        &mut self,
        input: &str,
        out: &str,
        [inputs, channels, kernel, group]: [i64; 4],
    ) -> String {
        let w = self.weight(&format!("{out}_w"), &[channels, inputs / group, kernel, kernel]);
        let b = self.weight(&format!("{out}_b"), &[channels]);
        let pad = kernel / 2;
        let attrs = [
            ("kernel_shape", Attr::Ints(&[kernel, kernel])),
            ("pads", Attr::Ints(&[pad, pad, pad, pad])),
            ("group", Attr::Int(group)),
        ];
        self.op("Conv", &[input, &w, &b], out, &attrs)
    }

    /// Global average pool, flatten and a `classes`-way `Gemm` of `input` (`channels`), as
    /// `logits`.
    pub fn head(&mut self, input: &str, channels: i64, classes: i64) -> String {
        self.op("GlobalAveragePool", &[input], "pooled", &[]);
        self.op("Flatten", &["pooled"], "flat", &[]);
        self.linear("flat", "logits", channels, classes)
    }

    /// `input x W^T + b` for a `[.., inputs]` input, `outputs` wide.
    pub fn linear(&mut self, input: &str, out: &str, inputs: i64, outputs: i64) -> String {
        let w = self.weight(&format!("{out}_w"), &[outputs, inputs]);
        let b = self.weight(&format!("{out}_b"), &[outputs]);
        self.op("Gemm", &[input, &w, &b], out, &[("transB", Attr::Int(1))])
    }

    /// The model, of opset `opset`, from `x` `[1, 3, size, size]` to `output` `[1, classes]`.
    pub fn model(self, size: i64, output: &str, classes: i64, opset: i64) -> Vec<u8> {
        let graph = GraphProto {
            name: "family".into(),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![value_info("x", &[Some(1), Some(3), Some(size), Some(size)])],
            output: vec![value_info(output, &[Some(1), Some(classes)])],
            ..Default::default()
        };
        encode_at(graph, opset)
    }
}

/// Runs `command` as the only child of a Python process that reports the child's peak resident
/// memory (`getrusage` of its children): its output, and that peak in bytes.
pub fn with_peak_memory(command: &mut std::process::Command) -> (std::process::Output, u64) {
    const REPORT: &str = "import resource, subprocess, sys\n\
        done = subprocess.run(sys.argv[1:])\n\
        print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n\
        sys.exit(done.returncode)";
    let program = command.get_program().to_owned();
    let mut wrapped = std::process::Command::new("python3");
    wrapped.args(["-c", REPORT]).arg(program).args(command.get_args());
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    let mut output = wrapped.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let (rest, last) = stderr.trim_end().rsplit_once('\n').unwrap_or(("", stderr.trim_end()));
    let kib: u64 = last.trim().parse().unwrap_or_else(|_| panic!("no peak in {stderr}"));
    output.stderr = rest.as_bytes().to_vec();
    (output, kib * 1024)
}
