//! What the convolutions at a lower precision share: their input as 32-bit words of several
//! channels each (int8: four 7-bit codes; bf16: two bf16 values), in planes padded as far as
//! the window reads ([`Planes`]); `B` as a product reads it, in panels of [`COLUMNS`] words or
//! where it lies ([`Words`]); the patches gathered into panels ([`gather`]); and the walk of a
//! convolution over a batch ([`convolve`]).
//!
//! **Layout.** The depth of the product runs over taps `(ky, kx)`, and within a tap over the
//! planes of words: group `(ky, kx, plane)`. A tap of a stride-1 window reads a contiguous run
//! of a plane's words for a line of output pixels. `B` is `groups x columns` words, in panels
//! of [`COLUMNS`] columns (each group's 16 words together), or read where it lies (a 1x1
//! convolution's planes).

#![allow(
    clippy::indexing_slicing,
    reason = "every slice is cut from the planes' and panels' lengths, which `Planes::len` and \
              `panels_len` give and the convolution allocates, and the window's geometry is \
              checked against the weights before it is read"
)]

use tract_onnx::prelude::tract_ndarray::ArrayViewD;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::PoolSpec;

use super::conv::geometry;
use super::gemm::Kernel;
use super::glue::{output_onto, Part, Scratch};
use super::window::Axis;

/// `(in, size, out, kernel, stride, pad)` of every convolution geometry GoogLeNet has, for the
/// lower precisions' tests: conv1 first (3 channels, stride 2, the signed image as its input;
/// the tests run it on a 56x56 crop, for time), then conv2's 1x1 and 3x3, and the Inception
/// modules' 1x1s, 3x3s and 5x5s at 28, 14 and 7 pixels (the channel counts of 3a, 4a and 5b;
/// the other modules repeat these geometries), each of a ReLU's output.
#[cfg(test)]
pub const GOOGLENET_LAYERS: [(usize, usize, usize, usize, usize, usize); 12] = [
    (3, 56, 64, 7, 2, 3),
    (64, 56, 64, 1, 1, 0),
    (64, 56, 192, 3, 1, 1),
    (192, 28, 96, 1, 1, 0),
    (96, 28, 128, 3, 1, 1),
    (16, 28, 32, 5, 1, 2),
    (480, 14, 208, 1, 1, 0),
    (96, 14, 208, 3, 1, 1),
    (16, 14, 48, 5, 1, 2),
    (832, 7, 384, 1, 1, 0),
    (192, 7, 384, 3, 1, 1),
    (48, 7, 128, 5, 1, 2),
];

/// `[rows, groups, columns]` of the products the lower precisions' kernels are tested on: rows
/// off the panel height, columns off the panel width, deep and shallow groups.
#[cfg(test)]
pub const BLOCKS: [[usize; 3]; 6] =
    [[4, 1, 16], [13, 37, 45], [1, 1, 1], [7, 432, 70], [64, 64, 196], [9, 3, 17]];

/// The bits of `values`, for comparing outputs exactly.
#[cfg(test)]
pub fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Group `group` of column `column` of a `groups`-deep `B` in panels ([`Words::Panels`]).
#[cfg(test)]
pub fn panel_word(panels: &[u32], groups: usize, group: usize, column: usize) -> u32 {
    panels[(column / COLUMNS * groups + group) * COLUMNS + column % COLUMNS]
}

/// `panels`, a `groups`-deep `B` of `columns` columns, written row-major into `lines`, a row
/// every `stride` words ([`Words::Rows`]); the words past each row's columns are left as they
/// are.
#[cfg(test)]
pub fn write_rows(
    panels: &[u32],
    [groups, columns]: [usize; 2],
    (lines, stride): (&mut [u32], usize),
) {
    for g in 0..groups {
        for j in 0..columns {
            lines[g * stride + j] = panel_word(panels, groups, g, j);
        }
    }
}

