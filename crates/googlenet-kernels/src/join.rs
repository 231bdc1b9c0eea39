//! An Inception module's Concat taken out: its branches' last convolutions write their parts of
//! the joined tensor themselves.
//!
//! tract's Concat copies every branch's output into a new tensor. Where each input of a Concat
//! along the channels is a convolution of this project's that nothing else reads, the
//! convolutions are chained instead: the first makes the joined tensor and writes its channels,
//! and each one after takes the tensor as a second input, from the one before, and writes its
//! own channels in place ([`Part`]). Each convolution stays a node of its own, with its name.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::TypedConcat;

use super::conv::FastConv;
use super::glue::Part;
use super::winograd::WinogradConv;

/// Chains the convolutions of every Concat along the channels (axis 1) whose inputs are all
/// [`FastConv`] or [`WinogradConv`] outputs read by it alone. Returns how many Concats.
pub fn join_branches(model: &mut TypedModel) -> TractResult<usize> {
    let mut joined = 0;
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(concat) = node.op_as::<TypedConcat>() else { continue };
        if concat.axis != 1 {
            continue;
        }
        let Some(branches) = branches(model, node) else { continue };
        let of = branches.iter().map(|(_, op)| op.channels()).sum();
        let mut patch = TypedModelPatch::default();
        let (mut first, mut handed) = (0, None);
        for (branch, op) in branches {
            let conv = model.node(branch);
            let input = *conv.inputs.first().context("a convolution has an input")?;
            let mut inputs = tvec![patch.tap_model(model, input)?];
            inputs.extend(handed);
            let channels = op.channels();
            let op = op.into_part(Part { of, first });
            let wired = patch.wire_node(&conv.name, op, &inputs)?;
            handed = Some(*wired.first().context("a convolution has an output")?);
            patch.obliterate(branch)?;
            first += channels;
        }
        let joined_tensor = handed.context("a Concat has inputs")?;
        patch.shunt_outside(model, OutletId::new(id, 0), joined_tensor)?;
        patch.obliterate(id)?;
        patch.apply(model)?;
        joined += 1;
    }
    Ok(joined)
}

/// The convolutions that compute the inputs of `concat`, in order, when each is a
/// [`FastConv`] or [`WinogradConv`] that writes a whole tensor of its own, of rank 4, that only
/// `concat` reads.
fn branches(model: &TypedModel, concat: &TypedNode) -> Option<Vec<(usize, Branch)>> {
    let mut branches = Vec::with_capacity(concat.inputs.len());
    for (slot, &outlet) in concat.inputs.iter().enumerate() {
        let node = model.node(outlet.node);
        let readers = match &node.outputs[..] {
            [output] => &output.successors[..],
            _ => return None,
        };
        let read_once =
            readers == [InletId::new(concat.id, slot)] && !model.outputs.contains(&outlet);
        let op = Branch::of(node)?;
        let rank = model.outlet_fact(outlet).ok()?.rank();
        if !read_once || rank != 4 || op.part() != Part::whole(op.channels()) {
            return None;
        }
        branches.push((node.id, op));
    }
    (!branches.is_empty()).then_some(branches)
}

/// A convolution that can write its part of a joined tensor.
enum Branch {
    Direct(FastConv),
    Winograd(WinogradConv),
}

impl Branch {
    fn of(node: &TypedNode) -> Option<Branch> {
        let direct = node.op_as::<FastConv>().cloned().map(Branch::Direct);
        direct.or_else(|| node.op_as::<WinogradConv>().cloned().map(Branch::Winograd))
    }

    /// Where the convolution writes its output.
    fn part(&self) -> Part {
        match self {
            Branch::Direct(conv) => conv.part,
            Branch::Winograd(conv) => conv.part,
        }
    }

    /// The convolution's own output channels.
    fn channels(&self) -> usize {
        match self {
            Branch::Direct(conv) => conv.channels(),
            Branch::Winograd(conv) => conv.channels(),
        }
    }

    fn into_part(self, part: Part) -> Box<dyn TypedOp> {
        match self {
            Branch::Direct(mut conv) => {
                conv.part = part;
                Box::new(conv)
            }
            Branch::Winograd(mut conv) => {
                conv.part = part;
                Box::new(conv)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::{replace_conv, tests::fastest, Precision};
    use super::super::glue::{self, random};
    use super::*;
    use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
    use tract_onnx::tract_core::ops::nn::DataFormat;

    /// An Inception-like module on a `2 x 4 x 9 x 9` input: a 1x1, a 3x3 (by Winograd) and a
    /// 5x5 convolution of it, joined along the channels, with `extra` a second reader of the
    /// 3x3 convolution's output (a model output too).
    fn module(extra: bool) -> TypedModel {
        let mut model = TypedModel::default();
        let source = model.add_source("x", f32::fact([2, 4, 9, 9])).unwrap();
        let mut branches = Vec::new();
        for (seed, (k, out)) in [(1, 3), (3, 5), (5, 2)].into_iter().enumerate() {
            let padding = PaddingSpec::Explicit(tvec![k / 2, k / 2], tvec![k / 2, k / 2]);
            let spec = PoolSpec::new(DataFormat::NCHW, tvec![k, k], padding, None, None, 4, out);
            let seed = seed as u32;
            let kernel = model.add_const(format!("k{k}"), random(&[out, 4, k, k], seed)).unwrap();
            let bias = model.add_const(format!("b{k}"), random(&[out], seed + 10)).unwrap();
            let conv = Conv::new(spec, KernelFormat::OIHW, 1, None);
            let wired = model.wire_node(format!("conv{k}"), conv, &[source, kernel, bias]);
            branches.push(wired.unwrap()[0]);
        }
        let joined = model.wire_node("concat", TypedConcat::new(1), &branches).unwrap();
        let mut outputs = joined;
        if extra {
            outputs.push(branches[1]);
        }
        model.select_output_outlets(&outputs).unwrap();
        assert_eq!(replace_conv(&mut model, fastest(), Precision::F32).unwrap(), 3);
        model
    }

    fn concats(model: &TypedModel) -> usize {
        model.nodes().iter().filter(|n| n.op_is::<TypedConcat>()).count()
    }

    #[test]
    fn branches_write_their_parts_of_the_joined_tensor() {
        let input = random(&[2, 4, 9, 9], 5);
        let copied = glue::run(module(false), &input);
        let mut model = module(false);
        assert_eq!(join_branches(&mut model).unwrap(), 1);
        assert_eq!(concats(&model), 0);
        let names: Vec<&str> = model.nodes().iter().map(|n| n.name.as_str()).collect();
        assert!(["conv1", "conv3", "conv5"].iter().all(|c| names.contains(c)), "{names:?}");
        // The same kernels in the same order: the same values, and none left unwritten (the
        // joined tensor starts poisoned in the tests, and each part is checked whole).
        let written = glue::run(model, &input);
        assert_eq!(written.shape(), [2, 10, 9, 9]);
        assert_eq!(written, copied);
    }

    #[test]
    fn a_branch_read_elsewhere_keeps_the_concat() {
        let mut model = module(true);
        assert_eq!(join_branches(&mut model).unwrap(), 0);
        assert_eq!(concats(&model), 1);
    }
}
