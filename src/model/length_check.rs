//! Checks that the inputs of each tract operator that multiplies or combines tensors agree on
//! the length of every axis they share: as the model loads, where the facts know the lengths,
//! for an `EinSum` (what `MatMul`, `Gemm`, `Einsum` and their quantized kin become) and an
//! element-wise operator of two inputs (`Add`, `Pow`, `And`, ...); and as it runs, for an
//! `EinSum`, wherever the facts cannot prove it.
//!
//! tract 0.23.9 trusts the tensors to match the facts:
//! - It sizes an `EinSum` from the facts. Where a length is known only at run time (after a
//!   `NonZero`, say), nothing compares it with the other inputs': a `MatMul` of a vector of
//!   `4 * x` values by an `8 x 4` matrix packs `4 * x` rows of a matrix that has 8, and reads
//!   past its end. In the branch of an `If`, whose `EinSum` is sized from the tensors it is
//!   given, the process died of a segmentation fault (found by `fuzz/sweep.py`'s stand-ins
//!   inside an `If`); in the main graph it read past the weights without crashing.
//! - It accepts facts that disagree outright: a `Pow` of a `1 x 3 x 8 x 8` tensor by a
//!   `1 x 0 x 1 x 1` exponent, or a `MatMulInteger` of a matrix of 0 columns by one of 8 rows,
//!   loaded, and died of a segmentation fault as it ran (found by `fuzz/sweep.py`'s run-time
//!   lengths, which tract folded to 0).
//!
//! An element-wise operator whose facts differ on a length known only at run time needs no
//! check: tract broadcasts its tensors then, comparing their lengths. On the sweep, every such
//! mismatch failed with tract's "Can not broadcast", and the 94 models with a run-time length of
//! 1 ran (the ones checked by hand gave the broadcast they ask for).

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::logic::IfThenElse;
use tract_onnx::tract_core::ops::scan::Scan;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};

/// Puts an [`AxisLengthCheck`] in front of every `EinSum` of `model`, and of the bodies of its
/// `If`s and `Scan`s, whose inputs' facts do not prove that they agree, and fails if the facts
/// of one, or of an element-wise operator, know that they disagree. Returns how many checks.
pub fn check_lengths(model: &mut TypedModel) -> TractResult<usize> {
    let mut checked = 0;
    for id in 0..model.nodes().len() {
        let op = &model.node(id).op;
        if let Some(branches) = op.downcast_ref::<IfThenElse>() {
            let mut branches = branches.clone();
            checked += check_lengths(&mut branches.then_body)?;
            checked += check_lengths(&mut branches.else_body)?;
            model.node_mut(id).op = Box::new(branches);
        } else if let Some(scan) = op.downcast_ref::<Scan>() {
            let mut scan = scan.clone();
            checked += check_lengths(&mut scan.body)?;
            model.node_mut(id).op = Box::new(scan);
        } else if let Some(check) = AxisLengthCheck::unproven(model, id)? {
            put_in_front(model, id, check)?;
            checked += 1;
        }
    }
    Ok(checked)
}

/// Wires `check` between node `id` and the inputs it reads (the others stay as they are).
fn put_in_front(model: &mut TypedModel, id: usize, check: AxisLengthCheck) -> TractResult<()> {
    let node = model.node(id);
    let mut patch = TypedModelPatch::default();
    let mut inputs = node
        .inputs
        .iter()
        .map(|input| patch.tap_model(model, *input))
        .collect::<TractResult<TVec<_>>>()?;
    let read: TVec<OutletId> =
        check.read.iter().filter_map(|&input| inputs.get(input).copied()).collect();
    let passed = patch.wire_node(format!("{}.axis-lengths", node.name), check.clone(), &read)?;
    for (&input, outlet) in check.read.iter().zip(passed) {
        if let Some(wire) = inputs.get_mut(input) {
            *wire = outlet;
        }
    }
    let outputs = patch.wire_node(&node.name, node.op.clone(), &inputs)?;
    for (slot, output) in outputs.into_iter().enumerate() {
        patch.shunt_outside(model, OutletId::new(id, slot), output)?;
    }
    patch.apply(model)
}

/// Where an operator reads an axis: its input, the axis's position there, and its length.
type Place = (usize, usize, TDim);

/// The axes an `EinSum` shares between its inputs, by their letter, and where each input has
/// them (the shapes are what it actually multiplies, block-quantized weights included).
fn product_axes(einsum: &EinSum, facts: &[&TypedFact]) -> TractResult<Vec<(String, Vec<Place>)>> {
    let shapes = einsum.actual_input_shapes_from_facts(facts)?;
    Ok(einsum
        .axes
        .iter_all_axes()
        .map(|axis| {
            let places = axis
                .inputs
                .iter()
                .enumerate()
                .flat_map(|(input, at)| at.iter().map(move |&at| (input, at)))
                .filter_map(|(input, at)| Some((input, at, shapes.get(input)?.get(at)?.clone())))
                .collect();
            (axis.repr.to_string(), places)
        })
        .collect())
}

