//! A fast Local Response Normalisation for tract, wired in place of its reference operator.
//!
//! ONNX LRN: `y = x / (bias + alpha / size * sum(x^2 over a window of channels))^beta`, the
//! window running from `c - floor((size-1)/2)` to `c + ceil((size-1)/2)`. tract evaluates it
//! element by element through an n-dimensional index with `powf`; here the squares of a whole
//! channel plane are summed plane by plane, and `t^-0.75` is `r * sqrt(r)` with
//! `r = 1/sqrt(t)`, all in flat loops the compiler vectorises. Where the CPU has 512-bit
//! vectors, each channel runs in one pass over blocks of its planes, the window's sums kept in
//! registers, and `t^-0.75` comes from refined reciprocal square root estimates.

#![allow(
    clippy::indexing_slicing,
    reason = "the rank is checked first; every slice is a whole plane of an array whose length \
              is the product of its shape"
)]

use std::ops::Range;

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
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, as checked just above.
            return unsafe { self.image_avx2(x, sum, out) };
        }
        self.image_planes(x, sum, out);
    }

    /// [`FastLrn::image_planes`] compiled for AVX2.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn image_avx2(&self, x: &[f32], sum: &mut [f32], out: &mut [f32]) {
        self.image_planes(x, sum, out)
    }

    /// [`FastLrn::image`] compiled for AVX-512F: for the common `beta` of 0.75, each channel in
    /// one pass ([`normalise_avx512`]), a block of [`BLOCK`] values of the planes at a time for
    /// every channel in turn, so that the window's blocks stay in the L1 cache.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn image_avx512(&self, x: &[f32], sum: &mut [f32], out: &mut [f32]) {
        // `sum` is `image_planes`' buffer; here it gives only the plane's length, as the sums
        // stay in registers.
        if self.beta != 0.75 {
            return self.image_planes(x, sum, out);
        }
        let (plane, terms) = (sum.len(), [self.bias, self.alpha / self.size as f32]);
        let channels = x.len() / plane;
        for start in (0..plane).step_by(BLOCK) {
            let end = (start + BLOCK).min(plane);
            for (c, out) in out.chunks_exact_mut(plane).enumerate() {
                let window = self.window(c, channels);
                let planes = &x[window.start * plane + start..(window.end - 1) * plane + end];
                let (x, out) = (&x[c * plane + start..c * plane + end], &mut out[start..end]);
                // SAFETY: the CPU has AVX-512F, as the caller promises.
                unsafe { normalise_avx512(out, x, (planes, plane), terms) };
            }
        }
    }

    /// The channels whose squares channel `c` of `channels` sums.
    fn window(&self, c: usize, channels: usize) -> Range<usize> {
        let (below, above) = ((self.size - 1) / 2, self.size / 2);
        c.saturating_sub(below)..(c + above + 1).min(channels)
    }

    /// [`FastLrn::image`] plane by plane: per channel, the squares of the window's planes
    /// summed into `sum`, then `bias + alpha / size * sum` in place, then each value scaled.
    #[inline(always)]
    fn image_planes(&self, x: &[f32], sum: &mut [f32], out: &mut [f32]) {
        let plane = sum.len();
        let terms = [self.bias, self.alpha / self.size as f32];
        for (c, out) in out.chunks_exact_mut(plane).enumerate() {
            let window = self.window(c, x.len() / plane);
            let planes = &x[window.start * plane..window.end * plane];
            denominators((planes, plane), 0, terms, sum);
            let x = &x[c * plane..][..plane];
            if self.beta == 0.75 {
                three_quarters(out, x, sum);
            } else {
                for ((o, &x), &t) in out.iter_mut().zip(x).zip(&*sum) {
                    *o = x * t.powf(-self.beta);
                }
            }
        }
    }
}

/// Values of a plane that the AVX-512 LRN takes at a time for every channel: the five planes'
/// blocks of a window, 10 kB, stay in the L1 cache as the window slides over the channels.
const BLOCK: usize = 512;

