//! Checks in front of the tract-onnx operators of the allowlist (`super::allowlist`) that a
//! malformed model can send into a loop, an abort or a read out of bounds (tract 0.23.9; found by
//! the loader fuzzer and by sweeps of every operator's attributes and inputs):
//! - `LayerNormalization`: its shape rule turns `axis + rank` into a `usize` and counts up to
//!   it, so an axis below minus the rank, or a huge one, loops for ever;
//! - the windowed operators (`Conv`, `MaxPool`, `AveragePool`): tract lays out one entry per
//!   kernel position, so a kernel side of 2^31 aborts or loops for ever, and so does our own
//!   max-pool (`crate::kernels`), and a padding of 2^31 loops;
//! - `Transpose`, whose `perm` with an axis twice loops until an allocation aborts;
//! - `MaxPool`, `AveragePool` and `BatchNormalization`, which take the channel axis of their
//!   input unchecked: an input of rank 1 read past its shape and died of a segmentation fault.

use std::sync::OnceLock;

use tract_onnx::model::{Onnx, OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::expandable::{expand, Expansion};

use super::attributes::{int, ints};

/// What an operator's builder returns: the operator, and the names of its extra outputs.
type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// tract-onnx's parser, with the operators above built through [`Checked`] or checked first.
pub(crate) fn onnx() -> Onnx {
    let mut onnx = tract_onnx::onnx();
    let register = &mut onnx.op_register;
    register.insert("LayerNormalization", |ctx, node| {
        let axis = int(node, "axis").unwrap_or(-1);
        checked(ctx, node, Check::Axis { axis })
    });
    register.insert("BatchNormalization", |ctx, node| checked(ctx, node, Check::Channels));
    register.insert("Conv", |ctx, node| {
        check_window(node)?;
        tract_op(ctx, node)
    });
    for op in ["AveragePool", "MaxPool"] {
        register.insert(op, |ctx, node| {
            check_window(node)?;
            checked(ctx, node, Check::Channels)
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

/// What [`Checked`] checks before passing on to tract's operator.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// `axis` is an axis of the first input.
    Axis { axis: i64 },
    /// The first input has a channel axis: a rank of at least 2, checked in the rules and again
    /// on wiring, where tract may know the rank only then.
    Channels,
}

/// Refuses an input of `rank` to `op_type`, which takes its channels from axis 1.
fn ensure_channels(op_type: &str, rank: usize) -> TractResult<()> {
    ensure!(rank >= 2, "{op_type}: an input of rank {rank} has no channel axis");
    Ok(())
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
    /// The check of channels on wiring `inputs` into `model`, where a rank can be known that
    /// the rules did not know. tract reaches the inner operator's wiring by two paths (constant
    /// folding calls `wire`, typing `wire_with_inference_model_and_node`, whose default calls
    /// the inner `wire` directly), so both make it.
    fn check_wiring(&self, model: &TypedModel, inputs: &[OutletId]) -> TractResult<()> {
        let op_type = &self.op_type;
        if let Check::Channels = self.check {
            let first = inputs.first().with_context(|| format!("{op_type} has no input"))?;
            ensure_channels(op_type, model.outlet_fact(*first)?.rank())?;
        }
        Ok(())
    }

    /// The check of the axis or the rank, as a rule that comes before the inner operator's, so
    /// that it sees each fact first.
    fn check_rules<'r, 'p: 'r>(
        &self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
    ) -> InferenceResult {
        let op_type = self.op_type.clone();
        let first = inputs.first().with_context(|| format!("{op_type} has no input"))?;
        match self.check {
            Check::Axis { axis } => {
                s.given(&first.rank, move |_, rank| within_rank(&op_type, axis, rank))?;
            }
            Check::Channels => {
                s.given(&first.rank, move |_, rank| {
                    ensure_channels(&op_type, usize::try_from(rank).unwrap_or(0))
                })?;
            }
        }
        Ok(())
    }
}

/// Refuses an `axis` that is not an axis of a tensor of `rank`.
fn within_rank(op_type: &str, axis: i64, rank: i64) -> TractResult<()> {
    ensure!(
        (-rank..rank).contains(&axis),
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
