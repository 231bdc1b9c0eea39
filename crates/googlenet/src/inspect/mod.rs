//! `googlenet inspect`: the network laid open from the ONNX graph itself. Every node in
//! execution order with its output shape (batch symbolic), parameters and multiply-adds; the
//! Inception modules recognised from the branches feeding each Concat ([`modules`]); and where
//! the time goes when the model runs ([`profile`]).

pub mod modules;
mod paper;
pub mod profile;

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::model::attributes::{float, int, ints};

/// ONNX element type of 32-bit floats, the only initializers counted as parameters.
const FLOAT: i32 = 1;

/// One node of the graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layer {
    /// The node's name.
    pub name: String,
    /// The ONNX operator.
    pub op: String,
    /// The attributes that matter, compactly (kernel/stride and pads, LRN constants, axis).
    pub attributes: String,
    /// Output shape; the batch is `N` unless an input shape was given.
    pub shape: Vec<String>,
    /// Learned parameters (float initializers feeding the node).
    pub params: u64,
    /// Multiply-adds per image (convolutions and fully connected layers).
    pub macs: u64,
    /// Names of the tensors the node reads, initializers left out.
    #[serde(skip)]
    pub inputs: Vec<String>,
    /// Name of the tensor the node writes.
    #[serde(skip)]
    pub output: String,
    /// Kernel height and width, for convolutions and pools.
    #[serde(skip)]
    pub kernel: Option<(usize, usize)>,
    /// Stride, for convolutions and pools.
    #[serde(skip)]
    pub stride: Option<usize>,
}

impl Layer {
    /// Output channels: the second dimension of the output.
    pub fn channels(&self) -> Option<usize> {
        self.shape.get(1)?.parse().ok()
    }

    /// The output size as Table 1 writes it: `HxWxC` (`1x1xC` for a flat output).
    pub fn output_size(&self) -> String {
        match self.shape.as_slice() {
            [_, c, h, w] => format!("{h}x{w}x{c}"),
            [_, c] => format!("1x1x{c}"),
            other => other.join("x"),
        }
    }

    /// `7x7/2`: kernel and stride.
    pub fn patch(&self) -> Option<String> {
        let (kh, kw) = self.kernel?;
        Some(format!("{kh}x{kw}/{}", self.stride.unwrap_or(1)))
    }
}

/// The network's input and every node in execution order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Network {
    /// Input name.
    pub input: String,
    /// Input shape, batch symbolic unless given.
    pub input_shape: Vec<String>,
    /// Nodes in execution (graph) order.
    pub layers: Vec<Layer>,
    /// Sum of `params`.
    pub total_params: u64,
    /// Sum of `macs`.
    pub total_macs: u64,
}

impl Network {
    /// Reads the ONNX model and infers every node's output shape, with the input shape
    /// `input_shape` or, by default, the model's own with a symbolic batch `N`.
    pub(crate) fn analyse(bytes: &[u8], input_shape: Option<&[usize]>) -> Result<Network> {
        crate::guard::catch_load(|| Network::read(bytes, input_shape))
    }

    fn read(bytes: &[u8], input_shape: Option<&[usize]>) -> Result<Network> {
        let onnx = crate::model::onnx();
        let proto = crate::model::read_proto(bytes)?;
        let mut batch_free = proto.clone();
        crate::model::free_batch(&mut batch_free);
        let mut model = onnx.model_for_proto_model(&batch_free)?;
        ensure!(model.inputs.len() == 1, "expected one input, found {}", model.inputs.len());
        let input_outlet = *model.inputs.first().context("the model has no input")?;
        let input = model.node(input_outlet.node).name.clone();
        let fact = match input_shape {
            Some(shape) => f32::fact(shape).into(),
            None => symbolic_batch(&model)?,
        };
        model.set_input_fact(0, fact)?;
        model.analyse(false).context("cannot infer the shapes: give the input shape")?;
        let dims_of = |outlet: OutletId| -> Result<Vec<String>> {
            let fact = model.outlet_fact(outlet)?;
            ensure!(!fact.shape.is_open(), "the shape is unknown");
            Ok(fact
                .shape
                .dims()
                .map(|d| d.concretize().map_or("?".into(), |d| d.to_string()))
                .collect())
        };
        let shape_of = |tensor: &str| -> Result<Vec<String>> {
            dims_of(model.find_outlet_label(tensor).context("no such tensor")?)
                .with_context(|| format!("tensor `{tensor}`"))
        };
        let input_shape = dims_of(input_outlet)?;
        let graph = proto.graph.as_ref().context("the ONNX file holds no graph")?;
        let weights: HashMap<&str, (i32, u64)> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), (t.data_type, t.dims.iter().product::<i64>().max(0) as u64)))
            .collect();
        let layers = graph
            .node
            .iter()
            .filter(|node| node.op_type != "Constant")
            .map(|node| layer(node, &weights, &shape_of))
            .collect::<Result<Vec<Layer>>>()?;
        Ok(Network {
            input,
            input_shape,
            total_params: layers.iter().map(|l| l.params).sum(),
            total_macs: layers.iter().map(|l| l.macs).sum(),
            layers,
        })
    }

    /// The layer table as aligned text, with totals.
    pub fn to_text(&self) -> String {
        let rows: Vec<[String; 6]> = self
            .layers
            .iter()
            .map(|l| {
                [
                    l.name.clone(),
                    l.op.clone(),
                    l.attributes.clone(),
                    l.shape.join("x"),
                    thousands(l.params),
                    thousands(l.macs),
                ]
            })
            .collect();
        let header =
            ["layer", "op", "attributes", "output", "params", "mult-adds"].map(String::from);
        let totals = [
            "total".into(),
            String::new(),
            String::new(),
            String::new(),
            thousands(self.total_params),
            thousands(self.total_macs),
        ];
        let mut text = format!("input `{}` {}\n", self.input, self.input_shape.join("x"));
        text.push_str(&aligned(&header, &rows, &totals, &[false, false, false, false, true, true]));
        text
    }
}

