//! 3x3 convolutions of stride 1 and padding 1 by Winograd's minimal filtering F(2x2, 3x3)
//! (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): each 2x2 block
//! of outputs comes from a 4x4 tile of the input with 16 multiplications per input channel
//! instead of 36.
//!
//! The weights are transformed once, when the operator is built (`U = G g Gᵀ`, 16 matrices of
//! `out x in`), and packed for the project's matrix product ([`super::gemm`]). For a band of
//! tiles at a time, each input tile is transformed (`V = Bᵀ d B`) straight into the column
//! panels of 16 products, the 16 products `M = U V` run, and each output block is transformed
//! back (`Y = Aᵀ M A`) with the bias and a folded ReLU.

#![allow(
    clippy::indexing_slicing,
    reason = "tile indices stay inside the band and the image by construction; the products' \
              buffers are cut from lengths computed from the same band"
)]

use std::ops::Range;
use std::sync::Arc;

use tract_onnx::prelude::tract_ndarray::ArrayViewD;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::PoolSpec;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};

use super::conv::Plain;
use super::gemm::{self, Kernel, PackedWeights, PANEL};
use super::glue::{output, zeros};
use super::window::Axis;

/// How much of the transformed input and of the products is held at a time: a band of tiles
/// whose 16 products' panels and results stay in a core's share of the L2 cache (1 MiB
/// measured best among 0.5 to 8 MB).
const BAND_BYTES: usize = 1 << 20;

/// Tiles transformed together, one per vector lane.
const LANES: usize = 8;

/// Values of [`LANES`] tiles side by side.
type Lanes = [f32; LANES];

/// A float NCHW 3x3 convolution of stride 1 and padding 1, by F(2x2, 3x3).
#[derive(Debug, Clone, PartialEq)]
pub struct WinogradConv {
    spec: PoolSpec,
    kernel: Kernel,
    /// `U` at each of the 16 positions of the 4x4 tile: `out x in`, packed, with no bias.
    weights: Arc<Vec<PackedWeights>>,
    /// One per output channel.
    bias: Arc<Vec<f32>>,
    /// Whether negative outputs are stored as zero (a ReLU folded in).
    pub relu: bool,
}

impl Eq for WinogradConv {}

/// Whether [`WinogradConv`] computes `spec` over a `height x width` input: a 3x3 window of
/// stride 1 and no dilation, padded by 1 on every side.
pub fn suits(spec: &PoolSpec, height: usize, width: usize) -> bool {
    let three = spec.kernel_shape[..] == [3, 3]
        && spec.strides().iter().all(|&s| s == 1)
        && spec.dilations().iter().all(|&d| d == 1);
    three
        && Axis::both(spec, height, width)
            .iter()
            .all(|axis| axis.pad_before == 1 && axis.output == axis.input)
}

impl WinogradConv {
    /// The operator for `spec` with `plain`'s weights (OIHW 3x3) and bias.
    pub fn new(spec: PoolSpec, kernel: Kernel, plain: &Plain) -> WinogradConv {
        let [out, inputs, _, _] = plain.shape;
        let mut transformed = vec![vec![0f32; out * inputs]; 16];
        for (index, g) in plain.weights.chunks_exact(9).enumerate() {
            for (position, value) in filter_transform(g).into_iter().enumerate() {
                transformed[position][index] = value;
            }
        }
        let none = vec![0f32; out];
        let weights =
            transformed.iter().map(|u| PackedWeights::new(u, &none, out, inputs)).collect();
        WinogradConv {
            spec,
            kernel,
            weights: Arc::new(weights),
            bias: Arc::new(plain.bias.clone()),
            relu: false,
        }
    }

