//! Checks of a typed model's shapes, before it is optimised: every tensor's shape must follow
//! from the input's, and the inputs of each operator that multiplies or combines tensors must
//! agree on the length of every axis they share.
//!
//! tract 0.23.9 trusts the tensors to match the facts:
//! - It sizes a matrix product (`EinSum`, what `MatMul`, `Gemm` and `Einsum` become) from the
//!   facts. Where a length is known only as the model runs (a `Slice` whose end is computed from
//!   the image, say), nothing compares it with the other input's: a product of a vector of such
//!   a length by an `8 x 10` matrix packs as many rows of a matrix that has 8, and reads past its
//!   end (found by a sweep of every operator's inputs). An image classifier's shapes all follow from its input
//!   size, so a shape that does not is refused.
//! - It accepts facts that disagree outright: a `Pow` of a `1 x 3 x 8 x 8` tensor by a
//!   `1 x 0 x 1 x 1` exponent loaded, and died of a segmentation fault as it ran.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;

/// Refuses a model with a tensor whose shape is not known before it runs, or with a product or
/// an element-wise operator whose inputs disagree on a length (a length of 1 broadcasts).
pub(crate) fn check_shapes(model: &TypedModel) -> TractResult<()> {
    for node in model.nodes() {
        let facts = model.node_input_facts(node.id)?;
        let shared = if let Some(einsum) = node.op_as::<EinSum>() {
            product_axes(einsum, &facts)?
        } else if node.op_is::<TypedBinOp>() {
            element_axes(&facts)
        } else {
            Vec::new()
        };
        for (axis, lengths) in shared {
            let lengths: Vec<usize> = lengths.into_iter().filter(|&length| length != 1).collect();
            ensure!(
                lengths.iter().all(|length| Some(length) == lengths.first()),
                "`{}`: its inputs disagree on the length of axis {axis}: {}",
                node.name,
                lengths.iter().map(usize::to_string).collect::<Vec<_>>().join(" and ")
            );
        }
        for output in &node.outputs {
            ensure!(
                output.fact.shape.as_concrete().is_some(),
                "`{}`: its shape depends on values computed as the model runs; googlenet runs \
                 classifiers whose shapes follow from the image size",
                node.name
            );
        }
    }
    Ok(())
}

/// The axes an `EinSum` shares between its inputs, by their letter, with their lengths in each
/// input that has them.
fn product_axes(einsum: &EinSum, facts: &[&TypedFact]) -> TractResult<Vec<(String, Vec<usize>)>> {
    let shapes = einsum.actual_input_shapes_from_facts(facts)?;
    Ok(einsum
        .axes
        .iter_all_axes()
        .map(|axis| {
            let lengths = axis
                .inputs
                .iter()
                .enumerate()
                .flat_map(|(input, at)| at.iter().map(move |&at| (input, at)))
                .filter_map(|(input, at)| shapes.get(input)?.get(at)?.to_usize().ok())
                .collect();
            (axis.repr.to_string(), lengths)
        })
        .collect())
}

/// The axes of an element-wise operator's inputs (tract gives them all the same rank), by their
/// position, with their lengths.
fn element_axes(facts: &[&TypedFact]) -> Vec<(String, Vec<usize>)> {
    let rank = facts.iter().map(|fact| fact.rank()).max().unwrap_or(0);
    (0..rank)
        .map(|at| {
            let lengths =
                facts.iter().filter_map(|fact| fact.shape.get(at)?.to_usize().ok()).collect();
            (at.to_string(), lengths)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::ops::einsum::EinSum;
    use tract_onnx::tract_core::ops::math::add;

    use super::check_shapes;

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

    #[test]
    fn lengths_that_agree_or_broadcast_pass() {
        assert!(check_shapes(&wired(Some(8), &[8, 4], vector_by_matrix()).unwrap()).is_ok());
        assert!(check_shapes(&wired(Some(1), &[8], add()).unwrap()).is_ok());
        assert!(check_shapes(&wired(Some(8), &[8], add()).unwrap()).is_ok());
    }

    #[test]
    fn a_length_known_only_as_the_model_runs_is_refused() {
        let error = check_shapes(&wired(None, &[8, 4], vector_by_matrix()).unwrap()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`a`: its shape depends on values computed as the model runs; googlenet runs \
             classifiers whose shapes follow from the image size"
        );
    }

    #[test]
    fn lengths_that_disagree_are_refused() {
        for (model, axis) in [
            (wired(Some(0), &[3], add()).unwrap(), "0: 0 and 3"),
            (wired(Some(0), &[8, 4], vector_by_matrix()).unwrap(), "k: 0 and 8"),
        ] {
            let error = check_shapes(&model).unwrap_err().to_string();
            assert_eq!(error, format!("`c`: its inputs disagree on the length of axis {axis}"));
        }
    }
}
