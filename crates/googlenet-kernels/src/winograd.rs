//! 3x3 convolutions of stride 1 and padding 1 by Winograd's minimal filtering F(BxB, 3x3)
//! (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): each `B x B`
//! block of outputs comes from a `(B + 2) x (B + 2)` tile of the input, with `(B + 2)²`
//! multiplications per input channel instead of `9 B²`: F(2x2, 3x3) does 2.25x fewer, F(4x4,
//! 3x3) (points 0, ±1, ±2) 4x fewer. [`Block::for_input`] picks one for a layer's input size.
//!
//! The weights are transformed once, when the operator is built (`U = G g Gᵀ`, one `out x in`
//! matrix per tile position), and packed for the project's matrix product ([`super::gemm`]).
//! For a band of tiles at a time, each input tile is transformed (`V = Bᵀ d B`) straight into
//! the column panels of one product per position, the products `M = U V` run, and each output
//! block is transformed back (`Y = Aᵀ M A`) with the bias and a folded ReLU.

#![allow(
    clippy::indexing_slicing,
    reason = "tile indices stay inside the band and the image by construction; the products' \
              buffers are cut from lengths computed from the same band"
)]

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::Arc;

use tract_onnx::prelude::tract_ndarray::ArrayViewD;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::PoolSpec;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};

use super::conv::Plain;
use super::gemm::{self, Kernel, PackedWeights, Right, PANEL};
use super::glue::{output_onto, Part, Scratch, LINE_FLOATS};
use super::window::Axis;

/// How much of the transformed input and of the products is held at a time: a band of tiles
/// whose products' panels and results stay in a core's share of the L2 cache (1 MiB measured
/// best among 0.5 to 8 MB).
const BAND_BYTES: usize = 1 << 20;

/// Tiles transformed together, one per vector lane: a 256-bit vector, as the transforms are
/// compiled for AVX2 where the CPU has it (compiled for AVX-512 they ran 1.1x-1.4x slower).
const LANES: usize = 8;

/// Values of [`LANES`] tiles side by side.
type Lanes = [f32; LANES];

/// The side of the output blocks: F(2x2, 3x3) or F(4x4, 3x3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// 2x2 outputs from 4x4 tiles: 16 products.
    Two,
    /// 4x4 outputs from 6x6 tiles: 36 products.
    Four,
}

impl Block {
    /// F(4x4, 3x3) where the tiles of a batch of `images` fill at least one panel of the
    /// product ([`PANEL`] columns; on GoogLeNet, the 56x56 and 28x28 layers, and the 14x14 ones
    /// in batches of two), else F(2x2, 3x3): with fewer tiles, the products run on part-empty
    /// panels, which cost more than the multiplications saved (measured on the 14x14 and 7x7
    /// layers one image at a time).
    pub fn for_input(images: usize, height: usize, width: usize) -> Block {
        if images * Tiles::<F4>::new(height, width).per_image >= PANEL {
            Block::Four
        } else {
            Block::Two
        }
    }

    /// Positions in a tile: one matrix product each.
    fn positions(self) -> usize {
        match self {
            Block::Two => F2::SIDE * F2::SIDE,
            Block::Four => F4::SIDE * F4::SIDE,
        }
    }
}

/// One F(BxB, 3x3): its sides, and its transforms, each on [`LANES`] tiles side by side, in
/// arrays of exactly their size (so that each compiles to straight-line vector code).
trait Scheme {
    /// The side `B` of an output block.
    const BLOCK: usize;
    /// The side of an input tile: a block and the 3x3 window's border.
    const SIDE: usize = Self::BLOCK + 2;
    /// A tile's `SIDE²` positions, row-major.
    type Tile: Copy + AsRef<[Lanes]> + AsMut<[Lanes]>;
    /// An output block's `BLOCK²` values, row-major.
    type Output: AsRef<[Lanes]> + AsMut<[Lanes]>;
    /// A tile of zeros.
    const ZERO: Self::Tile;
    /// A transformed filter's `SIDE²` values, row-major.
    type Filter: AsRef<[f32]>;
    /// `G g Gᵀ` of a 3x3 filter `g` (row-major).
    fn filter(g: &[f32]) -> Self::Filter;
    /// `Bᵀ d B`.
    fn input(d: &Self::Tile) -> Self::Tile;
    /// `Aᵀ m A`.
    fn output(m: &Self::Tile) -> Self::Output;
}

