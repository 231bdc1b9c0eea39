//! The int8 convolution: the weights as signed bytes per output channel, the input as unsigned
//! 7-bit codes per image, their products summed exactly in 32-bit integers, and each sum scaled
//! back to f32 with the bias added.
//!
//! **Numbers.** A row (output channel) `r` of weights is scaled by `w[r] = max |weight| / 127`
//! and rounded to the nearest integer in -127..=127. An image's input to the convolution, which
//! must not be negative (it follows a ReLU), is scaled by `x = max value / 127` and rounded to
//! 0..=127 (7 bits: see [`CODE_MAX`]). Output `(r, p) = bias[r] + (w[r] * x) * sum`, with
//! `sum` the exact integer dot product, converted to f32 and multiplied and added in one fused
//! step. Every kernel sums the same integers and does the same float steps, so every kernel
//! gives the same bits as the plain-Rust product its tests hold it to.
//!
//! **Layout** ([`super::words`]). Within a tap, the input channels go in groups of four: one
//! 32-bit word holds the four channels' bytes (the first channel in the lowest byte). The
//! weights are packed in panels of [`ROWS`] rows, each group's four words (one per row)
//! together.
//!
//! **Kernel.** AVX2: `vpmaddubsw` multiplies the input's unsigned bytes by the weights' signed
//! bytes and adds adjacent pairs into 16-bit sums, and `vpmaddwd` by ones adds those pairs into
//! 32-bit sums. A pair sum reaches at most `2 x 127 x 127 = 32,258`, inside 16 bits: that is
//! why the input has 7 bits, not 8 (with 8, `2 x 255 x 127` would saturate). The pair sums of
//! several groups are added in 16 bits before they are widened, over runs of groups ([spans])
//! the packing chooses from the weights so that no 16-bit sum can leave 16 bits: on a CPU with
//! one vector multiplier, widening every group would cost as many multiplications as the
//! products themselves.

#![allow(
    clippy::indexing_slicing,
    reason = "every slice is cut from lengths `multiply` checks against the panels' shapes first, \
              and the window's geometry is checked against the weights before it is read"
)]

use std::fmt;

use super::gemm::Kernel;
use super::window::Axis;
use super::words::{self, Packing, Planes, Weights, Words, COLUMNS};

/// Rows of the weights per packed panel, and of the tile a kernel keeps in registers.
pub const ROWS: usize = 4;
/// Input channels per word.
const QUAD: usize = 4;
/// The largest code of the input: 7 bits, so that `vpmaddubsw` cannot saturate.
pub const CODE_MAX: f32 = 127.0;
/// The largest weight code.
const WEIGHT_MAX: f32 = 127.0;

/// The weights of a convolution as signed bytes, `rows x groups` words in panels of [`ROWS`]
/// rows (the last zero-padded): panel `p`'s group `g` is the [`ROWS`] words at
/// `(p * groups + g) * ROWS`, one per row. With them each row's scale and bias, and each
/// panel's [spans](spans).
#[derive(Clone, PartialEq)]
pub struct QuantWeights {
    panels: Weights<ROWS>,
    scale: Vec<f32>,
    /// Every panel's spans, one after another; panel `p`'s are `spans[starts[p]..starts[p + 1]]`.
    spans: Vec<u8>,
    starts: Vec<usize>,
}

impl fmt::Debug for QuantWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QuantWeights({} x {} words)", self.panels.rows, self.panels.groups)
    }
}

