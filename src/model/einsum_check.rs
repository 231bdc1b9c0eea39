//! A check, made as the model runs, that the inputs of each tract `EinSum` (what `MatMul`,
//! `Gemm`, `Einsum` and their quantized kin become) agree on the length of every axis they
//! share, wherever the facts known when the model loads cannot prove it.
//!
//! tract 0.23.9 sizes an `EinSum` from its inputs' facts and trusts the tensors to match them.
//! Where a length is known only at run time (after a `NonZero`, say), nothing compares it with
//! the other inputs': a `MatMul` of a vector of `4 * x` values by an `8 x 4` matrix packs
//! `4 * x` rows of a matrix that has 8, and reads past its end. In the branch of an `If`, whose
//! `EinSum` is sized from the tensors it is given, the process died of a segmentation fault
//! (found by `fuzz/sweep.py`'s stand-ins inside an `If`); in the main graph it read past the
//! weights without crashing. With the check, such a model fails the image it runs on.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::logic::IfThenElse;
use tract_onnx::tract_core::ops::scan::Scan;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};

/// Puts an [`AxisLengthCheck`] in front of every `EinSum` of `model`, and of the bodies of its
/// `If`s and `Scan`s, whose inputs' facts do not prove that they agree. Returns how many.
pub fn check_einsums(model: &mut TypedModel) -> TractResult<usize> {
    let mut checked = 0;
    for id in 0..model.nodes().len() {
        let op = &model.node(id).op;
        if let Some(branches) = op.downcast_ref::<IfThenElse>() {
            let mut branches = branches.clone();
            checked += check_einsums(&mut branches.then_body)?;
            checked += check_einsums(&mut branches.else_body)?;
            model.node_mut(id).op = Box::new(branches);
        } else if let Some(scan) = op.downcast_ref::<Scan>() {
            let mut scan = scan.clone();
            checked += check_einsums(&mut scan.body)?;
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
    axes: Vec<(char, Vec<Length>)>,
}

impl AxisLengthCheck {
    /// The check that node `id` of `model` needs, if it is an `EinSum`: on each axis whose
    /// lengths in its inputs' facts differ (a length of 1 broadcasts, and is left out), or are
    /// not all known. None when the facts prove every axis. An unknown length of block-quantized
    /// weights, whose tensor does not hold their shape, cannot be read, and is left out.
    fn unproven(model: &TypedModel, id: usize) -> TractResult<Option<AxisLengthCheck>> {
        let node = model.node(id);
        let Some(einsum) = node.op_as::<EinSum>() else { return Ok(None) };
        let facts = model.node_input_facts(id)?;
        let shapes = einsum.actual_input_shapes_from_facts(&facts)?;
        let mut read = vec![];
        let mut axes = vec![];
        for axis in einsum.axes.iter_all_axes() {
            let places: Vec<(usize, usize, &TDim)> = axis
                .inputs
                .iter()
                .enumerate()
                .flat_map(|(input, at)| at.iter().map(move |&at| (input, at)))
                .filter_map(|(input, at)| Some((input, at, shapes.get(input)?.get(at)?)))
                .filter(|(_, _, length)| !length.is_one())
                .collect();
            if places.iter().all(|place| Some(place.2) == places.first().map(|first| first.2)) {
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
            axes.push((axis.repr, lengths));
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

impl Op for AxisLengthCheck {
    fn name(&self) -> StaticName {
        "AxisLengthCheck".into()
    }

    op_as_typed_op!();
}

impl EvalOp for AxisLengthCheck {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        for (letter, lengths) in &self.axes {
            let lengths = lengths
                .iter()
                .map(|length| Self::length(length, &inputs))
                .collect::<TractResult<Vec<_>>>()?;
            ensure!(
                lengths.iter().all(|length| Some(length) == lengths.first()),
                "`{}`: the inputs of its product disagree on the length of axis {letter}: {}",
                self.node,
                lengths.iter().map(usize::to_string).collect::<Vec<_>>().join(" and ")
            );
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

    use super::check_einsums;

    /// `a . b` for a vector `a` of `8` values, or of as many as the symbol `x` says, and a
    /// constant `8 x 4` matrix `b`.
    fn product(known: bool) -> TractResult<TypedModel> {
        let mut model = TypedModel::default();
        let length: TDim = if known { 8.into() } else { model.symbols.sym("x").into() };
        let a = model.add_source("a", f32::fact([length]))?;
        let b = model.add_const("b", Tensor::zero::<f32>(&[8, 4])?)?;
        let einsum =
            EinSum { axes: "k,kn->n".parse()?, operating_dt: f32::datum_type(), q_params: None };
        let c = model.wire_node("c", einsum, &[a, b])?;
        model.select_output_outlets(&c)?;
        Ok(model)
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
        assert_eq!(check_einsums(&mut model).unwrap(), 0);
        assert_eq!(run(model, None, 8).unwrap()[0].shape(), [4]);
    }

    #[test]
    fn a_length_known_only_as_it_runs_is_checked_as_it_runs() {
        let mut model = product(false).unwrap();
        assert_eq!(check_einsums(&mut model).unwrap(), 1);
        assert_eq!(run(model.clone(), None, 8).unwrap()[0].shape(), [4]);
        let error = format!("{:?}", run(model, None, 768).unwrap_err());
        assert!(error.contains("`c`: the inputs of its product disagree"), "{error}");
        assert!(error.contains("on the length of axis k: 768 and 8"), "{error}");
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
        assert_eq!(check_einsums(&mut model).unwrap(), 2);
        assert_eq!(run(model.clone(), Some(true), 8).unwrap()[0].shape(), [4]);
        for flag in [true, false] {
            let error = format!("{:?}", run(model.clone(), Some(flag), 3).unwrap_err());
            assert!(error.contains("on the length of axis k: 3 and 8"), "{error}");
        }
    }
}