/// A float NCHW 3x3 convolution of stride 1 and padding 1, by F(2x2, 3x3) or F(4x4, 3x3).
#[derive(Debug, Clone)]
pub struct WinogradConv {
    spec: PoolSpec,
    kernel: Kernel,
    block: Block,
    /// `U` at each position of the tile: `out x in`, packed, with no bias.
    weights: Arc<Vec<PackedWeights>>,
    /// One per output channel.
    bias: Arc<Vec<f32>>,
    /// Whether negative outputs are stored as zero (a ReLU folded in).
    pub relu: bool,
    /// Where the output goes in the tensor handed on.
    pub part: Part,
}

/// The same operator: the same geometry and the same weights and bias, the same allocations
/// rather than equal values, as for `FastConv`.
impl PartialEq for WinogradConv {
    fn eq(&self, other: &WinogradConv) -> bool {
        self.spec == other.spec
            && self.kernel == other.kernel
            && self.block == other.block
            && Arc::ptr_eq(&self.weights, &other.weights)
            && Arc::ptr_eq(&self.bias, &other.bias)
            && self.relu == other.relu
            && self.part == other.part
    }
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
    /// The operator for `spec` with `plain`'s weights (OIHW 3x3) and bias, in output blocks of
    /// `block`.
    pub fn new(
        spec: PoolSpec,
        kernel: Kernel,
        plain: &Plain,
        block: Block,
    ) -> TractResult<WinogradConv> {
        let [out, inputs, _, _] = plain.shape;
        let weights = plain.weights()?;
        let transformed = match block {
            Block::Two => transform_filters::<F2>(weights),
            Block::Four => transform_filters::<F4>(weights),
        };
        let none = vec![0f32; out];
        let weights =
            transformed.iter().map(|u| PackedWeights::new(u, &none, out, inputs)).collect();
        Ok(WinogradConv {
            spec,
            kernel,
            block,
            weights: Arc::new(weights),
            bias: Arc::new(plain.bias.clone()),
            relu: false,
            part: Part::whole(out),
        })
    }

    /// Its output channels.
    pub fn channels(&self) -> usize {
        self.spec.output_channels
    }

    /// Convolves `input` (N, C, H, W) into its part of `handed`, or of a new tensor.
    pub fn write(&self, input: &ArrayViewD<f32>, handed: Option<Tensor>) -> TractResult<Tensor> {
        match self.block {
            Block::Two => self.convolve::<F2>(input, handed),
            Block::Four => self.convolve::<F4>(input, handed),
        }
    }

    /// [`WinogradConv::write`] by `S`, `self.block`'s scheme.
    fn convolve<S: Scheme>(
        &self,
        input: &ArrayViewD<f32>,
        handed: Option<Tensor>,
    ) -> TractResult<Tensor> {
        let shape = input.shape();
        let channels = self.spec.input_channels;
        ensure!(
            shape.len() == 4 && shape[1] == channels && shape[2] > 0 && shape[3] > 0,
            "convolution expects N x {channels} x H x W, got {shape:?}"
        );
        let (height, width) = (shape[2], shape[3]);
        let input = input.as_standard_layout();
        let data = input.as_slice().context("a standard-layout array is contiguous")?;
        let (out, positions) = (self.bias.len(), self.block.positions());
        let tiles = Tiles::<S>::new(height, width);
        // The tiles of every image in the batch, one after another: the late layers' few
        // tiles per image fill the products' panels together, and each weight is read once.
        let count = tiles.per_image * shape[0];
        let band = (BAND_BYTES / (positions * 4 * (channels + out).max(1)) / PANEL).max(1) * PANEL;
        let band = band.min(count.div_ceil(PANEL) * PANEL);
        let region = apart(gemm::panels_len(channels, band));
        let mut panels = Scratch::new(positions * region)?;
        let mut products = Scratch::new(positions * apart(out * band))?;
        let written = (self.part, out, height * width);
        output_onto(&[shape[0], self.part.of, height, width], handed, written, |result| {
            for start in (0..count).step_by(band) {
                let range = start..(start + band).min(count);
                let columns = range.len();
                tiles.transform(
                    range.clone(),
                    Transform::Input { data, channels, panels: &mut panels, region },
                );
                let product = apart(out * columns);
                let products = &mut products[..positions * product];
                for ((u, v), m) in self
                    .weights
                    .iter()
                    .zip(panels.chunks_exact(region))
                    .zip(products.chunks_exact_mut(product))
                {
                    gemm::multiply(self.kernel, u, Right::Panels(v), columns, m, columns, false);
                }
                let (bias, relu, part) = (&self.bias, self.relu, self.part);
                tiles.transform(range, Transform::Output { products, bias, relu, part, result });
            }
            Ok(())
        })
    }
}