impl QuantWeights {
    /// Quantises and packs `weights` (`out x in x kh x kw`, row-major, the shape `shape`) and
    /// keeps `bias` (one per output channel).
    pub fn new(weights: &[f32], bias: &[f32], shape: [usize; 4]) -> QuantWeights {
        let [rows, channels, kh, kw] = shape;
        let depth = channels * kh * kw;
        let mut scale = vec![0f32; rows.next_multiple_of(ROWS)];
        let inverse: Vec<f32> = (weights.chunks_exact(depth.max(1)).take(rows).zip(&mut scale))
            .map(|(line, scale)| {
                let largest = line.iter().fold(0f32, |m, &w| m.max(w.abs()));
                *scale = largest / WEIGHT_MAX;
                if largest > 0.0 {
                    WEIGHT_MAX / largest
                } else {
                    0.0
                }
            })
            .collect();
        let panels = Weights::new(weights, bias, shape, |row, values: [f32; QUAD]| {
            let code = |w: f32| u32::from(nearest(w * inverse[row]) as i8 as u8);
            values.iter().enumerate().fold(0, |word, (byte, &w)| word | code(w) << (8 * byte))
        });
        let (mut all, mut starts) = (Vec::new(), vec![0]);
        for panel in panels.words.chunks_exact(panels.groups * ROWS) {
            let cut = spans(panel);
            // The kernels read as many groups as the spans add up to.
            assert_eq!(cut.iter().map(|&span| usize::from(span)).sum::<usize>(), panels.groups);
            all.extend(cut);
            starts.push(all.len());
        }
        QuantWeights { panels, scale, spans: all, starts }
    }

    /// Panel `panel`'s words and spans.
    fn panel(&self, panel: usize) -> (&[u32], &[u8]) {
        (self.panels.panel(panel), &self.spans[self.starts[panel]..self.starts[panel + 1]])
    }
}

/// A panel's groups cut into runs (spans) over which a 16-bit sum of products cannot leave
/// 16 bits, whatever the input codes: a kernel may add a span's pair sums (`vpmaddubsw`) in 16
/// bits and widen them to 32 once per span, not once per group. Each of a panel's 16-bit sums
/// (a row, and the first or the second pair of bytes of a word) adds codes of at most
/// [`CODE_MAX`] times its weights, so over a span it stays within `CODE_MAX x` (the sum of
/// those weights that are positive) and `CODE_MAX x` (the sum of those that are negative); a
/// span is cut where one more group would take either outside `i16`, or at 255 groups. One
/// group always fits: `2 x 127 x 127` is inside `i16`. The sums are exact either way, so spans
/// change how fast a kernel runs, never what it gives.
fn spans(panel: &[u32]) -> Vec<u8> {
    let mut spans = Vec::new();
    let (mut length, mut reach) = (0u8, Reach::default());
    for group in panel.chunks_exact(ROWS) {
        let grown = reach.with(group);
        reach = if length == u8::MAX || (length > 0 && !grown.fits()) {
            spans.push(length);
            length = 0;
            Reach::default().with(group)
        } else {
            grown
        };
        length += 1;
    }
    if length > 0 {
        spans.push(length);
    }
    spans
}

/// How far each 16-bit sum of a panel's span can reach: per row, the highest and the lowest
/// value of its first and of its second pair of bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Reach([[[i32; 2]; 2]; ROWS]);

impl Reach {
    /// The reach once `group` (a word per row) is added.
    fn with(mut self, group: &[u32]) -> Reach {
        for (row, &word) in self.0.iter_mut().zip(group) {
            for (byte, weight) in word.to_le_bytes().into_iter().enumerate() {
                let product = i32::from(weight as i8) * CODE_MAX as i32;
                let [high, low] = &mut row[byte / 2];
                *high += product.max(0);
                *low += product.min(0);
            }
        }
        self
    }

    fn fits(&self) -> bool {
        let range = i32::from(i16::MIN)..=i32::from(i16::MAX);
        self.0.iter().flatten().flatten().all(|sum| range.contains(sum))
    }
}

/// `value` (at most 2^22 in size) rounded to the nearest integer, ties to even, by adding and
/// taking away 1.5 x 2^23: the sum keeps no fraction, and the rounding is the float addition's
/// own (a call to a rounding function cost about 10 ms of a load).
#[inline(always)]
fn nearest(value: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (value + MAGIC) - MAGIC
}