    /// Convolves `input` (N, C, H, W) into a new array.
    pub fn apply(&self, input: &ArrayViewD<f32>) -> TractResult<Tensor> {
        let shape = input.shape();
        let channels = self.spec.input_channels;
        ensure!(
            shape.len() == 4 && shape[1] == channels && shape[2] > 0 && shape[3] > 0,
            "convolution expects N x {channels} x H x W, got {shape:?}"
        );
        let (height, width) = (shape[2], shape[3]);
        let input = input.as_standard_layout();
        let data = input.as_slice().context("a standard-layout array is contiguous")?;
        let out = self.bias.len();
        let tiles = Tiles { across: width.div_ceil(2), height, width };
        let count = tiles.across * height.div_ceil(2);
        let band = (BAND_BYTES / (16 * 4 * (channels + out).max(1)) / PANEL).max(1) * PANEL;
        let band = band.min(count.div_ceil(PANEL) * PANEL);
        let region = gemm::panels_len(channels, band);
        let mut panels = zeros(16 * region)?;
        let mut products = zeros(16 * out * band)?;
        output(&[shape[0], out, height, width], |output| {
            let images = data.chunks_exact(channels * height * width);
            for (image, result) in images.zip(output.chunks_exact_mut(out * height * width)) {
                for start in (0..count).step_by(band) {
                    let range = start..(start + band).min(count);
                    let columns = range.len();
                    tiles.transform_input(image, channels, range.clone(), &mut panels, region);
                    let products = &mut products[..16 * out * columns];
                    for ((u, v), m) in self
                        .weights
                        .iter()
                        .zip(panels.chunks_exact(region))
                        .zip(products.chunks_exact_mut(out * columns))
                    {
                        gemm::multiply(self.kernel, u, v, columns, m, columns, false);
                    }
                    tiles.transform_output(products, range, &self.bias, self.relu, result);
                }
            }
            Ok(())
        })
    }
}

/// The 2x2 output blocks of one image, `across` to a row of blocks.
#[derive(Debug, Clone, Copy)]
struct Tiles {
    across: usize,
    height: usize,
    width: usize,
}

impl Tiles {
    /// The top-left output pixel of tile `tile`.
    fn corner(&self, tile: usize) -> (usize, usize) {
        (2 * (tile / self.across), 2 * (tile % self.across))
    }

    /// `V = Bᵀ d B` for each input channel of `image` and each tile of `range`, written as
    /// step `channel`, column `tile - range.start` of the 16 products' panels (`region` floats
    /// each), [`LANES`] tiles at a time.
    fn transform_input(
        &self,
        image: &[f32],
        channels: usize,
        range: Range<usize>,
        panels: &mut [f32],
        region: usize,
    ) {
        let corners: Vec<(usize, usize)> = range.clone().map(|t| self.corner(t)).collect();
        let plane = self.height * self.width;
        for (channel, values) in image.chunks_exact(plane).take(channels).enumerate() {
            for (group, corners) in corners.chunks(LANES).enumerate() {
                let mut d = [[0f32; LANES]; 16];
                for (lane, &(top, left)) in corners.iter().enumerate() {
                    self.patch(values, top, left, lane, &mut d);
                }
                let v = input_transform(&d);
                // A group starts at a multiple of LANES, inside one panel.
                let at = gemm::panel_index(channels, channel, group * LANES);
                let count = corners.len();
                for (position, lanes) in v.iter().enumerate() {
                    copy_lanes(&mut panels[position * region + at..][..count], &lanes[..count]);
                }
            }
        }
    }

    /// Puts the 4x4 input values of the tile whose outputs start at `(top, left)` into lane
    /// `lane` of `d`; the padding stays zero.
    fn patch(&self, values: &[f32], top: usize, left: usize, lane: usize, d: &mut [Lanes; 16]) {
        let inside = top >= 1 && left >= 1 && top + 3 <= self.height && left + 3 <= self.width;
        for r in 0..4 {
            let y = (top + r).wrapping_sub(1);
            if y >= self.height {
                continue;
            }
            let line = &values[y * self.width..][..self.width];
            if inside {
                let row = &line[left - 1..][..4];
                for s in 0..4 {
                    d[4 * r + s][lane] = row[s];
                }
                continue;
            }
            for s in 0..4 {
                let x = (left + s).wrapping_sub(1);
                if x < self.width {
                    d[4 * r + s][lane] = line[x];
                }
            }
        }
    }