/// One image `input` convolved by [`convolve`] with `packed` on `kernel`, at a
/// [`GOOGLENET_LAYERS`] geometry, with `relu`: the output's values in order.
#[cfg(test)]
pub fn convolve_layer<P: Packing>(
    kernel: Kernel,
    packed: &P,
    (channels, _, out, k, stride, pad): (usize, usize, usize, usize, usize, usize),
    input: &tract_onnx::prelude::tract_ndarray::ArrayD<f32>,
    relu: bool,
) -> Vec<f32> {
    use tract_onnx::tract_core::ops::cnn::PaddingSpec;
    use tract_onnx::tract_core::ops::nn::DataFormat;
    let spec = PoolSpec::new(
        DataFormat::NCHW,
        tvec![k, k],
        PaddingSpec::Explicit(tvec![pad, pad], tvec![pad, pad]),
        None,
        Some(tvec![stride, stride]),
        channels,
        out,
    );
    let output = (relu, Part::whole(out));
    let got = convolve(&spec, kernel, packed, output, &input.view(), None).unwrap();
    got.to_plain_array_view::<f32>().unwrap().iter().copied().collect()
}

/// Columns of `B` per panel: a 512-bit vector of words, or two 256-bit ones.
pub const COLUMNS: usize = 16;

/// How many words the panels of `columns` columns of a `groups`-deep `B` take.
pub fn panels_len(groups: usize, columns: usize) -> usize {
    columns.div_ceil(COLUMNS) * COLUMNS * groups
}

/// `B` (groups x columns words) as a product reads it.
#[derive(Debug, Clone, Copy)]
pub enum Words<'a> {
    /// In panels: group `g` of column `j` at `(j / COLUMNS * groups + g) * COLUMNS + j % COLUMNS`.
    Panels(&'a [u32]),
    /// Row-major as it stands, group `g` every `stride` words: read in whole panels, so the
    /// words past the last column, up to its panel's end, must be there (any value).
    Rows(&'a [u32], usize),
}

impl Words<'_> {
    /// Where panel `index` starts, and how far apart its groups are.
    pub fn panel(self, groups: usize, index: usize) -> (usize, usize) {
        match self {
            Words::Panels(_) => (index * groups * COLUMNS, COLUMNS),
            Words::Rows(_, stride) => (index * COLUMNS, stride),
        }
    }

    /// All its words.
    pub fn slice(&self) -> &[u32] {
        match *self {
            Words::Panels(words) | Words::Rows(words, _) => words,
        }
    }

    /// Whether it holds every word a product over `groups` groups and `columns` columns reads.
    pub fn holds(self, groups: usize, columns: usize) -> bool {
        let (last, stride) = self.panel(groups, columns.div_ceil(COLUMNS).saturating_sub(1));
        self.slice().len() >= last + groups.saturating_sub(1) * stride + COLUMNS
    }
}

/// A convolution's weights as a product over words reads them: `rows x groups` words in
/// panels of `ROWS` rows (the last zero-padded), panel `p`'s group `g` the `ROWS` words at
/// `(p * groups + g) * ROWS`, one per row, a group being a tap's words of input channels. With
/// each row's bias, zero-padded the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights<const ROWS: usize> {
    /// Output channels.
    pub rows: usize,
    /// The depth in words: taps x planes.
    pub groups: usize,
    /// The panels, `rows` rounded up to `ROWS` of `groups` words each.
    pub words: Vec<u32>,
    /// One per row, and zeros for the padding rows.
    pub bias: Vec<f32>,
}

