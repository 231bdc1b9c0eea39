//! A guard around tract-onnx's `LayerNormalization`. Its shape rule (tract 0.23.9) turns
//! `axis + rank` into a `usize` and counts up to it, so an axis below minus the input's rank
//! (or any axis on a scalar) wraps around and the loader loops for ever; the loader fuzzer
//! found it with a 451-byte model. The guard checks the axis against the rank first.

use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::expandable::{expand, Expansion};

/// tract-onnx's parser, with `LayerNormalization` built through [`checked`].
pub(crate) fn onnx() -> Onnx {
    let mut onnx = tract_onnx::onnx();
    onnx.op_register.insert("LayerNormalization", checked);
    onnx
}

/// Builds tract's own `LayerNormalization` and wraps it in [`AxisChecked`].
fn checked(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let builder = *tract_onnx::onnx()
        .op_register
        .0
        .get("LayerNormalization")
        .context("tract-onnx has no LayerNormalization")?;
    let (op, extra) = builder(ctx, node)?;
    let inner = op
        .into_any()
        .downcast::<Box<dyn Expansion>>()
        .map_err(|_| format_err!("tract-onnx's LayerNormalization is not an expansion"))?;
    let axis = node.attribute.iter().find(|a| a.name == "axis").map_or(-1, |a| a.i);
    Ok((expand(AxisChecked { axis, inner: *inner }), extra))
}

/// An expansion that refuses an `axis` outside `-rank..rank` before its inner rules run.
#[derive(Debug, Clone)]
struct AxisChecked {
    axis: i64,
    inner: Box<dyn Expansion>,
}

impl Expansion for AxisChecked {
    fn name(&self) -> StaticName {
        self.inner.as_ref().name()
    }

    fn validation(&self) -> Validation {
        self.inner.as_ref().validation()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        self.inner.as_ref().info()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        self.inner.as_ref().nboutputs()
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        self.inner.as_ref().wire(prefix, model, inputs)
    }

    fn wire_with_inference_model_and_node(
        &self,
        prefix: &str,
        model: &InferenceModel,
        node: &InferenceNode,
        typed_model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        self.inner.as_ref().wire_with_inference_model_and_node(
            prefix,
            model,
            node,
            typed_model,
            inputs,
        )
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        let input = inputs.first().context("LayerNormalization has no input")?;
        s.given(&input.rank, move |_, rank| {
            ensure!(
                (-rank..rank).contains(&self.axis),
                "LayerNormalization: axis {} is out of range for an input of rank {rank}",
                self.axis
            );
            Ok(())
        })?;
        self.inner.as_ref().rules(s, inputs, outputs)
    }

    fn runs_out_of_plan(&self) -> bool {
        self.inner.as_ref().runs_out_of_plan()
    }
}
