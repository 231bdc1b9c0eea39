//! Checks in front of tract-onnx operators that a malformed model can send into a loop or an
//! abort (tract 0.23.9; found by the loader fuzzer, then the same patterns in tract's source):
//! - `LayerNormalization`, `RMSNormalization` (and `SimplifiedLayerNormalization`, parsed as
//!   it) and `OneHot`: their shape rules turn `axis + rank` into a `usize` and count up to it,
//!   so an axis below minus the rank, or a huge one, loops for ever;
//! - `DFT` from opset 20, whose axis input tract uses as a shape index before it knows the
//!   input's rank: an axis of 2^48 laid out a shape of that many axes, and aborted;
//! - `MelWeightMatrix`, `DFT` and `MatMulNBits`: they collect `num_mel_bins + 2` values, an
//!   inverse one-sided DFT `dft_length` values twice, and `MatMulNBits` its `N x K` weights
//!   into `Vec`s, an allocation that cannot fail softly, so a huge or negative count aborts the
//!   process;
//! - `TreeEnsembleClassifier`: see `tree_ensemble`;
//! - the windowed operators (`Conv` and its kin, `MaxPool`, `AveragePool`; a sweep of every
//!   operator seed's integer attributes found them): tract lays out one entry per kernel
//!   position, so a kernel side of 2^31 aborts or loops for ever, and so does our own max-pool
//!   (`super::window`), and a padding of 2^31 loops;
//! - `Transpose`, whose `perm` with an axis twice loops until an allocation aborts, and `Scan`,
//!   which makes a `Vec` of `num_scan_inputs` values.

use std::sync::OnceLock;