    /// Where the two output lines of a group of [`LANES`] tiles start in a plane, if the
    /// group is whole and its tiles lie side by side inside one pair of lines: then each line
    /// takes `2 * LANES` consecutive values.
    fn whole_rows(&self, corners: &[(usize, usize)]) -> Option<impl Iterator<Item = usize>> {
        let (&(top, left), &(last_top, last_left)) = (corners.first()?, corners.last()?);
        let whole = corners.len() == LANES
            && last_top == top
            && last_left + 2 <= self.width
            && top + 2 <= self.height;
        let width = self.width;
        whole.then(|| (top..top + 2).map(move |row| row * width + left))
    }

    /// `Y = Aᵀ M A` plus the bias for each output channel and tile of `range`, from the 16
    /// products (`out x range.len()` each), into `result` (`out x H x W`), [`LANES`] tiles at
    /// a time.
    fn transform_output(
        &self,
        products: &[f32],
        range: Range<usize>,
        bias: &[f32],
        relu: bool,
        result: &mut [f32],
    ) {
        let (columns, out) = (range.len(), bias.len());
        let corners: Vec<(usize, usize)> = range.map(|t| self.corner(t)).collect();
        let plane = self.height * self.width;
        for (channel, (&bias, result)) in
            bias.iter().zip(result.chunks_exact_mut(plane)).enumerate()
        {
            for (group, corners) in corners.chunks(LANES).enumerate() {
                let count = corners.len();
                let mut m = [[0f32; LANES]; 16];
                for (position, lanes) in m.iter_mut().enumerate() {
                    let from = (position * out + channel) * columns + group * LANES;
                    copy_lanes(&mut lanes[..count], &products[from..][..count]);
                }
                let mut y = output_transform(&m);
                for lanes in &mut y {
                    for value in lanes.iter_mut() {
                        *value += bias;
                        if relu {
                            *value = value.max(0.0);
                        }
                    }
                }
                if let Some(rows) = self.whole_rows(corners) {
                    for (i, row) in rows.enumerate() {
                        let line = &mut result[row..][..2 * LANES];
                        for (pair, (&a, &b)) in
                            line.chunks_exact_mut(2).zip(y[2 * i].iter().zip(&y[2 * i + 1]))
                        {
                            pair.copy_from_slice(&[a, b]);
                        }
                    }
                    continue;
                }
                for (lane, &(top, left)) in corners.iter().enumerate() {
                    for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let (row, column) = (top + i, left + j);
                        if row < self.height && column < self.width {
                            result[row * self.width + column] = y[2 * i + j][lane];
                        }
                    }
                }
            }
        }
    }
}

/// Copies `from` into `to` (equal lengths, at most [`LANES`]); a whole group is one fixed-size
/// move rather than a call to `memcpy`.
#[inline(always)]
fn copy_lanes(to: &mut [f32], from: &[f32]) {
    match (<&mut Lanes>::try_from(&mut *to), <&Lanes>::try_from(from)) {
        (Ok(to), Ok(from)) => *to = *from,
        _ => to.copy_from_slice(from),
    }
}

/// `G g Gᵀ` of a 3x3 filter `g` (row-major), 4x4 row-major.
fn filter_transform(g: &[f32]) -> [f32; 16] {
    let column = |a: f32, b: f32, c: f32| [a, (a + b + c) / 2.0, (a - b + c) / 2.0, c];
    // G g: 4 rows of 3.
    let mut gg = [[0f32; 3]; 4];
    for x in 0..3 {
        for (row, value) in column(g[x], g[3 + x], g[6 + x]).into_iter().enumerate() {
            gg[row][x] = value;
        }
    }
    let mut u = [0f32; 16];
    for (row, line) in gg.iter().enumerate() {
        u[row * 4..][..4].copy_from_slice(&column(line[0], line[1], line[2]));
    }
    u
}

/// `a - b`, lane by lane.
fn sub(a: &Lanes, b: &Lanes) -> Lanes {
    std::array::from_fn(|i| a[i] - b[i])
}

/// `a + b`, lane by lane.
fn add(a: &Lanes, b: &Lanes) -> Lanes {
    std::array::from_fn(|i| a[i] + b[i])
}