/// The output blocks of a batch of images, `across` to a row of blocks and `per_image` to an
/// image, and the tiles of `S` they come from.
struct Tiles<S> {
    across: usize,
    per_image: usize,
    height: usize,
    width: usize,
    scheme: PhantomData<S>,
}

impl<S: Scheme> Tiles<S> {
    /// The tiles of `height x width` images.
    fn new(height: usize, width: usize) -> Tiles<S> {
        let across = width.div_ceil(S::BLOCK);
        let per_image = across * height.div_ceil(S::BLOCK);
        Tiles { across, per_image, height, width, scheme: PhantomData }
    }

    /// Runs `transform` on the tiles of `range`, with 256-bit vectors where the CPU has them.
    fn transform(&self, range: Range<usize>, transform: Transform) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, as checked just above.
            return unsafe { self.transform_avx2(range, transform) };
        }
        self.run(range, transform);
    }

    /// [`Tiles::transform`] compiled for AVX2: a group's [`Lanes`] are one vector.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn transform_avx2(&self, range: Range<usize>, transform: Transform) {
        self.run(range, transform);
    }

    /// [`Tiles::transform`]'s work, inlined into each of its versions.
    #[inline(always)]
    fn run(&self, range: Range<usize>, transform: Transform) {
        match transform {
            Transform::Input { data, channels, panels, region } => {
                self.transform_input(data, channels, range, panels, region);
            }
            Transform::Output { products, bias, relu, part, result } => {
                self.transform_output(products, range, bias, relu, part, result);
            }
        }
    }

    /// Where tile `tile` lies: its image, and the top-left pixel of its output block.
    #[inline(always)]
    fn corner(&self, tile: usize) -> Corner {
        let (image, tile) = (tile / self.per_image, tile % self.per_image);
        Corner {
            image,
            top: S::BLOCK * (tile / self.across),
            left: S::BLOCK * (tile % self.across),
        }
    }

    /// `V = Bᵀ d B` for each input channel and each tile of `range` of the batch `data`
    /// (`N x channels x H x W`), written as step `channel`, column `tile - range.start` of the
    /// products' panels (each `region` floats from the next, see [`apart`]), [`LANES`] tiles at
    /// a time.
    #[inline(always)]
    fn transform_input(
        &self,
        data: &[f32],
        channels: usize,
        range: Range<usize>,
        panels: &mut [f32],
        region: usize,
    ) {
        let corners: Vec<Corner> = range.clone().map(|t| self.corner(t)).collect();
        let plane = self.height * self.width;
        // One tile buffer for all groups: a group whose tiles lie inside the image overwrites
        // every value its lanes hold, so only the others start from zeros.
        let inside: Vec<bool> = corners
            .chunks(LANES)
            .map(|group| group.iter().all(|corner| self.inside(corner.top, corner.left)))
            .collect();
        let mut d = S::ZERO;
        for channel in 0..channels {
            for (group, (corners, &inside)) in corners.chunks(LANES).zip(&inside).enumerate() {
                if !inside {
                    d = S::ZERO;
                }
                for (lane, corner) in corners.iter().enumerate() {
                    let values = &data[(corner.image * channels + channel) * plane..][..plane];
                    self.patch(values, corner.top, corner.left, lane, d.as_mut());
                }
                let v = S::input(&d);
                // A group starts at a multiple of LANES, inside one panel.
                let at = gemm::panel_index(channels, channel, group * LANES);
                let count = corners.len();
                for (position, lanes) in v.as_ref().iter().enumerate() {
                    copy_lanes(&mut panels[position * region + at..][..count], &lanes[..count]);
                }
            }
        }
    }

    /// Whether the input tile whose outputs start at `(top, left)` lies inside the image,
    /// clear of the padding.
    #[inline(always)]
    fn inside(&self, top: usize, left: usize) -> bool {
        let side = S::SIDE;
        top >= 1 && left >= 1 && top + side - 1 <= self.height && left + side - 1 <= self.width
    }

    /// Puts the input values of the tile whose outputs start at `(top, left)` into lane `lane`
    /// of `d`; the padding stays zero.
    #[inline(always)]
    fn patch(&self, values: &[f32], top: usize, left: usize, lane: usize, d: &mut [Lanes]) {
        let side = S::SIDE;
        let inside = self.inside(top, left);
        for r in 0..side {
            let y = (top + r).wrapping_sub(1);
            if y >= self.height {
                continue;
            }
            let line = &values[y * self.width..][..self.width];
            if inside {
                let row = &line[left - 1..][..side];
                for (s, &value) in row.iter().enumerate() {
                    d[side * r + s][lane] = value;
                }
                continue;
            }
            for s in 0..side {
                let x = (left + s).wrapping_sub(1);
                if x < self.width {
                    d[side * r + s][lane] = line[x];
                }
            }
        }
    }

    /// `Y = Aᵀ M A` plus the bias for each output channel and tile of `range`, from the
    /// products (`out x range.len()` each, laid [`apart`] in `products`), into the operator's
    /// `part` of `result`, [`LANES`] tiles at a time.
    #[inline(always)]
    fn transform_output(
        &self,
        products: &[f32],
        range: Range<usize>,
        bias: &[f32],
        relu: bool,
        part: Part,
        result: &mut [f32],
    ) {
        let columns = range.len();
        let product = products.len() / (S::SIDE * S::SIDE);
        let corners: Vec<Corner> = range.map(|t| self.corner(t)).collect();
        let plane = self.height * self.width;
        let planes = |corner: &Corner, channel| part.plane(corner.image, channel) * plane;
        // One buffer for all groups: each fills the lanes it uses, which are all it reads.
        let mut m = S::ZERO;
        for (channel, &bias) in bias.iter().enumerate() {
            for (group, corners) in corners.chunks(LANES).enumerate() {
                let count = corners.len();
                for (position, lanes) in m.as_mut().iter_mut().enumerate() {
                    let from = position * product + channel * columns + group * LANES;
                    copy_lanes(&mut lanes[..count], &products[from..][..count]);
                }
                let mut y = S::output(&m);
                for lanes in y.as_mut() {
                    for value in lanes.iter_mut() {
                        *value += bias;
                        if relu {
                            *value = value.max(0.0);
                        }
                    }
                }
                for (lane, corner) in corners.iter().enumerate() {
                    let result = &mut result[planes(corner, channel)..][..plane];
                    let (top, left, block) = (corner.top, corner.left, S::BLOCK);
                    if top + block <= self.height && left + block <= self.width {
                        let lines = y.as_ref().chunks_exact(block);
                        for (row, values) in (top..).zip(lines) {
                            let line = &mut result[row * self.width + left..][..block];
                            for (value, lanes) in line.iter_mut().zip(values) {
                                *value = lanes[lane];
                            }
                        }
                        continue;
                    }
                    for (position, lanes) in y.as_ref().iter().enumerate() {
                        let (row, column) = (top + position / block, left + position % block);
                        if row < self.height && column < self.width {
                            result[row * self.width + column] = lanes[lane];
                        }
                    }
                }
            }
        }
    }
}