/// `C = bias + (w * scale) * (A B)` for the first `columns` columns of `B`, where `scale` is
/// the input's scale. `C` holds a row per row of `a`, `ldc` floats apart, of at least `columns`
/// values; what they held is not read. With `relu`, every value not above zero is stored as
/// zero.
#[allow(clippy::too_many_arguments, reason = "the product's operands and its output's layout")]
pub fn multiply(
    kernel: Kernel,
    a: &QuantWeights,
    b: Words,
    columns: usize,
    input_scale: f32,
    c: &mut [f32],
    ldc: usize,
    relu: bool,
) {
    let scales: Vec<f32> = a.scale.iter().map(|&w| w * input_scale).collect();
    let shape = [a.panels.rows, a.panels.groups];
    words::tiles::<ROWS, 1, _>(shape, b, columns, (c, ldc), |panel| {
        let first_row = panel * ROWS;
        let sums = Sums {
            scale: &scales[first_row..][..ROWS],
            bias: &a.panels.bias[first_row..][..ROWS],
            relu,
        };
        let weights = a.panel(panel);
        move |(b, stride, _), tile, shape| run_tile(kernel, weights, (b, stride), tile, shape, sums)
    });
}

/// How a tile's integer sums become its floats: each row's scale and bias, and the ReLU.
#[derive(Debug, Clone, Copy)]
struct Sums<'a> {
    scale: &'a [f32],
    bias: &'a [f32],
    relu: bool,
}

#[cfg(test)]
impl Sums<'_> {
    /// The float of `sum` in row `row`: converted, multiplied by the row's scale and added to
    /// its bias in one rounding, and cut at zero with a ReLU (a value not above zero becomes
    /// +0, as `vmaxps` with zero second makes it).
    #[inline(always)]
    fn value(self, row: usize, sum: i32) -> f32 {
        let value = (sum as f32).mul_add(self.scale[row], self.bias[row]);
        match value.partial_cmp(&0.0) {
            Some(std::cmp::Ordering::Greater) => value,
            _ if self.relu => 0.0,
            _ => value,
        }
    }
}

/// One tile: `rows` lines of `tile` (`ldc` apart, `width` used) from `a` (`groups x ROWS`
/// words and their spans) and `b` (`groups` runs of [`COLUMNS`] words, `stride` apart).
fn run_tile(
    kernel: Kernel,
    a: (&[u32], &[u8]),
    b: (&[u32], usize),
    tile: &mut [f32],
    shape: [usize; 3],
    sums: Sums,
) {
    let [ldc, rows, width] = shape;
    debug_assert!(rows <= ROWS && width <= COLUMNS && tile.len() == (rows - 1) * ldc + width);
    debug_assert!(
        a.0.len().is_multiple_of(ROWS)
            && a.1.iter().map(|&span| usize::from(span)).sum::<usize>() == a.0.len() / ROWS
            && b.0.len() == (a.0.len() / ROWS - 1) * b.1 + COLUMNS
    );
    // SAFETY: a `Kernel` is only made once the CPU has been seen to have AVX2 and FMA
    // (`Kernel::available`: the AVX-512 kernel's CPU has them too), so every kernel runs this
    // one tile; and `multiply` cut `a`, `b` and `tile` to the lengths the tile reads and writes
    // (checked above in debug builds).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        let _ = kernel;
        x86::tile_avx2(a, b, tile, shape, sums)
    };
    #[cfg(not(target_arch = "x86_64"))]
    kernel.unreachable();
}

/// The exact dot product of two words' four bytes, the first unsigned, the second signed.
#[cfg(test)]
#[inline(always)]
fn dot(input: u32, weight: u32) -> i32 {
    (0..QUAD)
        .map(|byte| {
            let x = i32::from((input >> (8 * byte)) as u8);
            let w = i32::from((weight >> (8 * byte)) as u8 as i8);
            x * w
        })
        .sum()
}

