//! A fast Local Response Normalisation for tract, wired in place of its reference operator.
//!
//! ONNX LRN: `y = x / (bias + alpha / size * sum(x^2 over a window of channels))^beta`, the
//! window running from `c - floor((size-1)/2)` to `c + ceil((size-1)/2)`. tract evaluates it
//! element by element through an n-dimensional index with `powf`; here the squares of a whole
//! channel plane are summed plane by plane, and `t^-0.75` is `r * sqrt(r)` with
//! `r = 1/sqrt(t)`, all in flat loops the compiler vectorises; where the CPU has 512-bit vectors,
//! the loops are compiled for them and `t^-0.75` comes from refined reciprocal square root
//! estimates.

#![allow(
    clippy::indexing_slicing,
    reason = "the rank is checked first; every slice is a whole plane of an array whose length \
              is the product of its shape"
)]

use tract_onnx::prelude::tract_ndarray::ArrayViewD;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx_opl::lrn::Lrn;

use super::glue::{output, Scratch};

/// LRN over the channels (axis 1) of a float NCHW tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct FastLrn {
    alpha: f32,
    beta: f32,
    bias: f32,
    size: usize,
}

impl Eq for FastLrn {}

impl From<&Lrn> for FastLrn {
    fn from(lrn: &Lrn) -> FastLrn {
        FastLrn { alpha: lrn.alpha, beta: lrn.beta, bias: lrn.bias, size: lrn.size }
    }
}

/// Replaces every tract `Lrn` node on f32 data with [`FastLrn`]. Returns how many.
pub fn replace_lrn(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(lrn) = node.op_as::<Lrn>() else { continue };
        if model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type() {
            continue;
        }
        let fast = FastLrn::from(lrn);
        model.node_mut(id).op = Box::new(fast);
        replaced += 1;
    }
    Ok(replaced)
}

impl FastLrn {
    /// Normalises `input` (N, C, spatial...) into a new array.
    pub fn apply(&self, input: &ArrayViewD<f32>) -> TractResult<Tensor> {
        ensure!(input.ndim() >= 2, "LRN needs an input of rank 2 or more");
        let input = input.as_standard_layout();
        let shape = input.shape().to_vec();
        let channels = shape[1];
        let plane: usize = shape[2..].iter().product();
        let data = input.as_slice().context("a standard-layout array is contiguous")?;
        let mut sum = Scratch::new(plane)?;
        output(&shape, |output| {
            if channels * plane == 0 {
                return Ok(());
            }
            let images = data.chunks_exact(channels * plane);
            for (x, out) in images.zip(output.chunks_exact_mut(channels * plane)) {
                self.image(x, &mut sum, out);
            }
            Ok(())
        })
    }

    /// Normalises one image `x` (`C x plane`, `sum.len()` being the plane, not empty) into
    /// `out`, with 512-bit vectors where the CPU has them.
    fn image(&self, x: &[f32], sum: &mut [f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, as checked just above.
            return unsafe { self.image_avx512(x, sum, out) };
        }
        self.image_body(x, sum, out, three_quarters);
    }

    /// [`FastLrn::image`] compiled for AVX-512F, `t^-0.75` from its reciprocal square root
    /// estimates.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn image_avx512(&self, x: &[f32], sum: &mut [f32], out: &mut [f32]) {
        self.image_body(x, sum, out, |out, x, t| {
            // SAFETY: this runs only inside `image_avx512`, on a CPU with AVX-512F.
            unsafe { three_quarters_avx512(out, x, t) }
        });
    }

    /// [`FastLrn::image`]'s loops: per channel, the squares of the window's planes summed,
    /// then each value scaled (`scaled` for the common `beta` of 0.75, given the values, and
    /// the sums' `bias + alpha / size * sum` in place).
    #[inline(always)]
    fn image_body(
        &self,
        x: &[f32],
        sum: &mut [f32],
        out: &mut [f32],
        scaled: impl Fn(&mut [f32], &[f32], &[f32]),
    ) {
        let plane = sum.len();
        let channels = x.len() / plane;
        let (below, above) = ((self.size - 1) / 2, self.size / 2);
        let scale = self.alpha / self.size as f32;
        for (c, out) in out.chunks_exact_mut(plane).enumerate() {
            sum.fill(0.0);
            for j in c.saturating_sub(below)..=(c + above).min(channels - 1) {
                for (acc, v) in sum.iter_mut().zip(&x[j * plane..][..plane]) {
                    *acc += v * v;
                }
            }
            for s in sum.iter_mut() {
                *s = self.bias + scale * *s;
            }
            let x = &x[c * plane..][..plane];
            if self.beta == 0.75 {
                scaled(out, x, sum);
            } else {
                for ((o, &x), &t) in out.iter_mut().zip(x).zip(&*sum) {
                    *o = x * t.powf(-self.beta);
                }
            }
        }
    }
}

/// `out = x * t^-0.75`, as `r * sqrt(r)` with `r = 1/sqrt(t)`.
fn three_quarters(out: &mut [f32], x: &[f32], t: &[f32]) {
    for ((o, &x), &t) in out.iter_mut().zip(x).zip(t) {
        let r = 1.0 / t.sqrt();
        *o = x * r * r.sqrt();
    }
}