impl<const ROWS: usize> Weights<ROWS> {
    /// Packs `weights` (`out x in x kh x kw`, row-major, the shape `shape`) `N` channels a
    /// word, `word(row, values)` making a row's word from its `N` weights of a tap (zeros past
    /// the last channel), and keeps `bias` (one per output channel).
    pub fn new<const N: usize>(
        weights: &[f32],
        bias: &[f32],
        shape: [usize; 4],
        mut word: impl FnMut(usize, [f32; N]) -> u32,
    ) -> Weights<ROWS> {
        let [rows, channels, kh, kw] = shape;
        let planes = channels.div_ceil(N);
        let groups = kh * kw * planes;
        let padded = rows.next_multiple_of(ROWS);
        let mut words = vec![0u32; padded * groups];
        let depth = channels * kh * kw;
        for (r, line) in weights.chunks_exact(depth.max(1)).take(rows).enumerate() {
            let (panel, lane) = (r / ROWS, r % ROWS);
            let sources = (0..kh * kw).flat_map(|tap| (0..planes).map(move |plane| (tap, plane)));
            for ((tap, plane), g) in sources.zip(0..) {
                let values = std::array::from_fn(|lane| {
                    let c = plane * N + lane;
                    if c < channels {
                        line[c * kh * kw + tap]
                    } else {
                        0.0
                    }
                });
                words[(panel * groups + g) * ROWS + lane] = word(r, values);
            }
        }
        let mut padded_bias = vec![0f32; padded];
        padded_bias[..rows.min(bias.len())].copy_from_slice(&bias[..rows.min(bias.len())]);
        Weights { rows, groups, words, bias: padded_bias }
    }

    /// Panel `panel`'s words.
    pub fn panel(&self, panel: usize) -> &[u32] {
        &self.words[panel * self.groups * ROWS..][..self.groups * ROWS]
    }
}

/// The tiles of `C = A B` for the first `columns` columns of `b`, where `A` has `rows` rows in
/// panels of `ROWS` and is `groups` words deep, each tile up to `PANELS` panels of columns
/// wide. For each row panel `p`, `panel(p)` gives the tile's runner, which then runs
/// `(words, stride, apart), part, [ldc, rows, width]` for each run of up to `PANELS` panels of
/// columns: the panels' `groups` runs of [`COLUMNS`] words each, `stride` apart, the panels
/// `apart` words apart, from the first; and `part` the tile's `rows` lines of `C` (`ldc`
/// apart, `width` used). `C` holds a row per row of `A`, `ldc` floats apart, of at least
/// `columns` values.
pub fn tiles<const ROWS: usize, const PANELS: usize, T>(
    [rows, groups]: [usize; 2],
    b: Words,
    columns: usize,
    (c, ldc): (&mut [f32], usize),
    mut panel: impl FnMut(usize) -> T,
) where
    T: FnMut((&[u32], usize, usize), &mut [f32], [usize; 3]),
{
    if rows == 0 || columns == 0 || groups == 0 {
        return;
    }
    assert!(
        b.holds(groups, columns) && ldc >= columns && c.len() >= (rows - 1) * ldc + columns,
        "product of mismatched shapes"
    );
    let apart = b.panel(groups, 1).0;
    for index in 0..rows.div_ceil(ROWS) {
        let first_row = index * ROWS;
        let height = ROWS.min(rows - first_row);
        let mut tile = panel(index);
        for column in (0..columns).step_by(PANELS * COLUMNS) {
            let (start, stride) = b.panel(groups, column / COLUMNS);
            let width = (PANELS * COLUMNS).min(columns - column);
            let reach = (width.div_ceil(COLUMNS) - 1) * apart + (groups - 1) * stride + COLUMNS;
            let words = &b.slice()[start..][..reach];
            let part = &mut c[first_row * ldc + column..][..(height - 1) * ldc + width];
            tile((words, stride, apart), part, [ldc, height, width]);
        }
    }
}

/// An image's planes of words: each plane `N` channels' values packed a word a pixel, its lines
/// padded as far as the window reads, and a panel of zeros past the last plane.
#[derive(Debug, Clone, Copy)]
pub struct Planes {
    /// Padded lines per plane.
    pub lines: usize,
    /// Words per padded line.
    pub line: usize,
    /// Words per plane: `lines x line`, rounded up to whole panels.
    pub plane: usize,
}

impl Planes {
    /// The padding of `rows` and `columns` as far as the window reads.
    pub fn new(rows: &Axis, columns: &Axis) -> Planes {
        let (lines, line) = (rows.reach(), columns.reach());
        let plane = lines.saturating_mul(line).next_multiple_of(COLUMNS);
        Planes { lines, line, plane }
    }

    /// Words for `planes` planes, and a panel past them.
    pub fn len(&self, planes: usize) -> usize {
        planes.checked_mul(self.plane).and_then(|n| n.checked_add(COLUMNS)).unwrap_or(usize::MAX)
    }