/// `Bᵀ d B` of 4x4 tiles `d` (row-major), lane by lane.
fn input_transform(d: &[Lanes; 16]) -> [Lanes; 16] {
    let step =
        |a: &Lanes, b: &Lanes, c: &Lanes, e: &Lanes| [sub(a, c), add(b, c), sub(c, b), sub(b, e)];
    let mut rows = [[0f32; LANES]; 16];
    for x in 0..4 {
        let column = step(&d[x], &d[4 + x], &d[8 + x], &d[12 + x]);
        for (row, value) in column.into_iter().enumerate() {
            rows[row * 4 + x] = value;
        }
    }
    let mut v = [[0f32; LANES]; 16];
    for (row, line) in rows.chunks_exact(4).enumerate() {
        v[row * 4..][..4].copy_from_slice(&step(&line[0], &line[1], &line[2], &line[3]));
    }
    v
}

/// `Aᵀ m A` of 4x4 `m` (row-major), 2x2 row-major, lane by lane.
fn output_transform(m: &[Lanes; 16]) -> [Lanes; 4] {
    let step =
        |a: &Lanes, b: &Lanes, c: &Lanes, e: &Lanes| [add(&add(a, b), c), sub(&sub(b, c), e)];
    let mut rows = [[0f32; LANES]; 8];
    for x in 0..4 {
        let [first, second] = step(&m[x], &m[4 + x], &m[8 + x], &m[12 + x]);
        rows[x] = first;
        rows[4 + x] = second;
    }
    let [a, b] = step(&rows[0], &rows[1], &rows[2], &rows[3]);
    let [c, e] = step(&rows[4], &rows[5], &rows[6], &rows[7]);
    [a, b, c, e]
}

windowed_op!(WinogradConv);

#[cfg(test)]
mod tests {
    use super::super::conv::FastConv;
    use super::super::glue::random;
    use super::*;
    use tract_onnx::tract_core::ops::cnn::PaddingSpec;
    use tract_onnx::tract_core::ops::nn::DataFormat;

    fn same(inputs: usize, outputs: usize) -> PoolSpec {
        let padding = PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]);
        PoolSpec::new(DataFormat::NCHW, tvec![3, 3], padding, None, None, inputs, outputs)
    }

    #[test]
    fn matches_the_direct_convolution() {
        let Some(kernel) = Kernel::detect() else { return };
        // Even and odd sides, a band's worth of tiles and more, channels not a multiple of 8,
        // groups of tiles within a pair of lines and across them.
        for (seed, (shape, out)) in [
            ([1, 3, 4, 4], 2),
            ([2, 6, 9, 7], 5),
            ([1, 64, 28, 28], 19),
            ([1, 20, 7, 7], 9),
            ([1, 4, 5, 33], 3),
        ]
        .into_iter()
        .enumerate()
        {
            let spec = same(shape[1], out);
            let weights = random(&[out, shape[1], 3, 3], 11 + seed as u32);
            let plain = Plain {
                weights: weights.iter().copied().collect(),
                bias: random(&[out], 12).iter().copied().collect(),
                shape: [out, shape[1], 3, 3],
            };
            let input = random(&shape, seed as u32);
            for relu in [false, true] {
                let mut winograd = WinogradConv::new(spec.clone(), kernel, &plain);
                winograd.relu = relu;
                let mut direct = FastConv::new(spec.clone(), kernel, &plain);
                direct.relu = relu;
                let ours = winograd.apply(&input.view()).unwrap();
                let expected = direct.apply(&input.view()).unwrap();
                assert_eq!(ours.shape(), expected.shape());
                let ours = ours.to_plain_array_view::<f32>().unwrap();
                let expected = expected.to_plain_array_view::<f32>().unwrap();
                let scale = 100.0 * 100.0 * (shape[1] * 9) as f32;
                for (a, b) in ours.iter().zip(expected.iter()) {
                    assert!((a - b).abs() <= 1e-5 * scale, "{shape:?}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn suits_only_a_3x3_window_of_stride_1_padded_by_1() {
        assert!(suits(&same(4, 4), 14, 14));
        let valid =
            PoolSpec::new(DataFormat::NCHW, tvec![3, 3], PaddingSpec::Valid, None, None, 4, 4);
        assert!(!suits(&valid, 14, 14));
        let strided = PoolSpec::new(
            DataFormat::NCHW,
            tvec![3, 3],
            PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]),
            None,
            Some(tvec![2, 2]),
            4,
            4,
        );
        assert!(!suits(&strided, 14, 14));
    }
}