/// `t = bias + scale * s` (`[bias, scale] = terms`) into `t`, where `s` sums the squares of
/// `planes` (one every `stride` values) plane by plane in order, from value `from` of each
/// plane on.
#[inline(always)]
fn denominators(
    (planes, stride): (&[f32], usize),
    from: usize,
    [bias, scale]: [f32; 2],
    t: &mut [f32],
) {
    t.fill(0.0);
    for values in planes.chunks(stride) {
        for (acc, v) in t.iter_mut().zip(&values[from..]) {
            *acc += v * v;
        }
    }
    for t in t.iter_mut() {
        *t = bias + scale * *t;
    }
}

/// `out = x * t^-0.75`, as `r * sqrt(r)` with `r = 1/sqrt(t)`.
#[inline(always)]
fn three_quarters(out: &mut [f32], x: &[f32], t: &[f32]) {
    for ((o, &x), &t) in out.iter_mut().zip(x).zip(t) {
        let r = 1.0 / t.sqrt();
        *o = x * r * r.sqrt();
    }
}

/// One channel of LRN with `beta` 0.75 in one pass, 16 values at a time: `out = x * t^-0.75`,
/// where `t = bias + scale * s` (`[bias, scale] = terms`) and `s` sums the squares of the
/// `window`'s planes (`(values, stride)`: a plane of `x.len()` values every `stride`) in order,
/// kept in registers. `t^-0.75` is `y * y * z`, where `y = 1/sqrt(t)` and `z = 1/sqrt(y)`,
/// each the CPU's 14-bit estimate refined by one Newton step (to within about 2e-7 of the exact
/// value), instead of a division and two square roots. The values past the last 16 go through
/// [`denominators`] and [`three_quarters`].
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn normalise_avx512(out: &mut [f32], x: &[f32], window: (&[f32], usize), terms: [f32; 2]) {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_fnmadd_ps, _mm512_loadu_ps, _mm512_mul_ps, _mm512_rsqrt14_ps,
        _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
    };
    // 1/sqrt(a) from its estimate e: e (1.5 - 0.5 a e²).
    let refined = |a: __m512| {
        let e = _mm512_rsqrt14_ps(a);
        let half_a_e = _mm512_mul_ps(_mm512_mul_ps(a, e), _mm512_set1_ps(0.5));
        _mm512_mul_ps(e, _mm512_fnmadd_ps(half_a_e, e, _mm512_set1_ps(1.5)))
    };
    let (len, (planes, stride)) = (x.len(), window);
    assert!(out.len() == len && planes.len() >= len && stride >= len);
    assert!((planes.len() - len).is_multiple_of(stride), "a window of whole planes");
    let whole = len - len % 16;
    let (bias, scale) = (_mm512_set1_ps(terms[0]), _mm512_set1_ps(terms[1]));
    for i in (0..whole).step_by(16) {
        let mut s = _mm512_setzero_ps();
        for plane in planes.chunks(stride) {
            // SAFETY: `i + 16 <= len`, and each chunk holds a plane's `len` values.
            let v = unsafe { _mm512_loadu_ps(plane.as_ptr().add(i)) };
            s = _mm512_add_ps(s, _mm512_mul_ps(v, v));
        }
        let y = refined(_mm512_add_ps(bias, _mm512_mul_ps(scale, s)));
        let z = refined(y);
        // SAFETY: `i + 16 <= len`, inside `x` and `out`.
        unsafe {
            let xv = _mm512_loadu_ps(x.as_ptr().add(i));
            let value = _mm512_mul_ps(xv, _mm512_mul_ps(_mm512_mul_ps(y, y), z));
            _mm512_storeu_ps(out.as_mut_ptr().add(i), value);
        }
    }
    let mut tail = [0.0; 16];
    let tail = &mut tail[..len - whole];
    denominators(window, whole, terms, tail);
    three_quarters(&mut out[whole..], &x[whole..], tail);
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
            // planes of more than one block, the last ending in a remainder
            (FastLrn { alpha: 1e-4, beta: 0.75, bias: 1.0, size: 5 }, vec![2, 5, 23, 29]),
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
