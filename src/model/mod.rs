//! The ONNX classifier: where it comes from, loading it, reading its input and output from the
//! graph, and running the optimised tract plan.

pub mod fetch;
mod source;

use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::tract_ndarray::{Array3, Axis};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;
use tract_onnx::tract_hir::infer::Factoid;

pub use source::{ModelSource, Origin};

/// What the model's output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// A probability distribution: the graph ends in a Softmax.
    Probabilities,
    /// Unnormalised scores: softmax is applied to them.
    Logits,
}

/// The model's image input as read from the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// The input's name in the graph, such as `data_0`.
    pub name: String,
    /// Input width in pixels.
    pub width: u32,
    /// Input height in pixels.
    pub height: u32,
}

/// A loaded classifier: one optimised plan that many threads may run at once.
#[derive(Debug)]
pub struct Model {
    plan: Arc<TypedSimplePlan>,
    /// The image input.
    pub input: InputSpec,
    /// The name of the output that holds the class scores.
    pub output_name: String,
    /// Whether the output is already a probability distribution.
    pub output_kind: OutputKind,
    /// How many classes the output scores.
    pub classes: usize,
}

impl Model {
    /// Loads, checks and optimises the model of `source`.
    pub fn load(source: &ModelSource) -> Result<Model> {
        let bytes = source.bytes()?;
        Model::from_bytes(&bytes).with_context(|| format!("cannot load model {source}"))
    }

    /// Parses an ONNX model and prepares its plan for a batch of one image.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        let onnx = tract_onnx::onnx();
        let proto = onnx.proto_model_for_read(&mut &*bytes).context("not an ONNX model")?;
        let output_kind = output_kind(&proto)?;
        let mut model = onnx.model_for_proto_model(&proto)?;
        ensure!(model.inputs.len() == 1, "expected one image input, found {}", model.inputs.len());
        ensure!(!model.outputs.is_empty(), "the model has no output");
        let input = input_spec(&model)?;
        let fact = f32::fact([1, 3, input.height as usize, input.width as usize]);
        model.set_input_fact(0, fact.into())?;
        let scores = model.outputs[0];
        model.select_output_outlets(&[scores])?;
        let output_name = model
            .outlet_label(scores)
            .map_or_else(|| model.node(scores.node).name.clone(), str::to_owned);
        let optimised = model.into_optimized().context("cannot optimise the model")?;
        let classes = class_count(&optimised)?;
        let plan = optimised.into_runnable()?;
        Ok(Model { plan, input, output_name, output_kind, classes })
    }

    /// Runs one `3 x H x W` image through the network and returns its class probabilities.
    pub fn probabilities(&self, image: Array3<f32>) -> Result<Vec<f32>> {
        let batch: Tensor = image.insert_axis(Axis(0)).into();
        let outputs = self.plan.run(tvec!(batch.into_tvalue()))?;
        let output = outputs.first().context("the model returned no output")?;
        let scores = output.to_plain_array_view::<f32>()?.iter().copied().collect::<Vec<f32>>();
        Ok(match self.output_kind {
            OutputKind::Probabilities => scores,
            OutputKind::Logits => crate::classify::softmax(&scores),
        })
    }
}

/// Reads the image input's name and size, which must be `[N, 3, H, W]` with H and W known.
fn input_spec(model: &InferenceModel) -> Result<InputSpec> {
    let outlet = model.inputs[0];
    let name = model.node(outlet.node).name.clone();
    let fact = model.input_fact(0)?;
    let dims: Option<Vec<Option<usize>>> = (!fact.shape.is_open())
        .then(|| fact.shape.dims().map(|d| d.concretize().and_then(|d| d.as_usize())).collect());
    let shape = || format!("{:?}", fact.shape);
    match dims.as_deref() {
        Some([_, Some(3), Some(h), Some(w)]) => Ok(InputSpec {
            name,
            height: u32::try_from(*h).context("input height out of range")?,
            width: u32::try_from(*w).context("input width out of range")?,
        }),
        Some([_, _, _, _]) => {
            bail!("input `{name}` has shape {}: expected [N,3,H,W] with H and W fixed", shape())
        }
        _ => bail!("input `{name}` has shape {}: expected an image input [N,3,H,W]", shape()),
    }
}

/// Whether the first graph output is produced by a Softmax node.
fn output_kind(proto: &ModelProto) -> Result<OutputKind> {
    let graph = proto.graph.as_ref().context("the ONNX file holds no graph")?;
    let output = graph.output.first().context("the model has no output")?;
    let producer = graph.node.iter().find(|node| node.output.contains(&output.name));
    Ok(match producer {
        Some(node) if node.op_type == "Softmax" => OutputKind::Probabilities,
        _ => OutputKind::Logits,
    })
}

/// The number of scores the (batch of one) output holds.
fn class_count(model: &TypedModel) -> Result<usize> {
    let fact = model.output_fact(0)?;
    let shape = fact.shape.as_concrete().context("the output shape is not fixed")?;
    let classes: usize = shape.iter().product();
    ensure!(classes > 0, "the output {:?} holds no scores", shape);
    Ok(classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_an_onnx_model() {
        let err = Model::from_bytes(b"this is not a protobuf").unwrap_err();
        assert!(format!("{err:#}").contains("not an ONNX model"), "{err:#}");
    }

    #[test]
    fn empty_bytes_have_no_graph() {
        let err = Model::from_bytes(b"").unwrap_err();
        assert!(format!("{err:#}").contains("no graph"), "{err:#}");
    }
}