/// The model's own input shape with its first dimension replaced by the symbol `N`.
fn symbolic_batch(model: &InferenceModel) -> Result<InferenceFact> {
    let fact = model.input_fact(0)?;
    ensure!(!fact.shape.is_open(), "the input shape is unknown: give it");
    let mut dims: Vec<TDim> = Vec::new();
    for (axis, dim) in fact.shape.dims().enumerate() {
        match (axis, dim.concretize()) {
            (0, _) => dims.push(model.sym("N").into()),
            (_, Some(dim)) => dims.push(dim),
            (_, None) => {
                bail!("input dimension {axis} is unknown: give the input shape")
            }
        }
    }
    Ok(f32::fact(dims).into())
}

fn layer(
    node: &NodeProto,
    weights: &HashMap<&str, (i32, u64)>,
    shape_of: &dyn Fn(&str) -> Result<Vec<String>>,
) -> Result<Layer> {
    let output = node.output.first().cloned().unwrap_or_default();
    let shape = shape_of(&output).with_context(|| format!("node `{}`", node.name))?;
    let params: u64 = node
        .input
        .iter()
        .filter_map(|i| weights.get(i.as_str()))
        .filter(|(kind, _)| *kind == FLOAT)
        .map(|(_, count)| count)
        .sum();
    let per_image: u64 = shape.iter().skip(1).map(|d| d.parse::<u64>().unwrap_or(0)).product();
    let weight = node.input.get(1).and_then(|w| weights.get(w.as_str())).map(|(_, n)| *n);
    let channels = shape.get(1).and_then(|c| c.parse::<u64>().ok()).filter(|&c| c > 0);
    let macs = match (node.op_type.as_str(), weight, channels) {
        ("Conv" | "Gemm" | "MatMul", Some(weight), Some(channels)) => {
            per_image * (weight / channels)
        }
        _ => 0,
    };
    let kernel = ints(node, "kernel_shape").and_then(|k| match k {
        [h, w] => Some((*h as usize, *w as usize)),
        _ => None,
    });
    let stride = ints(node, "strides").and_then(|s| s.first().map(|&s| s as usize));
    Ok(Layer {
        name: node.name.clone(),
        op: node.op_type.clone(),
        attributes: attributes(node),
        shape,
        params,
        macs,
        inputs: node.input.iter().filter(|i| !weights.contains_key(i.as_str())).cloned().collect(),
        output,
        kernel,
        stride: stride.or(kernel.map(|_| 1)),
    })
}

/// The attributes worth showing, compactly: `7x7/2 pad 3`, `size 5 alpha 0.0001 ...`.
fn attributes(node: &NodeProto) -> String {
    let mut parts = Vec::new();
    if let Some(kernel) = ints(node, "kernel_shape") {
        let stride = ints(node, "strides").and_then(|s| s.first().copied()).unwrap_or(1);
        let kernel: Vec<String> = kernel.iter().map(i64::to_string).collect();
        parts.push(format!("{}/{stride}", kernel.join("x")));
    }
    if let Some(pads) = ints(node, "pads").filter(|p| p.iter().any(|&v| v != 0)) {
        let pads: Vec<String> = pads.iter().map(i64::to_string).collect();
        let text = match pads.first() {
            Some(first) if pads.iter().all(|p| p == first) => first.clone(),
            _ => pads.join(","),
        };
        parts.push(format!("pad {text}"));
    }
    if let Some(group) = int(node, "group").filter(|&g| g > 1) {
        parts.push(format!("group {group}"));
    }
    if int(node, "ceil_mode") == Some(1) {
        parts.push("ceil".into());
    }
    if node.op_type == "LRN" {
        let size = int(node, "size").unwrap_or(0);
        let alpha = float(node, "alpha").unwrap_or(1e-4);
        let beta = float(node, "beta").unwrap_or(0.75);
        let bias = float(node, "bias").unwrap_or(1.0);
        parts.push(format!("size {size} alpha {alpha} beta {beta} bias {bias}"));
    }
    if let Some(axis) = int(node, "axis") {
        parts.push(format!("axis {axis}"));
    }
    if int(node, "transB") == Some(1) {
        parts.push("transB".into());
    }
    parts.join(" ")
}

/// `6998552` -> `6,998,552`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Columns padded to their widest cell; `right` marks right-aligned (numeric) columns.
pub fn aligned<const N: usize>(
    header: &[String; N],
    rows: &[[String; N]],
    footer: &[String; N],
    right: &[bool; N],
) -> String {
    let mut widths = [0; N];
    for row in std::iter::once(header).chain(rows).chain(std::iter::once(footer)) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |row: &[String; N]| {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .zip(right)
            .map(|((cell, w), &r)| if r { format!("{cell:>w$}") } else { format!("{cell:<w$}") })
            .collect();
        let _ = writeln!(text, "{}", cells.join("  ").trim_end());
    };
    line(header);
    rows.iter().for_each(&mut line);
    if footer.iter().any(|c| !c.is_empty()) {
        line(footer);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(6_998_552), "6,998,552");
    }

    #[test]
    fn columns_align() {
        let header = ["a".to_string(), "n".to_string()];
        let rows = [["long name".to_string(), "1".to_string()]];
        let footer = ["total".to_string(), "100".to_string()];
        let text = aligned(&header, &rows, &footer, &[false, true]);
        assert_eq!(text, "a            n\nlong name    1\ntotal      100\n");
    }
}
