//! Checks in front of tract-onnx operators that a malformed model can send into a loop or an
//! abort (tract 0.23.9; both found by the loader fuzzer):
//! - `LayerNormalization`: its shape rule turns `axis + rank` into a `usize` and counts up to
//!   it, so an axis below minus the input's rank (or any axis on a scalar) loops for ever;
//! - `MelWeightMatrix`: it collects `num_mel_bins + 2` values into a `Vec`, an allocation that
//!   cannot fail softly, so a huge or negative count aborts the process.

use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::expandable::{expand, Expansion};

use crate::guard::MAX_ALLOCATION_BYTES;

/// tract-onnx's parser, with the operators above built through [`Checked`].
pub(crate) fn onnx() -> Onnx {
    let mut onnx = tract_onnx::onnx();
    onnx.op_register.insert("LayerNormalization", |ctx, node| {
        let axis = node.attribute.iter().find(|a| a.name == "axis").map_or(-1, |a| a.i);
        checked(ctx, node, Check::Axis(axis))
    });
    onnx.op_register.insert("MelWeightMatrix", |ctx, node| checked(ctx, node, Check::MelBins));
    onnx
}

/// What [`Checked`] checks before passing on to tract's operator.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// The input's rank admits this axis.
    Axis(i64),
    /// The first input, a constant bin count, is not negative and fits in memory.
    MelBins,
}

/// Builds tract's own operator for `node` and wraps it in [`Checked`].
fn checked(
    ctx: &ParsingContext,
    node: &NodeProto,
    check: Check,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let op_type = node.op_type.as_str();
    let builder = *tract_onnx::onnx()
        .op_register
        .0
        .get(op_type)
        .with_context(|| format!("tract-onnx has no {op_type}"))?;
    let (op, extra) = builder(ctx, node)?;
    let inner = op
        .into_any()
        .downcast::<Box<dyn Expansion>>()
        .map_err(|_| format_err!("tract-onnx's {op_type} is not an expansion"))?;
    Ok((expand(Checked { check, inner: *inner }), extra))
}

/// An expansion that makes its [`Check`] before its inner operator's rules or wiring run.
#[derive(Debug, Clone)]
struct Checked {
    check: Check,
    inner: Box<dyn Expansion>,
}

impl Checked {
    /// The check on wiring `inputs` into `model`. tract reaches the inner operator's wiring by
    /// two paths (constant folding calls `wire`, typing `wire_with_inference_model_and_node`,
    /// whose default calls the inner `wire` directly), so both make it.
    fn check_wiring(&self, model: &TypedModel, inputs: &[OutletId]) -> TractResult<()> {
        if let Check::MelBins = self.check {
            let bins = inputs.first().and_then(|i| model.outlet_fact(*i).ok()?.konst.clone());
            let bins = bins.context("MelWeightMatrix: num_mel_bins is not a constant")?;
            let bins = bins.cast_to_scalar::<i64>()?;
            ensure!(
                u64::try_from(bins).is_ok_and(|b| b <= MAX_ALLOCATION_BYTES / 8),
                "MelWeightMatrix: num_mel_bins {bins} is out of range"
            );
        }
        Ok(())
    }
}

impl Expansion for Checked {
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
        self.check_wiring(model, inputs)?;
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
        self.check_wiring(typed_model, inputs)?;
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
        if let Check::Axis(axis) = self.check {
            let input = inputs.first().context("LayerNormalization has no input")?;
            s.given(&input.rank, move |_, rank| {
                ensure!(
                    (-rank..rank).contains(&axis),
                    "LayerNormalization: axis {axis} is out of range for an input of rank {rank}"
                );
                Ok(())
            })?;
        }
        self.inner.as_ref().rules(s, inputs, outputs)
    }

    fn runs_out_of_plan(&self) -> bool {
        self.inner.as_ref().runs_out_of_plan()
    }
}
