//! Checks in front of tract-onnx operators that a malformed model can send into a loop or an
//! abort (tract 0.23.9; found by the loader fuzzer, then the same patterns in tract's source):
//! - `LayerNormalization`, `RMSNormalization` (and `SimplifiedLayerNormalization`, parsed as
//!   it) and `OneHot`: their shape rules turn `axis + rank` into a `usize` and count up to it,
//!   so an axis below minus the rank, or a huge one, loops for ever;
//! - `MelWeightMatrix`, `DFT` and `MatMulNBits`: they collect `num_mel_bins + 2` values, an
//!   inverse one-sided DFT `dft_length` values twice, and `MatMulNBits` its `N x K` weights
//!   into `Vec`s, an allocation that cannot fail softly, so a huge or negative count aborts the
//!   process;
//! - `TreeEnsembleClassifier`: see `tree_ensemble`.

use std::sync::OnceLock;

use tract_onnx::model::{Onnx, OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::expandable::{expand, Expansion};

use super::attributes::int;
use crate::guard::MAX_ALLOCATION_BYTES;

/// What an operator's builder returns: the operator, and the names of its extra outputs.
type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// tract-onnx's parser, with the operators above built through [`Checked`].
pub(crate) fn onnx() -> Onnx {
    let mut onnx = tract_onnx::onnx();
    let register = &mut onnx.op_register;
    for op in ["LayerNormalization", "RMSNormalization", "SimplifiedLayerNormalization"] {
        register.insert(op, |ctx, node| checked(ctx, node, axis(node, 0)));
    }
    register.insert("OneHot", |ctx, node| checked(ctx, node, axis(node, 1)));
    register.insert("MelWeightMatrix", |ctx, node| {
        checked(ctx, node, Check::Count { input: 0, what: "num_mel_bins", item_bytes: 8 })
    });
    register.insert("MatMulNBits", |ctx, node| {
        let (n, k) = (int(node, "N").unwrap_or(0), int(node, "K").unwrap_or(0));
        ensure!(
            n.checked_mul(k).is_some_and(|weights| fits(weights, 4)),
            "MatMulNBits: N {n} x K {k} is out of range"
        );
        tract_op(ctx, node)
    });
    register.insert("TreeEnsembleClassifier", |ctx, node| {
        super::tree_ensemble::check(node)?;
        tract_op(ctx, node)
    });
    register.insert("DFT", |ctx, node| {
        if node.input.get(1).is_some_and(|name| !name.is_empty()) {
            checked(ctx, node, Check::Count { input: 1, what: "dft_length", item_bytes: 16 })
        } else {
            tract_op(ctx, node)
        }
    });
    onnx
}

/// The check of `node`'s `axis` attribute (ONNX's default -1), for an operator whose output has
/// `extra` more axes than its first input.
fn axis(node: &NodeProto, extra: i64) -> Check {
    Check::Axis { axis: int(node, "axis").unwrap_or(-1), extra }
}

/// What [`Checked`] checks before passing on to tract's operator.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// `axis` is an axis of the first input, or of an output with `extra` more axes.
    Axis { axis: i64, extra: i64 },
    /// Input `input`, where it is a constant, counts `what`: not negative, and few enough that
    /// a `Vec` of `item_bytes` for each fits in one allocation.
    Count { input: usize, what: &'static str, item_bytes: u64 },
}

/// Whether a `Vec` of `count` items of `item_bytes` each fits in one allocation.
fn fits(count: i64, item_bytes: u64) -> bool {
    u64::try_from(count).is_ok_and(|n| n <= MAX_ALLOCATION_BYTES / item_bytes)
}

/// tract-onnx's own operator for `node`, from its registry (built once).
fn tract_op(ctx: &ParsingContext, node: &NodeProto) -> Built {
    static TRACT: OnceLock<OnnxOpRegister> = OnceLock::new();
    let op_type = node.op_type.as_str();
    let builder = TRACT
        .get_or_init(|| tract_onnx::onnx().op_register)
        .0
        .get(op_type)
        .with_context(|| format!("tract-onnx has no {op_type}"))?;
    builder(ctx, node)
}

/// Builds tract's own operator for `node` and wraps it in [`Checked`].
fn checked(ctx: &ParsingContext, node: &NodeProto, check: Check) -> Built {
    let (op, extra) = tract_op(ctx, node)?;
    let op_type = node.op_type.clone();
    let inner = op
        .into_any()
        .downcast::<Box<dyn Expansion>>()
        .map_err(|_| format_err!("tract-onnx's {op_type} is not an expansion"))?;
    Ok((expand(Checked { op_type, check, inner: *inner }), extra))
}

/// An expansion that makes its [`Check`] before its inner operator's rules or wiring run.
#[derive(Debug, Clone)]
struct Checked {
    /// The ONNX operator, to name in errors.
    op_type: String,
    check: Check,
    inner: Box<dyn Expansion>,
}

impl Checked {
    /// The check on wiring `inputs` into `model`. tract reaches the inner operator's wiring by
    /// two paths (constant folding calls `wire`, typing `wire_with_inference_model_and_node`,
    /// whose default calls the inner `wire` directly), so both make it.
    fn check_wiring(&self, model: &TypedModel, inputs: &[OutletId]) -> TractResult<()> {
        if let Check::Count { input, what, item_bytes } = self.check {
            let count = inputs.get(input).and_then(|i| model.outlet_fact(*i).ok()?.konst.clone());
            if let Some(count) = count {
                let count = count.cast_to_scalar::<i64>()?;
                ensure!(
                    fits(count, item_bytes),
                    "{}: {what} {count} is out of range",
                    self.op_type
                );
            }
        }
        Ok(())
    }

    /// The check on the rank of the first input, before the inner operator's rules use it.
    fn check_rules<'r, 'p: 'r>(
        &self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
    ) -> InferenceResult {
        if let Check::Axis { axis, extra } = self.check {
            let op_type = self.op_type.clone();
            let input = inputs.first().with_context(|| format!("{op_type} has no input"))?;
            s.given(&input.rank, move |_, rank| {
                ensure!(
                    (-rank - extra..rank + extra).contains(&axis),
                    "{op_type}: axis {axis} is out of range for an input of rank {rank}"
                );
                Ok(())
            })?;
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
        self.check_rules(s, inputs)?;
        self.inner.as_ref().rules(s, inputs, outputs)
    }

    fn runs_out_of_plan(&self) -> bool {
        self.inner.as_ref().runs_out_of_plan()
    }
}