/// One of the two transforms of a band of tiles, with what it reads and writes.
enum Transform<'a> {
    /// `V = Bᵀ d B` of the batch `data` into `panels` ([`Tiles::transform_input`]).
    Input { data: &'a [f32], channels: usize, panels: &'a mut [f32], region: usize },
    /// `Y = Aᵀ M A` of `products` into `result` ([`Tiles::transform_output`]).
    Output { products: &'a [f32], bias: &'a [f32], relu: bool, part: Part, result: &'a mut [f32] },
}

/// Where a tile lies in the batch: its image, and the top-left pixel of its output block.
struct Corner {
    image: usize,
    top: usize,
    left: usize,
}

/// How far apart to lay buffers of `len` floats that are read or written a line from each in
/// turn (the positions' panels and products): an odd number of 64-byte cache lines, so that
/// the buffers' lines fall in different sets of the L1 cache rather than, at a multiple of
/// 4 KB apart, all in one.
fn apart(len: usize) -> usize {
    (len.div_ceil(LINE_FLOATS) | 1) * LINE_FLOATS
}

/// Copies `from` into `to` (equal lengths, at most [`LANES`]); a whole group is one fixed-size
/// move. The part-group copy stays a separate call: inlined, the compiler merges both into one
/// `memcpy` of a variable length, which cost about 3% of a network's run.
#[inline(always)]
fn copy_lanes(to: &mut [f32], from: &[f32]) {
    match (<&mut Lanes>::try_from(&mut *to), <&Lanes>::try_from(from)) {
        (Ok(to), Ok(from)) => *to = *from,
        _ => copy_part(to, from),
    }
}