use tract_onnx::model::{Onnx, OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::expandable::{expand, Expansion};

use super::attributes::{int, ints};
use crate::guard::MAX_ALLOCATION_BYTES;

/// What an operator's builder returns: the operator, and the names of its extra outputs.
type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// tract-onnx's parser, with the operators above built through [`Checked`].
pub(crate) fn onnx() -> Onnx {
    let mut onnx = tract_onnx::onnx();
    let register = &mut onnx.op_register;
    for op in ["LayerNormalization", "RMSNormalization", "SimplifiedLayerNormalization"] {
        register.insert(op, |ctx, node| checked(ctx, node, vec![axis(node, 0)]));
    }
    register.insert("OneHot", |ctx, node| checked(ctx, node, vec![axis(node, 1)]));
    register.insert("MelWeightMatrix", |ctx, node| {
        checked(ctx, node, vec![Check::Count { input: 0, what: "num_mel_bins", item_bytes: 8 }])
    });
    register.insert("MatMulNBits", |ctx, node| {
        let (n, k) = (int(node, "N").unwrap_or(0), int(node, "K").unwrap_or(0));
        ensure!(
            n.checked_mul(k).is_some_and(|weights| fits(weights, 4)),
            "MatMulNBits: N {n} x K {k} is out of range"
        );
        tract_op(ctx, node)
    });
    for op in ["AveragePool", "Conv", "ConvInteger", "ConvTranspose", "MaxPool", "QLinearConv"] {
        register.insert(op, |ctx, node| {
            check_window(node)?;
            tract_op(ctx, node)
        });
    }
    register.insert("Transpose", |ctx, node| {
        let perm = ints(node, "perm").unwrap_or_default();
        let mut sorted = perm.to_vec();
        sorted.sort_unstable();
        ensure!(
            sorted.iter().copied().eq(0..sorted.len() as i64),
            "Transpose: perm {perm:?} is not a permutation of the axes"
        );
        tract_op(ctx, node)
    });
    register.insert("Scan", |ctx, node| {
        let scanned = int(node, "num_scan_inputs").unwrap_or(0);
        ensure!(
            usize::try_from(scanned).is_ok_and(|n| n <= node.input.len()),
            "Scan: num_scan_inputs {scanned} is out of range for {} inputs",
            node.input.len()
        );
        tract_op(ctx, node)
    });
    register.insert("TreeEnsembleClassifier", |ctx, node| {
        super::tree_ensemble::check(node)?;
        tract_op(ctx, node)
    });
    register.insert("DFT", |ctx, node| checked(ctx, node, dft_checks(ctx, node)));
    onnx
}

/// The largest kernel side, stride, dilation or padding a windowed operator may have: far
/// beyond any image classifier's (GoogLeNet's largest kernel is 7 and its largest stride 2).
const MAX_WINDOW: i64 = 4096;

/// The most positions a windowed operator's kernel may have (1024 x 1024).
const MAX_KERNEL_POSITIONS: i64 = 1 << 20;

/// Refuses a windowed operator whose kernel, strides, dilations or paddings are out of range.
fn check_window(node: &NodeProto) -> TractResult<()> {
    let op = &node.op_type;
    for (name, least) in [("kernel_shape", 1), ("strides", 1), ("dilations", 1), ("pads", 0)] {
        let values = ints(node, name).unwrap_or_default();
        if let Some(bad) = values.iter().find(|v| !(least..=MAX_WINDOW).contains(*v)) {
            bail!("{op}: {name} {bad} is out of range ({least} to {MAX_WINDOW})");
        }
    }
    let kernel = ints(node, "kernel_shape").unwrap_or_default();
    let positions = kernel.iter().try_fold(1i64, |product, side| product.checked_mul(*side));
    ensure!(
        positions.is_some_and(|n| n <= MAX_KERNEL_POSITIONS),
        "{op}: a kernel of {kernel:?} is over the limit of {MAX_KERNEL_POSITIONS} positions"
    );
    Ok(())
}

/// The checks of a `DFT`: its length, if it has one, and from opset 20 its axis input, if it
/// has one (before, tract takes a non-negative axis attribute as 1 and checks a negative one).
/// tract numbers only the inputs that are there.
fn dft_checks(ctx: &ParsingContext, node: &NodeProto) -> Vec<Check> {
    let given = |ix: usize| node.input.get(ix).is_some_and(|name| !name.is_empty());
    let mut checks = Vec::new();
    if given(1) {
        checks.push(Check::Count { input: 1, what: "dft_length", item_bytes: 16 });
    }
    if ctx.onnx_operator_set_version >= 20 && given(2) {
        checks.push(Check::AxisInput { input: 1 + usize::from(given(1)) });
    }
    checks
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
    /// The value of input `input` is an axis of the first input: at once below
    /// [`MAX_RANK`] either way, as tract may use it before it knows the rank, and within the
    /// rank once that is known.
    AxisInput { input: usize },
    /// Input `input`, where it is a constant, counts `what`: not negative, and few enough that
    /// a `Vec` of `item_bytes` for each fits in one allocation.
    Count { input: usize, what: &'static str, item_bytes: u64 },
}

/// The most axes a tensor may have, for an axis checked before the rank is known: tract lays
/// out a shape up to the axis it is given.
const MAX_RANK: i64 = 64;

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
fn checked(ctx: &ParsingContext, node: &NodeProto, checks: Vec<Check>) -> Built {
    let (op, extra) = tract_op(ctx, node)?;
    let op_type = node.op_type.clone();
    let inner = op
        .into_any()
        .downcast::<Box<dyn Expansion>>()
        .map_err(|_| format_err!("tract-onnx's {op_type} is not an expansion"))?;
    Ok((expand(Checked { op_type, checks, inner: *inner }), extra))
}

/// An expansion that makes its [`Check`]s before its inner operator's rules or wiring run.
#[derive(Debug, Clone)]
struct Checked {
    /// The ONNX operator, to name in errors.
    op_type: String,
    checks: Vec<Check>,
    inner: Box<dyn Expansion>,
}

impl Checked {
    /// The check on wiring `inputs` into `model`. tract reaches the inner operator's wiring by
    /// two paths (constant folding calls `wire`, typing `wire_with_inference_model_and_node`,
    /// whose default calls the inner `wire` directly), so both make it.
    fn check_wiring(&self, model: &TypedModel, inputs: &[OutletId]) -> TractResult<()> {
        for check in &self.checks {
            let Check::Count { input, what, item_bytes } = *check else { continue };
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

    /// The checks of an axis, before the inner operator's rules use it.
    fn check_rules<'r, 'p: 'r>(
        &self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
    ) -> InferenceResult {
        let op_type = &self.op_type;
        let first = inputs.first().with_context(|| format!("{op_type} has no input"))?;
        for check in &self.checks {
            match *check {
                Check::Axis { axis, extra } => {
                    let op_type = op_type.clone();
                    s.given(&first.rank, move |_, rank| within_rank(&op_type, axis, rank, extra))?;
                }
                Check::AxisInput { input } => {
                    let value =
                        &inputs.get(input).with_context(|| format!("{op_type} has no axis"))?.value;
                    let op_type = op_type.clone();
                    s.given(value, move |_, axis| {
                        let axis = axis.cast_to_scalar::<i64>()?;
                        ensure!(
                            (-MAX_RANK..MAX_RANK).contains(&axis),
                            "{op_type}: axis {axis} is out of range"
                        );
                        Ok(())
                    })?;
                    let op_type = self.op_type.clone();
                    s.given_2(value, &first.rank, move |_, axis, rank| {
                        within_rank(&op_type, axis.cast_to_scalar::<i64>()?, rank, 0)
                    })?;
                }
                Check::Count { .. } => {}
            }
        }
        Ok(())
    }
}

/// Refuses an `axis` that is not an axis of a tensor of `rank`, or of one with `extra` more.
fn within_rank(op_type: &str, axis: i64, rank: i64, extra: i64) -> TractResult<()> {
    ensure!(
        (-rank - extra..rank + extra).contains(&axis),
        "{op_type}: axis {axis} is out of range for an input of rank {rank}"
    );
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::AttributeProto;

    fn pool(attributes: &[(&str, &[i64])]) -> NodeProto {
        let attribute = attributes
            .iter()
            .map(|(name, ints)| AttributeProto {
                name: (*name).into(),
                ints: ints.to_vec(),
                ..Default::default()
            })
            .collect();
        NodeProto { op_type: "MaxPool".into(), attribute, ..Default::default() }
    }

    #[test]
    fn window_attributes_are_checked_each_and_as_a_kernel() {
        let googlenet =
            pool(&[("kernel_shape", &[3, 3]), ("strides", &[2, 2]), ("pads", &[0, 0, 1, 1])]);
        assert!(check_window(&googlenet).is_ok());
        assert!(check_window(&pool(&[])).is_ok());
        let error = |node| check_window(&node).unwrap_err().to_string();
        assert_eq!(
            error(pool(&[("kernel_shape", &[3, 1 << 31])])),
            "MaxPool: kernel_shape 2147483648 is out of range (1 to 4096)"
        );
        assert_eq!(
            error(pool(&[("strides", &[0, 1])])),
            "MaxPool: strides 0 is out of range (1 to 4096)"
        );
        assert_eq!(
            error(pool(&[("pads", &[-1, 0, 0, 0])])),
            "MaxPool: pads -1 is out of range (0 to 4096)"
        );
        assert!(check_window(&pool(&[("kernel_shape", &[1024, 1024])])).is_ok());
        assert_eq!(
            error(pool(&[("kernel_shape", &[1024, 1025])])),
            "MaxPool: a kernel of [1024, 1025] is over the limit of 1048576 positions"
        );
        assert!(error(pool(&[("kernel_shape", &[4096; 8])])).contains("over the limit"));
    }
}