/// The product as the definition reads, for the tests: `C` (rows x columns, row-major) from
/// `a`'s words and `b` in panels, each sum an exact integer dot product over the whole depth.
#[cfg(test)]
pub fn reference(
    a: &QuantWeights,
    b: &[u32],
    columns: usize,
    input_scale: f32,
    relu: bool,
) -> Vec<f32> {
    let mut c = vec![0f32; a.panels.rows * columns];
    for r in 0..a.panels.rows {
        let (panel, lane) = (r / ROWS, r % ROWS);
        let sums = Sums { scale: &[a.scale[r] * input_scale], bias: &a.panels.bias[r..=r], relu };
        for j in 0..columns {
            let sum = (0..a.panels.groups)
                .map(|g| {
                    let word = words::panel_word(b, a.panels.groups, g, j);
                    dot(word, a.panels.words[(panel * a.panels.groups + g) * ROWS + lane])
                })
                .sum();
            c[r * columns + j] = sums.value(0, sum);
        }
    }
    c
}

/// The largest of `values`, and 0 for none or all negative: kept in 16 lanes, so that the loop
/// becomes vector maxima.
#[inline(always)]
fn largest(values: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = values.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            *lane = if value > *lane { value } else { *lane };
        }
    }
    lanes.iter().chain(rest).fold(0f32, |m, &v| if v > m { v } else { m })
}

/// `value` scaled by `inverse` and rounded to the nearest code in `0..=CODE_MAX`, ties to even:
/// added to 2^23, a float in that range keeps the integer in its low mantissa bits, which
/// compiles to vector adds where a call to a rounding function would not.
#[inline(always)]
fn code(value: f32, inverse: f32) -> u32 {
    const SHIFT: f32 = 8_388_608.0;
    let scaled = (value * inverse).clamp(0.0, CODE_MAX);
    (scaled + SHIFT).to_bits() - SHIFT.to_bits()
}

impl Packing for QuantWeights {
    type Scale = f32;
    const CHANNELS: usize = QUAD;

    fn rows(&self) -> usize {
        self.panels.rows
    }

    fn groups(&self) -> usize {
        self.panels.groups
    }

    /// Quantises `image` (`channels x H x W` floats, none negative) into `out` (planes of
    /// words of four channels, [`Planes::len`] words, its padding zero), and returns the scale:
    /// the largest value over [`CODE_MAX`]. In loops the compiler turns into vector code: the
    /// largest value in 16 lanes, then each word from its four channels.
    #[inline(always)]
    fn fill(
        planes: &Planes,
        image: &[f32],
        channels: usize,
        axes: [&Axis; 2],
        out: &mut [u32],
    ) -> f32 {
        let largest = largest(image);
        let inverse = if largest > 0.0 { CODE_MAX / largest } else { 0.0 };
        planes.pack(image, channels, axes, out, |to, [a, b, c, d]: [&[f32]; QUAD]| {
            let values = a.iter().zip(b).zip(c).zip(d);
            for (word, (((&a, &b), &c), &d)) in to.iter_mut().zip(values) {
                *word = code(a, inverse)
                    | code(b, inverse) << 8
                    | code(c, inverse) << 16
                    | code(d, inverse) << 24;
            }
        });
        largest / CODE_MAX
    }