/// [`copy_lanes`] for a group's last, part-filled lanes.
#[cold]
#[inline(never)]
fn copy_part(to: &mut [f32], from: &[f32]) {
    to.copy_from_slice(from);
}

/// `U` at each position of `S`'s tile: for the 3x3 filters `weights` (OIHW, flattened), one
/// `out x in` matrix per position, of the filters' transforms' values there.
fn transform_filters<S: Scheme>(weights: &[f32]) -> Vec<Vec<f32>> {
    let filters = weights.chunks_exact(9);
    let mut matrices = vec![vec![0f32; filters.len()]; S::SIDE * S::SIDE];
    for (index, g) in filters.enumerate() {
        for (matrix, &value) in matrices.iter_mut().zip(S::filter(g).as_ref()) {
            matrix[index] = value;
        }
    }
    matrices
}

/// `G g Gᵀ` of a 3x3 filter `g` (row-major), where `column` is `G` times a column of three:
/// `SIDE²` values (`SQUARE`), row-major.
fn filter_transform<const SIDE: usize, const SQUARE: usize>(
    g: &[f32],
    column: impl Fn([f32; 3]) -> [f32; SIDE],
) -> [f32; SQUARE] {
    let gg: [[f32; SIDE]; 3] = std::array::from_fn(|x| column([g[x], g[3 + x], g[6 + x]]));
    let mut u = [0.0; SQUARE];
    for (row, line) in u.chunks_exact_mut(SIDE).enumerate() {
        line.copy_from_slice(&column([gg[0][row], gg[1][row], gg[2][row]]));
    }
    u
}

/// `Σ weight x value` over `terms`, lane by lane.
#[inline(always)]
fn sum<const N: usize>(terms: [(f32, &Lanes); N]) -> Lanes {
    // -0.0 + x is x for every x, so the compiler folds the first addition away.
    let mut total = [-0.0; LANES];
    for (weight, values) in terms {
        for (total, value) in total.iter_mut().zip(values) {
            *total += weight * value;
        }
    }
    total
}