    /// Packs `image` (`channels x H x W` floats) into `out` ([`Planes::len`] words for
    /// `channels` over `N` planes) with its padding zero: `pack(words, values)` writes a run of
    /// words from the `N` channels' values at those pixels, the channels past the last zeros.
    /// Inlined, so that `pack`'s loop is compiled with its caller's CPU features.
    #[inline(always)]
    pub fn pack<const N: usize>(
        &self,
        image: &[f32],
        channels: usize,
        [rows, columns]: [&Axis; 2],
        out: &mut [u32],
        mut pack: impl FnMut(&mut [u32], [&[f32]; N]),
    ) {
        let area = rows.input * columns.input;
        // Unpadded planes hold their lines back to back, as the input does: each plane is one
        // run, and only the words past it need zeros.
        let unpadded = [rows.pad_before, columns.pad_before] == [0, 0]
            && [self.lines, self.line] == [rows.input, columns.input];
        let (runs, run) = if unpadded {
            (1, area)
        } else {
            out.fill(0);
            let lines = rows.input.min(self.lines.saturating_sub(rows.pad_before));
            (lines, columns.input.min(self.line.saturating_sub(columns.pad_before)))
        };
        // The channels past the last, in the last word of a count not a multiple of `N`: only
        // then is a plane of zeros made (this runs for every image at every such layer).
        let zeros = vec![0f32; if channels.is_multiple_of(N) { 0 } else { area }];
        let planes = channels.div_ceil(N);
        for (index, plane) in out.chunks_exact_mut(self.plane).take(planes).enumerate() {
            let inputs: [&[f32]; N] = std::array::from_fn(|lane| {
                let c = index * N + lane;
                if c < channels {
                    &image[c * area..][..area]
                } else {
                    &zeros
                }
            });
            for y in 0..runs {
                let to = &mut plane[(y + rows.pad_before) * self.line + columns.pad_before..];
                pack(&mut to[..run], inputs.map(|input| &input[y * columns.input..][..run]));
            }
            if unpadded {
                plane[area..].fill(0);
            }
        }
        if unpadded {
            out[planes * self.plane..].fill(0);
        }
    }
}

/// Gathers the patches into the panels of `B`: group `(ky, kx, plane)` of output pixel `(y, x)`
/// is the word at padded `(y * stride + ky, x * stride + kx)` of that plane. Panel by panel,
/// each group's (up to) 16 pixels copied as runs along their output lines, so that the panels
/// are written in order.
pub fn gather(
    words: &[u32],
    planes: &Planes,
    [rows, columns]: [&Axis; 2],
    [kh, kw]: [usize; 2],
    groups: usize,
    panels: &mut [u32],
) {
    let count_planes = groups / (kh * kw);
    let out_width = columns.output;
    let pixels = rows.output * out_width;
    for (index, panel) in panels.chunks_exact_mut(groups * COLUMNS).enumerate() {
        let first = index * COLUMNS;
        let count = COLUMNS.min(pixels.saturating_sub(first));
        let taps = (0..kh).flat_map(|ky| (0..kw).map(move |kx| (ky, kx)));
        let sources = taps.flat_map(|tap| (0..count_planes).map(move |plane| (tap, plane)));
        for (out, ((ky, kx), plane)) in panel.chunks_exact_mut(COLUMNS).zip(sources) {
            let plane = &words[plane * planes.plane..][..planes.plane];
            let mut done = 0;
            while done < count {
                let (y, x) = ((first + done) / out_width, (first + done) % out_width);
                let run = (out_width - x).min(count - done);
                let line = &plane[(y * rows.stride + ky) * planes.line + kx..];
                if columns.stride == 1 && run == COLUMNS {
                    // A whole panel's run: a copy of known length, inlined.
                    out.copy_from_slice(&line[x..][..COLUMNS]);
                } else if columns.stride == 1 {
                    out[done..][..run].copy_from_slice(&line[x..][..run]);
                } else {
                    for (i, word) in out[done..][..run].iter_mut().enumerate() {
                        *word = line[(x + i) * columns.stride];
                    }
                }
                done += run;
            }
        }
    }
}