/// [`three_quarters`] with 512-bit vectors: `t^-0.75` is `y * y * z`, where `y = 1/sqrt(t)` and
/// `z = 1/sqrt(y)`, each the CPU's 14-bit estimate refined by one Newton step (to within about
/// 2e-7 of the exact value), instead of a division and two square roots.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn three_quarters_avx512(out: &mut [f32], x: &[f32], t: &[f32]) {
    use std::arch::x86_64::{
        __m512, _mm512_fnmadd_ps, _mm512_loadu_ps, _mm512_mul_ps, _mm512_rsqrt14_ps,
        _mm512_set1_ps, _mm512_storeu_ps,
    };
    // 1/sqrt(a) from its estimate e: e (1.5 - 0.5 a e²).
    let refined = |a: __m512| {
        let e = _mm512_rsqrt14_ps(a);
        let half_a_e = _mm512_mul_ps(_mm512_mul_ps(a, e), _mm512_set1_ps(0.5));
        _mm512_mul_ps(e, _mm512_fnmadd_ps(half_a_e, e, _mm512_set1_ps(1.5)))
    };
    let len = out.len().min(x.len()).min(t.len());
    let whole = len - len % 16;
    for i in (0..whole).step_by(16) {
        // SAFETY: `i + 16 <= len`, inside each of the three slices.
        let (tv, xv) =
            unsafe { (_mm512_loadu_ps(t.as_ptr().add(i)), _mm512_loadu_ps(x.as_ptr().add(i))) };
        let y = refined(tv);
        let z = refined(y);
        let value = _mm512_mul_ps(xv, _mm512_mul_ps(_mm512_mul_ps(y, y), z));
        // SAFETY: as for the loads.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(i), value) };
    }
    three_quarters(&mut out[whole..len], &x[whole..len], &t[whole..len]);
}

impl Op for FastLrn {
    fn name(&self) -> StaticName {
        "FastLrn".into()
    }

    op_as_typed_op!();
}

eval_with_apply!(FastLrn);

impl TypedOp for FastLrn {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }
}

/// The ONNX formula computed directly, element by element, for tests.
#[cfg(test)]
fn reference(lrn: &FastLrn, input: &ArrayViewD<f32>) -> Vec<f32> {
    let channels = input.shape()[1];
    let mut out = Vec::new();
    for (index, &x) in input.indexed_iter() {
        let c = index[1];
        let lo = c.saturating_sub((lrn.size - 1) / 2);
        let hi = (c + (lrn.size - 1).div_ceil(2)).min(channels - 1);
        let mut at = index.clone();
        let sum: f64 = (lo..=hi)
            .map(|j| {
                at[1] = j;
                f64::from(input[&at]).powi(2)
            })
            .sum();
        let denominator = (f64::from(lrn.bias) + f64::from(lrn.alpha) / lrn.size as f64 * sum)
            .powf(f64::from(lrn.beta));
        out.push((f64::from(x) / denominator) as f32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::glue::random;
    use super::*;

    #[test]
    fn empty_tensors_come_back_empty() {
        let lrn = FastLrn { alpha: 1e-4, beta: 0.75, bias: 1.0, size: 5 };
        for shape in [[2, 0, 3, 3], [1, 4, 0, 5]] {
            let input = random(&shape, 1);
            assert_eq!(lrn.apply(&input.view()).unwrap().shape(), &shape[..]);
        }
    }

    #[test]
    fn matches_the_onnx_formula_on_random_tensors() {
        let cases = [
            (FastLrn { alpha: 1e-4, beta: 0.75, bias: 1.0, size: 5 }, vec![2, 7, 5, 3]),
            (FastLrn { alpha: 1e-3, beta: 0.5, bias: 2.0, size: 4 }, vec![1, 6, 4, 4]),
            (FastLrn { alpha: 2e-4, beta: 0.75, bias: 1.0, size: 3 }, vec![1, 2, 9]),
            (FastLrn { alpha: 1e-4, beta: 0.75, bias: 1.0, size: 7 }, vec![1, 3, 2, 2]),
            // planes of two whole 512-bit vectors and a remainder, and GoogLeNet's scale
            (FastLrn { alpha: 1e-4, beta: 0.75, bias: 1.0, size: 5 }, vec![1, 9, 37]),
            (FastLrn { alpha: 1e-4, beta: 0.75, bias: 1.0, size: 5 }, vec![1, 6, 56, 56]),
        ];
        for (seed, (lrn, shape)) in cases.into_iter().enumerate() {
            let input = random(&shape, seed as u32);
            let fast = lrn.apply(&input.view()).unwrap();
            let fast = fast.to_plain_array_view::<f32>().unwrap();
            let expected = reference(&lrn, &input.view());
            assert_eq!(fast.len(), expected.len());
            for (a, b) in fast.iter().zip(&expected) {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{lrn:?}: {a} vs {b}");
            }
        }
    }
}