/// `S t Sᵀ` of the `SIDE x SIDE` tile `t` (row-major), where `step` is `S` (`ROWS x SIDE`)
/// times one column of lanes: `ROWS x ROWS` values, row-major, in `SQUARE`.
#[inline(always)]
fn both_sides<const SIDE: usize, const ROWS: usize, const SQUARE: usize>(
    t: &[Lanes],
    step: impl Fn(&[Lanes; SIDE]) -> [Lanes; ROWS],
) -> [Lanes; SQUARE] {
    let mut line = [[0.0; LANES]; SIDE];
    let mut columns = [[[0.0; LANES]; ROWS]; SIDE];
    for (x, column) in columns.iter_mut().enumerate() {
        for (r, value) in line.iter_mut().enumerate() {
            *value = t[r * SIDE + x];
        }
        *column = step(&line);
    }
    let mut result = [[0.0; LANES]; SQUARE];
    for (row, out) in result.chunks_exact_mut(ROWS).enumerate() {
        for (x, value) in line.iter_mut().enumerate() {
            *value = columns[x][row];
        }
        out.copy_from_slice(&step(&line));
    }
    result
}

/// F(2x2, 3x3).
struct F2;

impl Scheme for F2 {
    const BLOCK: usize = 2;
    type Tile = [Lanes; 16];
    type Output = [Lanes; 4];
    const ZERO: Self::Tile = [[0.0; LANES]; 16];

    type Filter = [f32; 16];

    fn filter(g: &[f32]) -> Self::Filter {
        filter_transform(g, |[a, b, c]| [a, (a + b + c) / 2.0, (a - b + c) / 2.0, c])
    }

    #[inline(always)]
    fn input(d: &Self::Tile) -> Self::Tile {
        both_sides(d, f2_input)
    }

    #[inline(always)]
    fn output(m: &Self::Tile) -> Self::Output {
        both_sides(m, f2_output)
    }
}

/// F(2x2, 3x3)'s `Bᵀ` times a column of lanes. The steps of the transforms are functions, not
/// closures: a closure that the compiler does not inline is called once per column and row,
/// through memory, and compiled without the caller's vector features.
#[inline(always)]
fn f2_input([d0, d1, d2, d3]: &[Lanes; 4]) -> [Lanes; 4] {
    [
        sum([(1.0, d0), (-1.0, d2)]),
        sum([(1.0, d1), (1.0, d2)]),
        sum([(-1.0, d1), (1.0, d2)]),
        sum([(1.0, d1), (-1.0, d3)]),
    ]
}

/// F(2x2, 3x3)'s `Aᵀ` times a column of lanes.
#[inline(always)]
fn f2_output([m0, m1, m2, m3]: &[Lanes; 4]) -> [Lanes; 2] {
    [sum([(1.0, m0), (1.0, m1), (1.0, m2)]), sum([(1.0, m1), (-1.0, m2), (-1.0, m3)])]
}

/// F(4x4, 3x3), at the points 0, ±1, ±2.
struct F4;

impl Scheme for F4 {
    const BLOCK: usize = 4;
    type Tile = [Lanes; 36];
    type Output = [Lanes; 16];
    const ZERO: Self::Tile = [[0.0; LANES]; 36];

    type Filter = [f32; 36];

    fn filter(g: &[f32]) -> Self::Filter {
        filter_transform(g, |[a, b, c]| {
            let (even, odd) = (a / 24.0 + c / 6.0, b / 12.0);
            [a / 4.0, -(a + b + c) / 6.0, -(a - b + c) / 6.0, even + odd, even - odd, c]
        })
    }

    #[inline(always)]
    fn input(d: &Self::Tile) -> Self::Tile {
        both_sides(d, f4_input)
    }

    #[inline(always)]
    fn output(m: &Self::Tile) -> Self::Output {
        both_sides(m, f4_output)
    }
}