/// The axes of an element-wise operator's inputs (tract gives them all the same rank), by their
/// position.
fn element_axes(facts: &[&TypedFact]) -> Vec<(String, Vec<Place>)> {
    let rank = facts.iter().map(|fact| fact.rank()).max().unwrap_or(0);
    (0..rank)
        .map(|at| {
            let places = facts
                .iter()
                .enumerate()
                .filter_map(|(input, fact)| Some((input, at, fact.shape.get(at)?.clone())))
                .collect();
            (at.to_string(), places)
        })
        .collect()
}

/// Where the length of an axis comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Length {
    /// Known when the model loads.
    Known(usize),
    /// Axis `at` of the tensor the check is given as its input `input`.
    Tensor { input: usize, at: usize },
}

/// Passes some of an `EinSum`'s inputs through unchanged, once they agree with each other and
/// with the lengths known when the model loads on each axis of `axes`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AxisLengthCheck {
    /// The `EinSum`'s node.
    node: String,
    /// The `EinSum` inputs it reads, by their index, in the order it is given them.
    read: Vec<usize>,
    /// Each axis to check: its letter in the `EinSum`'s formula, and its lengths.
    axes: Vec<(String, Vec<Length>)>,
}

impl AxisLengthCheck {
    /// The check that node `id` of `model` needs, if it is an `EinSum`: on each axis whose
    /// lengths in its inputs' facts differ (a length of 1 broadcasts, and is left out), or are
    /// not all known. None when the facts prove every axis, and for an element-wise operator,
    /// which broadcasts its tensors, comparing their lengths, wherever the facts differ. An error
    /// when the lengths the facts know already disagree, for either. An unknown length of
    /// block-quantized weights, whose tensor does not hold their shape, cannot be read, and is
    /// left out.
    fn unproven(model: &TypedModel, id: usize) -> TractResult<Option<AxisLengthCheck>> {
        let node = model.node(id);
        let facts = model.node_input_facts(id)?;
        let (shared, trusting) = if let Some(einsum) = node.op_as::<EinSum>() {
            (product_axes(einsum, &facts)?, true)
        } else if node.op_is::<TypedBinOp>() {
            (element_axes(&facts), false)
        } else {
            return Ok(None);
        };
        let mut read = vec![];
        let mut axes = vec![];
        for (axis, places) in shared {
            let places: Vec<Place> =
                places.into_iter().filter(|(_, _, length)| !length.is_one()).collect();
            let known: Vec<usize> =
                places.iter().filter_map(|place| place.2.to_usize().ok()).collect();
            agree(&node.name, &axis, &known)?;
            if !trusting
                || places.iter().all(|place| Some(&place.2) == places.first().map(|first| &first.2))
            {
                continue;
            }
            let mut lengths = vec![];
            for (input, at, length) in places {
                if let Ok(known) = length.to_usize() {
                    lengths.push(Length::Known(known));
                } else if facts.get(input).is_some_and(|fact| fact.exotic_fact.is_none()) {
                    let slot = read.iter().position(|&r| r == input).unwrap_or_else(|| {
                        read.push(input);
                        read.len() - 1
                    });
                    lengths.push(Length::Tensor { input: slot, at });
                }
            }
            axes.push((axis, lengths));
        }
        let check = AxisLengthCheck { node: node.name.clone(), read, axes };
        Ok((!check.read.is_empty()).then_some(check))
    }

    /// The length `length` stands for, given the check's inputs.
    fn length(length: &Length, inputs: &[TValue]) -> TractResult<usize> {
        match *length {
            Length::Known(known) => Ok(known),
            Length::Tensor { input, at } => {
                let shape = inputs.get(input).map(|tensor| tensor.shape()).unwrap_or_default();
                shape
                    .get(at)
                    .copied()
                    .ok_or_else(|| format_err!("an input of shape {shape:?} has no axis {at}"))
            }
        }
    }
}

/// Fails unless all of `lengths`, those of `axis` in the inputs of `node`, are the same.
fn agree(node: &str, axis: &str, lengths: &[usize]) -> TractResult<()> {
    ensure!(
        lengths.iter().all(|length| Some(length) == lengths.first()),
        "`{node}`: its inputs disagree on the length of axis {axis}: {}",
        lengths.iter().map(usize::to_string).collect::<Vec<_>>().join(" and ")
    );
    Ok(())
}

impl Op for AxisLengthCheck {
    fn name(&self) -> StaticName {
        "AxisLengthCheck".into()
    }

    op_as_typed_op!();
}

impl EvalOp for AxisLengthCheck {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        for (axis, lengths) in &self.axes {
            let lengths = lengths
                .iter()
                .map(|length| Self::length(length, &inputs))
                .collect::<TractResult<Vec<_>>>()?;
            agree(&self.node, axis, &lengths)?;
        }
        Ok(inputs)
    }
}

