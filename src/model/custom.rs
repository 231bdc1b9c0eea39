//! What the project's own tract operators ([`super::lrn`], [`super::maxpool`]) share.

/// Implements tract's `EvalOp` for an operator of one f32 input whose
/// `apply(&self, &ArrayViewD<f32>) -> TractResult<Tensor>` computes its one output.
macro_rules! eval_with_apply {
    ($op:ty) => {
        impl EvalOp for $op {
            op_out_of_plan!();

            fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
                let input = args_1!(inputs);
                let view = input.to_plain_array_view::<f32>()?;
                Ok(tvec!(self.apply(&view)?.into_tvalue()))
            }
        }
    };
}

/// A reproducible tensor of values in -100..100, for the operators' tests.
#[cfg(test)]
pub fn random(
    shape: &[usize],
    seed: u32,
) -> tract_onnx::prelude::tract_ndarray::Array<f32, tract_onnx::prelude::tract_ndarray::IxDyn> {
    use tract_onnx::prelude::tract_ndarray::{Array, IxDyn};
    let mut state = seed;
    Array::from_shape_fn(IxDyn(shape), |_| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as f32 / (1u32 << 24) as f32 * 200.0 - 100.0
    })
}