/// F(4x4, 3x3)'s `Bᵀ` times a column of lanes.
#[inline(always)]
fn f4_input([d0, d1, d2, d3, d4, d5]: &[Lanes; 6]) -> [Lanes; 6] {
    let (t, u) = (sum([(1.0, d4), (-4.0, d2)]), sum([(1.0, d3), (-4.0, d1)]));
    let (v, w) = (sum([(1.0, d4), (-1.0, d2)]), sum([(1.0, d3), (-1.0, d1)]));
    [
        sum([(4.0, d0), (-5.0, d2), (1.0, d4)]),
        sum([(1.0, &t), (1.0, &u)]),
        sum([(1.0, &t), (-1.0, &u)]),
        sum([(1.0, &v), (2.0, &w)]),
        sum([(1.0, &v), (-2.0, &w)]),
        sum([(4.0, d1), (-5.0, d3), (1.0, d5)]),
    ]
}

/// F(4x4, 3x3)'s `Aᵀ` times a column of lanes.
#[inline(always)]
fn f4_output([m0, m1, m2, m3, m4, m5]: &[Lanes; 6]) -> [Lanes; 4] {
    let (a, b) = (sum([(1.0, m1), (1.0, m2)]), sum([(1.0, m1), (-1.0, m2)]));
    let (c, d) = (sum([(1.0, m3), (1.0, m4)]), sum([(1.0, m3), (-1.0, m4)]));
    [
        sum([(1.0, m0), (1.0, &a), (1.0, &c)]),
        sum([(1.0, &b), (2.0, &d)]),
        sum([(1.0, &a), (4.0, &c)]),
        sum([(1.0, &b), (8.0, &d), (1.0, m5)]),
    ]
}

convolution_op!(WinogradConv);

#[cfg(test)]
mod tests {
    use super::super::conv::{FastConv, Precision};
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
        // Even and odd sides, a band's worth of tiles and more (for both blocks), channels not a
        // multiple of 8, groups of tiles within a band of lines and across them, and batches
        // whose groups of tiles start in one image and end in the next.
        for (seed, (shape, out)) in [
            ([1, 3, 4, 4], 2),
            ([2, 6, 9, 7], 5),
            ([3, 10, 14, 14], 12),
            ([2, 16, 7, 7], 8),
            ([1, 64, 28, 28], 19),
            ([1, 64, 40, 30], 19),
            ([1, 20, 7, 7], 9),
            ([1, 4, 5, 33], 3),
        ]
        .into_iter()
        .enumerate()
        {
            let spec = same(shape[1], out);
            let weights = random(&[out, shape[1], 3, 3], 11 + seed as u32);
            let plain = Plain {
                weights: Tensor::from(weights).into_arc_tensor(),
                bias: random(&[out], 12).iter().copied().collect(),
                shape: [out, shape[1], 3, 3],
            };
            let input = random(&shape, seed as u32);
            for (relu, block) in
                [false, true].into_iter().flat_map(|relu| [(relu, Block::Two), (relu, Block::Four)])
            {
                let mut winograd = WinogradConv::new(spec.clone(), kernel, &plain, block).unwrap();
                winograd.relu = relu;
                let mut direct =
                    FastConv::new(spec.clone(), kernel, &plain, Precision::F32).unwrap();
                direct.relu = relu;
                let ours = winograd.write(&input.view(), None).unwrap();
                let expected = direct.write(&input.view(), None).unwrap();
                assert_eq!(ours.shape(), expected.shape());
                let ours = ours.to_plain_array_view::<f32>().unwrap();
                let expected = expected.to_plain_array_view::<f32>().unwrap();
                let scale = 100.0 * 100.0 * (shape[1] * 9) as f32;
                for (a, b) in ours.iter().zip(expected.iter()) {
                    assert!((a - b).abs() <= 1e-5 * scale, "{shape:?} {block:?}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn four_by_four_blocks_only_where_their_tiles_fill_a_panel() {
        for side in [56, 28] {
            assert_eq!(Block::for_input(1, side, side), Block::Four, "{side}");
        }
        for side in [14, 7, 1] {
            assert_eq!(Block::for_input(1, side, side), Block::Two, "{side}");
        }
        // A batch's tiles run as one sequence: two images of 14x14 fill a panel.
        assert_eq!(Block::for_input(2, 14, 14), Block::Four);
        assert_eq!(Block::for_input(2, 7, 7), Block::Two);
        assert_eq!(Block::for_input(8, 7, 7), Block::Four);
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
