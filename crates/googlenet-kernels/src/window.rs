//! Where a sliding window (of a pooling or a convolution) reads along each spatial axis.

#![allow(
    clippy::indexing_slicing,
    reason = "indices into the padding, kernel and stride lists of a spec whose rank is checked \
              before an operator is built"
)]

use std::ops::Range;

use tract_onnx::tract_core::ops::cnn::PoolSpec;

/// Where one tap of the window reads along an axis: `outputs` read the input from `source` on,
/// `stride` apart. `outputs` is empty (and `source` 0) when the tap falls in the padding for
/// every output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tap {
    pub outputs: Range<usize>,
    pub source: usize,
}

/// One spatial axis of a window's geometry.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    pub input: usize,
    pub output: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad_before: usize,
}

impl Axis {
    /// The two axes (rows, columns) of `spec`'s window over a `height x width` input.
    pub fn both(spec: &PoolSpec, height: usize, width: usize) -> [Axis; 2] {
        let padding = spec.computed_padding(&[height, width]);
        let axis = |i: usize, input: usize| Axis {
            input,
            output: padding[i].convoluted,
            kernel: spec.kernel_shape[i],
            stride: spec.stride(i),
            pad_before: padding[i].pad_before,
        };
        [axis(0, height), axis(1, width)]
    }

    /// For each tap of the window, the outputs whose tap falls inside the input and the input
    /// index the first of them reads (the next ones read `stride` further each). Computed once
    /// per run: the divisions would cost more than the work on a short line.
    pub fn taps(&self) -> Vec<Tap> {
        (0..self.kernel)
            .map(|k| {
                let first = self.pad_before.saturating_sub(k).div_ceil(self.stride);
                let reach = (self.input + self.pad_before).saturating_sub(k);
                let end = reach.div_ceil(self.stride).min(self.output);
                if first >= end {
                    return Tap { outputs: 0..0, source: 0 };
                }
                Tap { outputs: first..end, source: first * self.stride + k - self.pad_before }
            })
            .collect()
    }

    /// How far along this axis the window reads, from the padding's start: the last output's
    /// window ends there (saturating where a hostile geometry would overflow).
    pub fn reach(&self) -> usize {
        (self.output - 1).saturating_mul(self.stride).saturating_add(self.kernel)
    }

    /// How many values each phase of a split line holds (see [`Axis::split`]).
    pub fn phase_len(&self) -> usize {
        self.input.div_ceil(self.stride)
    }

    /// The length of one input line along this axis split into `stride` phases by
    /// [`Axis::split`].
    pub fn phased_len(&self) -> usize {
        self.phase_len() * self.stride
    }

    /// Writes `line`, one input line along this axis, split into `stride` phases into `out`:
    /// phase `p` holds every `stride`-th value from offset `p`, so that each tap reads one
    /// contiguous run (from [`Axis::phased_start`]) instead of a strided one.
    pub fn split(&self, line: &[f32], out: &mut [f32]) {
        self.split_apart(line, out, self.phase_len());
    }

    /// [`Axis::split`] with phase `p` written at `p * apart` in `out` (`apart` at least
    /// [`Axis::phase_len`]), so that the phases of many lines can lie side by side.
    pub fn split_apart(&self, line: &[f32], out: &mut [f32], apart: usize) {
        let per_phase = self.phase_len();
        if self.stride == 2 {
            // The common case, in a form the compiler turns into vector shuffles.
            let (even, odd) = out.split_at_mut(apart);
            let (even, odd) = (&mut even[..per_phase], &mut odd[..per_phase]);
            for ((pair, e), o) in line.chunks_exact(2).zip(even.iter_mut()).zip(odd.iter_mut()) {
                *e = pair[0];
                *o = pair[1];
            }
            if let [.., last] = line {
                if line.len() % 2 == 1 {
                    even[per_phase - 1] = *last;
                }
            }
            return;
        }
        for (offset, phase) in out.chunks_mut(apart).take(self.stride).enumerate() {
            let from = line.get(offset..).unwrap_or_default().iter().step_by(self.stride);
            for (to, &x) in phase[..per_phase].iter_mut().zip(from) {
                *to = x;
            }
        }
    }

    /// Where the run `tap` reads starts in a line split by [`Axis::split`] (with stride 1, in
    /// the line itself).
    pub fn phased_start(&self, tap: &Tap) -> usize {
        tap.source % self.stride * self.phase_len() + tap.source / self.stride
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (output, input) pair the taps name, against the definition
    /// `input = output * stride + k - pad_before`, inside the input.
    #[test]
    fn taps_name_exactly_the_inputs_inside_the_axis_and_phases_keep_them_contiguous() {
        for (input, kernel, stride, pad_before, pad_after) in
            [(7, 3, 1, 1, 1), (112, 3, 2, 0, 1), (5, 5, 3, 2, 4), (4, 7, 1, 3, 3), (9, 2, 2, 0, 0)]
        {
            let output = (input + pad_before + pad_after - kernel) / stride + 1;
            let axis = Axis { input, output, kernel, stride, pad_before };
            for (k, tap) in axis.taps().into_iter().enumerate() {
                let expected: Vec<(usize, usize)> = (0..output)
                    .filter_map(|o| {
                        let i = (o * stride + k).checked_sub(pad_before)?;
                        (i < input).then_some((o, i))
                    })
                    .collect();
                let named: Vec<(usize, usize)> = tap
                    .outputs
                    .clone()
                    .enumerate()
                    .map(|(j, o)| (o, tap.source + j * stride))
                    .collect();
                assert_eq!(named, expected, "{axis:?} tap {k}");
                let line: Vec<f32> = (0..input).map(|i| i as f32).collect();
                let mut phased = vec![-1.0; axis.phased_len()];
                axis.split(&line, &mut phased);
                let start = axis.phased_start(&tap);
                let run: Vec<f32> = expected.iter().map(|&(_, i)| i as f32).collect();
                assert_eq!(phased[start..][..run.len()], run[..], "{axis:?} tap {k} split");
            }
        }
    }
}