/// How a convolution at a lower precision packs its input and multiplies.
pub trait Packing {
    /// What packing an image gives its product besides the words (int8: the input's scale).
    type Scale: Copy;

    /// Input channels per word.
    const CHANNELS: usize;

    /// Output channels: the rows of the weights.
    fn rows(&self) -> usize;

    /// Depth of the product, in words: taps x planes.
    fn groups(&self) -> usize;

    /// Packs `image` (`channels x H x W`) into `out` as [`Planes::pack`] lays it out: called
    /// through [`fill`], which compiles it for AVX2 where the CPU has it, so it must be
    /// `#[inline(always)]`.
    fn fill(
        planes: &Planes,
        image: &[f32],
        channels: usize,
        axes: [&Axis; 2],
        out: &mut [u32],
    ) -> Self::Scale;

    /// `C` (a row per row of the weights, `columns` apart) from the first `columns` columns of
    /// `b`, with the bias, and with `relu` every value not above zero stored as zero.
    #[allow(clippy::too_many_arguments, reason = "the product's operands and its output")]
    fn multiply(
        &self,
        kernel: Kernel,
        b: Words,
        columns: usize,
        scale: Self::Scale,
        c: &mut [f32],
        relu: bool,
    );
}

/// [`Packing::fill`], compiled for AVX2 where the CPU has it.
pub fn fill<P: Packing>(
    planes: &Planes,
    image: &[f32],
    channels: usize,
    axes: [&Axis; 2],
    out: &mut [u32],
) -> P::Scale {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, as checked just above.
        return unsafe { fill_avx2::<P>(planes, image, channels, axes, out) };
    }
    P::fill(planes, image, channels, axes, out)
}

/// [`Packing::fill`] compiled for AVX2.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_avx2<P: Packing>(
    planes: &Planes,
    image: &[f32],
    channels: usize,
    axes: [&Axis; 2],
    out: &mut [u32],
) -> P::Scale {
    P::fill(planes, image, channels, axes, out)
}

/// Convolves `input` (N, C, H, W) with `weights` into its `part` of `handed` or of a new
/// tensor; the output shape's batch and spatial size come from `spec`.
pub fn convolve<P: Packing>(
    spec: &PoolSpec,
    kernel: Kernel,
    weights: &P,
    (relu, part): (bool, Part),
    input: &ArrayViewD<f32>,
    handed: Option<Tensor>,
) -> TractResult<Tensor> {
    let shape = input.shape();
    let ([rows, columns], pixels) = geometry(spec, shape)?;
    let input = input.as_standard_layout();
    let data = input.as_slice().context("a standard-layout array is contiguous")?;
    let [kh, kw] = [spec.kernel_shape[0], spec.kernel_shape[1]];
    let planes = Planes::new(&rows, &columns);
    let mut words = Scratch::<u32>::new(planes.len(shape[1].div_ceil(P::CHANNELS)))?;
    // A 1x1 window of stride 1 over an unpadded input reads the planes as they stand.
    let pointwise = [kh, kw] == [1, 1]
        && planes.lines * planes.line == pixels
        && rows.stride == 1
        && columns.stride == 1;
    let groups = weights.groups();
    let mut panels = Scratch::<u32>::new(if pointwise { 0 } else { panels_len(groups, pixels) })?;
    let out_shape = [shape[0], part.of, rows.output, columns.output];
    output_onto(&out_shape, handed, (part, weights.rows(), pixels), |output| {
        let images = data.chunks_exact(shape[1] * shape[2] * shape[3]);
        for (image, out) in images.zip(part.images(output, weights.rows(), pixels)) {
            let scale = fill::<P>(&planes, image, shape[1], [&rows, &columns], &mut words);
            let b = if pointwise {
                Words::Rows(&words, planes.plane)
            } else {
                gather(&words, &planes, [&rows, &columns], [kh, kw], groups, &mut panels);
                Words::Panels(&panels)
            };
            weights.multiply(kernel, b, pixels, scale, out, relu);
        }
        Ok(())
    })
}