impl TypedOp for AxisLengthCheck {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(inputs.iter().map(|fact| (*fact).clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::ops::einsum::EinSum;
    use tract_onnx::tract_core::ops::logic::IfThenElse;
    use tract_onnx::tract_core::ops::math::add;

    use super::check_lengths;

    /// `op` of a vector `a` of `length` values (or of as many as the symbol `x` says) and a
    /// constant `b` of zeros of `shape`.
    fn wired(
        length: Option<usize>,
        shape: &[usize],
        op: impl Into<Box<dyn TypedOp>>,
    ) -> TractResult<TypedModel> {
        let mut model = TypedModel::default();
        let length: TDim = length.map_or_else(|| model.symbols.sym("x").into(), TDim::from);
        let a = model.add_source("a", f32::fact([length]))?;
        let b = model.add_const("b", Tensor::zero::<f32>(shape)?)?;
        let c = model.wire_node("c", op, &[a, b])?;
        model.select_output_outlets(&c)?;
        Ok(model)
    }

    /// The product of a vector and a matrix, `k,kn->n`, of f32.
    fn vector_by_matrix() -> EinSum {
        let axes = "k,kn->n".parse().unwrap();
        EinSum { axes, operating_dt: f32::datum_type(), q_params: None }
    }

    /// `a . b` for a vector `a` of `8` values, or of as many as the symbol `x` says, and a
    /// constant `8 x 4` matrix `b`.
    fn product(known: bool) -> TractResult<TypedModel> {
        wired(known.then_some(8), &[8, 4], vector_by_matrix())
    }

    /// Runs `model` on a vector of `length` ones (after `flag`, if given).
    fn run(model: TypedModel, flag: Option<bool>, length: usize) -> TractResult<TVec<TValue>> {
        let vector = tensor1(&vec![1f32; length]).into_tvalue();
        let inputs = match flag {
            Some(flag) => tvec!(tensor0(flag).into_tvalue(), vector),
            None => tvec!(vector),
        };
        model.into_optimized()?.into_runnable()?.run(inputs)
    }

    #[test]
    fn lengths_the_facts_prove_are_not_checked() {
        let mut model = product(true).unwrap();
        assert_eq!(check_lengths(&mut model).unwrap(), 0);
        assert_eq!(run(model, None, 8).unwrap()[0].shape(), [4]);
    }

    #[test]
    fn a_length_known_only_as_it_runs_is_checked_as_it_runs() {
        let mut model = product(false).unwrap();
        assert_eq!(check_lengths(&mut model).unwrap(), 1);
        assert_eq!(run(model.clone(), None, 8).unwrap()[0].shape(), [4]);
        let error = format!("{:?}", run(model, None, 768).unwrap_err());
        assert!(error.contains("`c`: its inputs disagree on the length of axis k: 768 and 8"));
    }

    #[test]
    fn the_branches_of_an_if_are_checked() {
        let mut model = TypedModel::default();
        let flag = model.add_source("flag", bool::scalar_fact()).unwrap();
        let length = model.symbols.sym("x");
        let a = model.add_source("a", f32::fact([length])).unwrap();
        let branches = IfThenElse {
            then_body: product(false).unwrap(),
            then_input_mapping: vec![1],
            else_body: product(false).unwrap(),
            else_input_mapping: vec![1],
        };
        let c = model.wire_node("if", branches, &[flag, a]).unwrap();
        model.select_output_outlets(&c).unwrap();
        assert_eq!(check_lengths(&mut model).unwrap(), 2);
        assert_eq!(run(model.clone(), Some(true), 8).unwrap()[0].shape(), [4]);
        for flag in [true, false] {
            let error = format!("{:?}", run(model.clone(), Some(flag), 3).unwrap_err());
            assert!(error.contains("on the length of axis k: 3 and 8"), "{error}");
        }
    }

    #[test]
    fn an_element_wise_operator_is_left_to_broadcast_as_it_runs() {
        let mut model = wired(None, &[8], add()).unwrap();
        assert_eq!(check_lengths(&mut model).unwrap(), 0);
        assert_eq!(run(model.clone(), None, 8).unwrap()[0].shape(), [8]);
        assert_eq!(run(model.clone(), None, 1).unwrap()[0].shape(), [8]);
        let error = format!("{:?}", run(model, None, 3).unwrap_err());
        assert!(error.contains("Can not broadcast"), "{error}");
    }

    #[test]
    fn lengths_the_facts_know_to_disagree_fail_as_the_model_loads() {
        for (mut model, axis) in [
            (wired(Some(0), &[3], add()).unwrap(), "0: 0 and 3"),
            (wired(Some(0), &[8, 4], vector_by_matrix()).unwrap(), "k: 0 and 8"),
        ] {
            let error = check_lengths(&mut model).unwrap_err().to_string();
            assert_eq!(error, format!("`c`: its inputs disagree on the length of axis {axis}"));
        }
    }
}
