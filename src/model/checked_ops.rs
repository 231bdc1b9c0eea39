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
//!   which makes a `Vec` of `num_scan_inputs` values;
//! - `OneHot`'s depth, `STFT`'s frame step and `If`'s condition: tract reads a scalar input
//!   through its storage's pointer without looking at its length (`to_scalar` in tract-data
//!   0.23.9), so an empty one reads past its storage and the process dies of a segmentation
//!   fault (found by `fuzz/sweep.py`'s stand-in inputs; our own checks read values safely);
//! - `MaxPool`, `AveragePool` and `BatchNormalization`, which take the channel axis of their
//!   input unchecked: an input of rank 1 read past its shape, and died the same way.

use std::sync::OnceLock;

use tract_onnx::model::{optional_inputs, Onnx, OnnxOpRegister, ParsingContext};
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
    register.insert("OneHot", |ctx, node| {
        checked(ctx, node, vec![axis(node, 1), Check::Single { input: 1, what: "depth" }])
    });
    register.insert("STFT", |ctx, node| {
        checked(ctx, node, vec![Check::Single { input: 1, what: "frame_step" }])
    });
    register.insert("If", |ctx, node| {
        let (op, extra) = tract_op(ctx, node)?;
        Ok((Box::new(SingleCondition(op)), extra))
    });
    register.insert("BatchNormalization", |ctx, node| checked(ctx, node, vec![Check::Channels]));
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
    for op in ["Conv", "ConvInteger", "ConvTranspose", "QLinearConv"] {
        register.insert(op, |ctx, node| {
            check_window(node)?;
            tract_op(ctx, node)
        });
    }
    for op in ["AveragePool", "MaxPool"] {
        register.insert(op, |ctx, node| {
            check_window(node)?;
            checked(ctx, node, vec![Check::Channels])
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
    let numbered = |ix: usize| optional_inputs(node).nth(ix).flatten();
    let mut checks = Vec::new();
    if let Some(input) = numbered(1) {
        checks.push(Check::Count { input, what: "dft_length", item_bytes: 16 });
    }
    if let Some(input) = numbered(2).filter(|_| ctx.onnx_operator_set_version >= 20) {
        checks.push(Check::AxisInput { input });
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
    /// Input `input`, where its value is known, holds one value, `what`.
    Single { input: usize, what: &'static str },
    /// The first input has a channel axis: a rank of at least 2, checked in the rules and again
    /// on wiring, as tract may not know the rank before (after a `NonZero`, say).
    Channels,
}

/// The most axes a tensor may have, for an axis checked before the rank is known: tract lays
/// out a shape up to the axis it is given.
const MAX_RANK: i64 = 64;

/// Refuses a `value` (`what` of `op_type`) that does not hold one value. tract's own
/// `cast_to_scalar` reads an empty tensor past its storage (see the module's notes).
fn ensure_single(op_type: &str, what: &str, value: &Tensor) -> TractResult<()> {
    ensure!(value.len() == 1, "{op_type}: {what} holds {} values, not one", value.len());
    Ok(())
}

/// The one value of `value` (`what` of `op_type`), as an integer.
fn single(op_type: &str, what: &str, value: &Tensor) -> TractResult<i64> {
    ensure_single(op_type, what, value)?;
    value.cast_to_scalar::<i64>()
}

/// Refuses an input of `rank` to `op_type`, which takes its channels from axis 1.
fn ensure_channels(op_type: &str, rank: usize) -> TractResult<()> {
    ensure!(rank >= 2, "{op_type}: an input of rank {rank} has no channel axis");
    Ok(())
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
    /// The checks of counts, single values and channels on wiring `inputs` into `model`, where a
    /// constant or a rank can be known that the rules did not know. tract reaches the inner
    /// operator's wiring by two paths (constant folding calls `wire`, typing
    /// `wire_with_inference_model_and_node`, whose default calls the inner `wire` directly), so
    /// both make it.
    fn check_wiring(&self, model: &TypedModel, inputs: &[OutletId]) -> TractResult<()> {
        let op_type = &self.op_type;
        let konst = |input: usize| {
            inputs.get(input).and_then(|i| model.outlet_fact(*i).ok()?.konst.clone())
        };
        for check in &self.checks {
            match *check {
                Check::Count { input, what, item_bytes } => {
                    if let Some(count) = konst(input) {
                        let count = single(op_type, what, &count)?;
                        ensure!(
                            fits(count, item_bytes),
                            "{op_type}: {what} {count} is out of range"
                        );
                    }
                }
                Check::Single { input, what } => {
                    if let Some(value) = konst(input) {
                        ensure_single(op_type, what, &value)?;
                    }
                }
                Check::Channels => {
                    let first =
                        inputs.first().with_context(|| format!("{op_type} has no input"))?;
                    ensure_channels(op_type, model.outlet_fact(*first)?.rank())?;
                }
                Check::Axis { .. } | Check::AxisInput { .. } => {}
            }
        }
        Ok(())
    }

    /// The checks of axes, single values and ranks, as rules that come before the inner
    /// operator's, so they see each fact first.
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
                        let axis = single(&op_type, "axis", &axis)?;
                        ensure!(
                            (-MAX_RANK..MAX_RANK).contains(&axis),
                            "{op_type}: axis {axis} is out of range"
                        );
                        Ok(())
                    })?;
                    let op_type = self.op_type.clone();
                    s.given_2(value, &first.rank, move |_, axis, rank| {
                        within_rank(&op_type, single(&op_type, "axis", &axis)?, rank, 0)
                    })?;
                }
                Check::Single { input, what } => {
                    let value = &inputs
                        .get(input)
                        .with_context(|| format!("{op_type} has no {what}"))?
                        .value;
                    let op_type = op_type.clone();
                    s.given(value, move |_, value| ensure_single(&op_type, what, &value))?;
                }
                Check::Channels => {
                    let op_type = op_type.clone();
                    s.given(&first.rank, move |_, rank| {
                        ensure_channels(&op_type, usize::try_from(rank).unwrap_or(0))
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

/// tract's `If` behind the check that its condition holds one value, wherever that is known:
/// in its facts while typing, and as a constant on typing. `If` is no expansion, so it cannot be
/// [`Checked`]; it reads its condition only once known, so checking the facts it is given
/// suffices.
#[derive(Debug, Clone)]
struct SingleCondition(Box<dyn InferenceOp>);

impl SingleCondition {
    fn check(condition: Option<&Tensor>) -> TractResult<()> {
        condition.map_or(Ok(()), |value| ensure_single("If", "the condition", value))
    }
}

/// Never equal, as tract's `If` is not.
impl PartialEq for SingleCondition {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl Eq for SingleCondition {}

impl Op for SingleCondition {
    fn name(&self) -> StaticName {
        self.0.name()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        self.0.info()
    }

    not_a_typed_op!();
}

impl EvalOp for SingleCondition {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Self::check(inputs.first().map(|condition| &**condition))?;
        self.0.eval_out_of_plan(inputs)
    }
}

impl InferenceOp for SingleCondition {
    fn infer_facts(
        &mut self,
        inputs: TVec<&InferenceFact>,
        outputs: TVec<&InferenceFact>,
        observed: TVec<&InferenceFact>,
    ) -> TractResult<(TVec<InferenceFact>, TVec<InferenceFact>, TVec<InferenceFact>)> {
        Self::check(inputs.first().and_then(|fact| fact.value.concretize()).as_deref())?;
        self.0.infer_facts(inputs, outputs, observed)
    }

    fn nboutputs(&self) -> TractResult<usize> {
        self.0.nboutputs()
    }

    fn to_typed(
        &self,
        source: &InferenceModel,
        node: &InferenceNode,
        target: &mut TypedModel,
        mapping: &HashMap<OutletId, OutletId>,
    ) -> TractResult<TVec<OutletId>> {
        let condition = node.inputs.first().and_then(|outlet| mapping.get(outlet));
        let konst = condition.map(|outlet| target.outlet_fact(*outlet)).transpose()?;
        Self::check(konst.and_then(|fact| fact.konst.as_deref()))?;
        self.0.to_typed(source, node, target, mapping)
    }

    as_op!();
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
