//! Finding a classifier's features: what its last linear layer reads, the tensor `embed`
//! returns unless told which.

use anyhow::{bail, Context, Result};
use tract_onnx::pb::{GraphProto, ModelProto, NodeProto};

/// Operators that only reshape, rename or normalise their first input: looked through on the
/// way from the scores back to the features.
const LOOKED_THROUGH: [&str; 8] =
    ["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Dropout", "Identity", "Softmax", "LogSoftmax"];

/// The tensor the classifier's last linear layer (`Gemm`, or `MatMul` with or without an `Add`)
/// reads, followed back through reshapes to the layer that computes it: for GoogLeNet, the
/// 1024 values of `pool5/7x7_s1`.
pub(super) fn feature_tensor(proto: &ModelProto) -> Result<String> {
    let graph = proto.graph.as_ref().context("the ONNX file holds no graph")?;
    let output = graph.output.first().context("the model has no output")?;
    let mut tensor = output.name.as_str();
    // A graph is acyclic, so each step back meets another node; a file may not be, so the
    // steps are bounded.
    for _ in 0..=graph.node.len() {
        let Some(node) = producer(graph, tensor) else { break };
        let linear = match node.op_type.as_str() {
            "Gemm" | "MatMul" => Some(node),
            "Add" => {
                node.input.iter().filter_map(|i| producer(graph, i)).find(|n| n.op_type == "MatMul")
            }
            op if LOOKED_THROUGH.contains(&op) => None,
            op => bail!(
                "the scores come from {op} node `{}`, not a linear layer: name the features' \
                 layer with the `layer` setting",
                node.name
            ),
        };
        if let Some(linear) = linear {
            return Ok(source(graph, first_input(linear)?));
        }
        tensor = first_input(node)?;
    }
    bail!("no linear layer found before the scores: name the features' layer with the `layer` setting")
}

/// `tensor` followed back through the reshapes that produce it.
fn source<'g>(graph: &'g GraphProto, mut tensor: &'g str) -> String {
    for _ in 0..=graph.node.len() {
        match producer(graph, tensor) {
            Some(node) if LOOKED_THROUGH.contains(&node.op_type.as_str()) => {
                match node.input.first() {
                    Some(input) => tensor = input,
                    None => break,
                }
            }
            _ => break,
        }
    }
    tensor.to_owned()
}

/// The node that writes `tensor`.
fn producer<'g>(graph: &'g GraphProto, tensor: &str) -> Option<&'g NodeProto> {
    graph.node.iter().find(|node| node.output.iter().any(|o| o == tensor))
}

fn first_input(node: &NodeProto) -> Result<&str> {
    node.input
        .first()
        .map(String::as_str)
        .with_context(|| format!("node `{}` has no input", node.name))
}