    fn multiply(
        &self,
        kernel: Kernel,
        b: Words,
        columns: usize,
        scale: f32,
        c: &mut [f32],
        relu: bool,
    ) {
        multiply(kernel, self, b, columns, scale, c, columns, relu);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The AVX2 tile.

    use std::arch::x86_64::*;

    use super::super::gemm::Vector;
    use super::{Sums, COLUMNS, ROWS};

    /// `rows` lines of `tile` from `a` (`groups x ROWS` words, and spans that add up to
    /// `groups`) and `b` (`groups` runs of [`COLUMNS`] words, `stride` apart), a half of 8
    /// columns at a time: [`ROWS`] x 8 sums in 32 bits, and as many in 16 bits over each span.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `a.len()` is a multiple of [`ROWS`], `groups = a.len() / ROWS`
    /// is at least 1, the spans add up to `groups`, `b.len() >= (groups - 1) * stride +
    /// COLUMNS`, `rows <= ROWS`, `width <= COLUMNS` and `tile.len() >= (rows - 1) * ldc +
    /// width`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_avx2(
        (a, spans): (&[u32], &[u8]),
        (b, stride): (&[u32], usize),
        tile: &mut [f32],
        [ldc, rows, width]: [usize; 3],
        sums: Sums,
    ) {
        let ones = _mm256_set1_epi16(1);
        for half in 0..COLUMNS / 8 {
            let count = width.saturating_sub(half * 8).min(8);
            if count == 0 {
                break;
            }
            let mut acc = [_mm256_setzero_si256(); ROWS];
            let mut weights = a.as_ptr();
            let mut column = b.as_ptr().wrapping_add(half * 8);
            for &span in spans {
                let mut pairs = [_mm256_setzero_si256(); ROWS];
                let mut step = |pairs: &mut [__m256i; ROWS]| {
                    // SAFETY: the spans add up to `groups` (the contract, which
                    // `QuantWeights::new` asserts), so this is one of the `groups` groups: its `ROWS` weights lie in `a`, and its run of `COLUMNS` words,
                    // this half's 8 of them, in `b` (the contract); an unaligned load.
                    let words = unsafe { _mm256_loadu_si256(column.cast()) };
                    for (row, pair) in pairs.iter_mut().enumerate() {
                        // SAFETY: as above, `row < ROWS`.
                        let weight = unsafe { *weights.add(row) };
                        let products =
                            _mm256_maddubs_epi16(words, _mm256_set1_epi32(weight as i32));
                        // Wrapping adds, exact: a span keeps every 16-bit sum inside 16 bits.
                        *pair = _mm256_add_epi16(*pair, products);
                    }
                    weights = weights.wrapping_add(ROWS);
                    column = column.wrapping_add(stride);
                };
                for _ in 0..span / 2 {
                    step(&mut pairs);
                    step(&mut pairs);
                }
                if span % 2 == 1 {
                    step(&mut pairs);
                }
                for (sum, &pair) in acc.iter_mut().zip(&pairs) {
                    *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(pair, ones));
                }
            }
            for (row, &sum) in acc.iter().enumerate().take(rows) {
                let mut value = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(sum),
                    _mm256_set1_ps(sums.scale[row]),
                    _mm256_set1_ps(sums.bias[row]),
                );
                if sums.relu {
                    value = _mm256_max_ps(value, _mm256_setzero_ps());
                }
                let part = &mut tile[row * ldc + half * 8..][..count];
                // SAFETY: the CPU has AVX2 (the contract), and `part` holds `count` floats, at
                // most 8.
                unsafe { value.store_first(part.as_mut_ptr(), count) };
            }
        }
    }

    const _: () = assert!(COLUMNS.is_multiple_of(8), "the tile's columns are vectors of 8");
}

#[cfg(test)]
mod tests {
    use super::super::glue::random;
    use super::super::words::{bits, convolve_layer, panels_len, write_rows};
    use super::super::words::{BLOCKS, GOOGLENET_LAYERS};
    use super::*;
    use tract_onnx::prelude::tract_ndarray::ArrayD;

    /// Reproducible words whose four bytes are input codes, 0..=127.
    fn codes(len: usize, seed: u32) -> Vec<u32> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                state & 0x7f7f_7f7f
            })
            .collect()
    }

    fn floats(shape: &[usize], seed: u32) -> Vec<f32> {
        random(shape, seed).into_iter().collect()
    }

    /// A maker of reproducible weights of a shape from a seed.
    type Weights = fn(&[usize], u32) -> Vec<f32>;

    /// Weights as trained ones lie, most far below their row's largest: fifth powers of uniform
    /// values, so that spans run long (uniform weights keep them at a group or two).
    fn trained(shape: &[usize], seed: u32) -> Vec<f32> {
        random(shape, seed).into_iter().map(|w| w.powi(5)).collect()
    }

    #[test]
    fn every_kernel_matches_the_reference_bit_for_bit_on_random_blocks() {
        // [`BLOCKS`], with codes and weights at their extremes (the random words reach 127, the
        // weights' largest is 127 by construction); short spans and long.
        let weights: [Weights; 2] = [floats, trained];
        for kernel in Kernel::available() {
            let cases = BLOCKS.into_iter().enumerate().flat_map(|s| weights.map(|w| (s, w)));
            for ((seed, [rows, groups, columns]), weights) in cases {
                let seed = seed as u32;
                let weights = weights(&[rows, groups * QUAD], seed);
                let bias = floats(&[rows], seed + 1);
                let packed = QuantWeights::new(&weights, &bias, [rows, groups * QUAD, 1, 1]);
                let b = codes(panels_len(groups, columns), seed + 2);
                // The same `B` row-major, its rows 5 words longer than the whole panels.
                let stride = columns.next_multiple_of(COLUMNS) + 5;
                let mut lines = vec![0x7f7f_7f7f; groups * stride];
                write_rows(&b, [groups, columns], (&mut lines, stride));
                for relu in [false, true] {
                    let expected = reference(&packed, &b, columns, 0.03, relu);
                    for b in [Words::Panels(&b), Words::Rows(&lines, stride)] {
                        let mut out = vec![f32::NAN; rows * columns];
                        multiply(kernel, &packed, b, columns, 0.03, &mut out, columns, relu);
                        assert_eq!(
                            bits(&out),
                            bits(&expected),
                            "{kernel:?} {rows}x{groups}x{columns}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn weights_are_scaled_per_row_to_127_and_packed_by_tap_then_channel_quad() {
        // 2 rows, 5 channels (two quads, the second padded), 1x2 taps.
        let mut weights = vec![0f32; 2 * 5 * 2];
        weights[0] = 2.0; // row 0, channel 0, tap 0: the row's largest
        weights[4 * 2 + 1] = -1.0; // row 0, channel 4, tap 1
        weights[10 + 3 * 2] = 0.5; // row 1, channel 3, tap 0: the row's largest
        let packed = QuantWeights::new(&weights, &[1.0, 2.0], [2, 5, 1, 2]);
        assert_eq!(packed.panels.groups, 4);
        assert_eq!(packed.scale[..2], [2.0 / 127.0, 0.5 / 127.0]);
        let word = |g: usize, row: usize| packed.panels.words[g * ROWS + row];
        assert_eq!(word(0, 0), 127, "tap 0, quad 0: channel 0 in the lowest byte");
        assert_eq!(word(0, 1), 127 << 24, "channel 3 in the highest byte");
        // -1.0 / (2 / 127) = -63.5, to even: -64.
        assert_eq!(word(3, 0), u32::from((-64i8) as u8), "tap 1, quad 1: channel 4");
        assert_eq!(packed.panels.words.len(), ROWS * 4, "rows padded to a panel");
    }

    #[test]
    fn spans_keep_every_sixteen_bit_sum_inside_and_end_only_where_the_next_group_breaks_out() {
        for (weights, seed) in [floats(&[8, 400], 1), trained(&[8, 400], 2)].into_iter().zip(0..) {
            let packed = QuantWeights::new(&weights, &[0.0; 8], [8, 400, 1, 1]);
            for p in 0..2 {
                let (words, spans) = packed.panel(p);
                let mut groups = words.chunks_exact(ROWS);
                for (i, &span) in spans.iter().enumerate() {
                    let reach =
                        groups.by_ref().take(span.into()).fold(Reach::default(), Reach::with);
                    assert!(reach.fits(), "seed {seed} panel {p} span {i}");
                    if let Some(next) = groups.clone().next() {
                        assert!(!reach.with(next).fits() || span == u8::MAX, "span {i} cut early");
                    }
                }
                assert!(groups.next().is_none(), "the spans cover the groups");
            }
            let mean = packed.panels.groups as f32 * 2.0 / packed.spans.len() as f32;
            let lengths = if seed == 0 { 1.0..2.0 } else { 3.0..40.0 };
            assert!(lengths.contains(&mean), "seed {seed}: mean span {mean}");
        }
        // The extremes: every weight 127 (one group a span), every weight 0 (255 groups).
        let full = QuantWeights::new(&[1.0; 4 * 8], &[0.0; 4], [4, 8, 1, 1]);
        assert_eq!(full.panel(0).1, &[1, 1]);
        let mut zero = vec![0f32; 4 * 4 * 300];
        zero[0] = 1.0;
        let zero = QuantWeights::new(&zero, &[0.0; 4], [4, 4 * 300, 1, 1]);
        assert_eq!(zero.panel(0).1, &[255, 45]);
    }

    #[test]
    fn codes_round_to_nearest_even_and_input_codes_stop_at_127() {
        let inverse = 1.0;
        let cases = [(0.0, 0), (0.5, 0), (1.5, 2), (2.5, 2), (126.6, 127), (400.0, 127), (-3.0, 0)];
        for (value, expected) in cases {
            assert_eq!(code(value, inverse), expected, "{value}");
        }
        for (value, expected) in
            [(0.5, 0.0), (1.5, 2.0), (-2.5, -2.0), (-126.6, -127.0), (3.2, 3.0)]
        {
            assert_eq!(nearest(value), expected, "{value}");
        }
    }

    /// The int8 convolution by its definition: the input quantised as [`Packing::fill`] scales
    /// it, every tap summed in integers, then [`Sums::value`].
    fn definition(
        image: &[f32],
        weights: &QuantWeights,
        [channels, height, width]: [usize; 3],
        [kh, kw, pad]: [usize; 3],
        relu: bool,
    ) -> Vec<f32> {
        let largest = image.iter().fold(0f32, |m, &v| m.max(v));
        let inverse = CODE_MAX / largest;
        let (oh, ow) = (height + 2 * pad - kh + 1, width + 2 * pad - kw + 1);
        let quads = channels.div_ceil(QUAD);
        let mut out = Vec::new();
        for r in 0..weights.panels.rows {
            let sums = Sums {
                scale: &[weights.scale[r] * (largest / CODE_MAX)],
                bias: &weights.panels.bias[r..=r],
                relu,
            };
            for y in 0..oh {
                for x in 0..ow {
                    let mut sum = 0i32;
                    for (g, (tap, c)) in (0..kh * kw)
                        .flat_map(|t| (0..quads * QUAD).map(move |c| (t, c)))
                        .enumerate()
                    {
                        let (iy, ix) = (
                            (y + tap / kw) as isize - pad as isize,
                            (x + tap % kw) as isize - pad as isize,
                        );
                        let inside = c < channels
                            && (0..height as isize).contains(&iy)
                            && (0..width as isize).contains(&ix);
                        if !inside {
                            continue;
                        }
                        let value = image[c * height * width + iy as usize * width + ix as usize];
                        let word = weights.panels.words
                            [((r / ROWS) * weights.panels.groups + g / QUAD) * ROWS + r % ROWS];
                        let w = i32::from((word >> (8 * (g % QUAD))) as u8 as i8);
                        sum += code(value, inverse) as i32 * w;
                    }
                    out.push(sums.value(0, sum));
                }
            }
        }
        out
    }

    #[test]
    fn every_kernel_matches_the_definition_on_googlenet_s_int8_layers() {
        // Every geometry GoogLeNet runs at int8: all but conv1, whose input is signed.
        for kernel in Kernel::available() {
            for (seed, &layer) in GOOGLENET_LAYERS[1..].iter().enumerate() {
                let (channels, size, out, k, stride, pad) = layer;
                assert_eq!(stride, 1, "the definition here is for stride 1");
                let seed = seed as u32;
                let weights = trained(&[out, channels, k, k], seed);
                let bias = floats(&[out], seed + 1);
                let packed = QuantWeights::new(&weights, &bias, [out, channels, k, k]);
                // A ReLU's output: half zeros.
                let input: ArrayD<f32> =
                    random(&[1, channels, size, size], seed + 2).mapv(|v| v.max(0.0));
                let image = input.as_slice().unwrap();
                let got = convolve_layer(kernel, &packed, layer, &input, true);
                let want = definition(image, &packed, [channels, size, size], [k, k, pad], true);
                let same = bits(&got) == bits(&want);
                assert!(same, "{kernel:?}: {channels}x{size}x{size} -> {out}, {k}x{k}");
            }
        }
    }
}
