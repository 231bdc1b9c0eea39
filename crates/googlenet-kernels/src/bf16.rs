//! The bf16 convolution: weights and input rounded to bf16, their products summed in f32, and
//! the bias added.
//!
//! **Numbers.** A bf16 is an f32's upper 16 bits: its sign, its 8 bits of exponent and 7 of
//! mantissa. Each weight is rounded once at load, each input value as it is packed, to the
//! nearest bf16, ties to even ([`round`]). A value that rounds below bf16's normal range
//! becomes zero of its sign (the hardware's dot products read such inputs as zero), and a NaN
//! stays a NaN. The product of two bf16s is exact in f32. Output `(r, p) = sum + bias[r]`,
//! where `sum` starts at zero and runs over the depth's words in order, each adding its second
//! channel's product and then its first's, with an f32 rounding each: the order in which
//! `vdpbf16ps` adds a pair. So a kernel built on `vdpbf16ps` gives these bits, but where a
//! partial sum falls below f32's normal range (under 2^-126), which it flushes to zero.
//!
//! **Layout** ([`super::words`]). Within a tap, the input channels go in pairs: one 32-bit
//! word holds two channels' bf16s (the first channel in the low half), as `vdpbf16ps` and
//! AMX's `tdpbf16ps` read them, so that a panel's group is one 512-bit vector of 16 pixels'
//! pairs, or one row of an AMX tile. The weights are packed in panels of [`ROWS`] rows, each
//! group's four words (one per row) together.
//!
//! **Kernels** ([`Bf16Unit`]). The AVX2 tile widens each bf16 to an f32 (a shift, or a mask)
//! and adds the products with FMA in the order above, so it gives the reference's bits, more
//! slowly than the f32 product (the widening costs as many instructions as the products): it
//! runs bf16's numbers on any CPU with AVX2, for measuring them and for testing the path, and
//! a run takes it only where `GOOGLENET_ISA` forces a path. The AVX512-BF16 tile multiplies
//! with `vdpbf16ps`, 4 rows by up to 4 panels (16 sums in registers). AMX's tiles
//! ([`super::amx`]) read the weights as rows of words instead, and sum in an order of their
//! own: within [`amx_bound`] of the reference.

#![allow(
    clippy::indexing_slicing,
    reason = "every slice is cut from lengths `words::tiles` checks against the panels' shapes \
              first, and the weights' shape is checked against their length"
)]

use std::fmt;

use super::amx::{self, Lines};
use super::gemm::{Bf16Unit, Kernel};
use super::window::Axis;
use super::words::{self, Packing, Planes, Weights, Words, COLUMNS};

/// Rows of the weights per packed panel, and of the tile a kernel keeps in registers.
pub const ROWS: usize = 4;
/// Input channels per word.
const PAIR: usize = 2;

/// `value` rounded to the nearest bf16, ties to even, as the low 16 bits of the result: a
/// value below bf16's normal range becomes zero of its sign, a NaN a quiet NaN of its sign.
/// Plain integer steps, so that a loop of them becomes vector code.
#[inline(always)]
pub fn round(value: f32) -> u32 {
    let bits = value.to_bits();
    let nan = bits & 0x7fff_ffff > 0x7f80_0000;
    // Adding just under half of the dropped part, and one more where the kept part is odd,
    // carries into the kept part exactly when round-to-nearest-even rounds up (an overflow
    // carries into the exponent, to infinity, as it should).
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    let subnormal = rounded & 0x7f80 == 0;
    if nan {
        (bits >> 16) | 0x40
    } else if subnormal {
        rounded & 0x8000
    } else {
        rounded
    }
}

/// The f32 a bf16 (the low 16 bits of `half`) stands for.
#[cfg(test)]
#[inline(always)]
fn widen(half: u32) -> f32 {
    f32::from_bits(half << 16)
}

/// The weights of a convolution rounded to bf16, two input channels a word, the first in the
/// low half, and each row's bias, packed for the kernel that runs them.
#[derive(Clone, PartialEq)]
pub struct Bf16Weights {
    packed: Packed,
}

/// The weights as a kernel reads them.
#[derive(Clone, PartialEq)]
enum Packed {
    /// In panels of [`ROWS`] rows ([`Weights`]' layout), for the vector tiles.
    Panels(Weights<ROWS>),
    /// Row by row, for AMX's tiles.
    Lines(Lines),
}

impl fmt::Debug for Bf16Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [rows, groups] = self.shape();
        let layout = match self.packed {
            Packed::Panels(_) => "panels",
            Packed::Lines(_) => "lines",
        };
        write!(f, "Bf16Weights({rows} x {groups} words in {layout})")
    }
}

impl Bf16Weights {
    /// Rounds and packs `weights` (`out x in x kh x kw`, row-major, the shape `shape`) for
    /// `kernel`, and keeps `bias` (one per output channel).
    pub fn new(weights: &[f32], bias: &[f32], shape: [usize; 4], kernel: Kernel) -> Bf16Weights {
        let word = |_, [first, second]: [f32; PAIR]| round(first) | round(second) << 16;
        let packed = match kernel.bf16_unit() {
            Bf16Unit::Tiles => Packed::Lines(Lines::new(Weights::new(weights, bias, shape, word))),
            Bf16Unit::DotProduct | Bf16Unit::Widening => {
                Packed::Panels(Weights::new(weights, bias, shape, word))
            }
        };
        Bf16Weights { packed }
    }

    /// Rows (output channels) and groups (the depth in words).
    fn shape(&self) -> [usize; 2] {
        match &self.packed {
            Packed::Panels(a) => [a.rows, a.groups],
            Packed::Lines(a) => [a.rows, a.groups],
        }
    }

    /// Row `row`'s word of group `group`.
    #[cfg(test)]
    fn word(&self, row: usize, group: usize) -> u32 {
        match &self.packed {
            Packed::Panels(a) => a.words[(row / ROWS * a.groups + group) * ROWS + row % ROWS],
            Packed::Lines(a) => a.words[row * a.groups + group],
        }
    }

    /// Row `row`'s bias.
    #[cfg(test)]
    fn bias(&self, row: usize) -> f32 {
        match &self.packed {
            Packed::Panels(a) => a.bias[row],
            Packed::Lines(a) => a.bias[row],
        }
    }
}

/// `C = A B + bias` for the first `columns` columns of `B`, on `kernel`, the one `a` is packed
/// for. `C` holds a row per row of `a`, `ldc` floats apart, of at least `columns` values; what
/// they held is not read. With `relu`, every value not above zero is stored as zero.
pub fn multiply(
    kernel: Kernel,
    a: &Bf16Weights,
    b: Words,
    columns: usize,
    c: (&mut [f32], usize),
    relu: bool,
) {
    let a = match &a.packed {
        Packed::Lines(lines) => return amx::multiply(kernel, lines, b, columns, c, relu),
        Packed::Panels(a) => a,
    };
    let tile = |panel: usize| {
        let (weights, bias) = (a.panel(panel), &a.bias[panel * ROWS..][..ROWS]);
        move |b: (&[u32], usize, usize), tile: &mut [f32], shape| {
            run_tile(kernel, weights, b, tile, shape, (bias, relu))
        }
    };
    let shape = [a.rows, a.groups];
    match kernel.bf16_unit() {
        Bf16Unit::DotProduct => words::tiles::<ROWS, DOT_PANELS, _>(shape, b, columns, c, tile),
        _ => words::tiles::<ROWS, 1, _>(shape, b, columns, c, tile),
    }
}

/// Panels of columns per tile of the AVX512-BF16 kernel: 4 rows x 4 panels keep 16 sums in
/// registers, enough to hide `vdpbf16ps`' latency.
const DOT_PANELS: usize = 4;

/// One tile: `rows` lines of `tile` (`ldc` apart, `width` used) from `a` (`groups x ROWS`
/// words) and `b` (`groups` runs of [`COLUMNS`] words, `stride` apart, for each of the
/// panels `width` takes, `apart` apart), with the panel's [`ROWS`] biases and the ReLU.
fn run_tile(
    kernel: Kernel,
    a: &[u32],
    b: (&[u32], usize, usize),
    tile: &mut [f32],
    shape: [usize; 3],
    end: (&[f32], bool),
) {
    let [ldc, rows, width] = shape;
    let panels = width.div_ceil(COLUMNS);
    debug_assert!(rows <= ROWS && tile.len() == (rows - 1) * ldc + width);
    debug_assert!(
        a.len().is_multiple_of(ROWS)
            && !a.is_empty()
            && b.0.len() == (panels - 1) * b.2 + (a.len() / ROWS - 1) * b.1 + COLUMNS
            && end.0.len() == ROWS
    );
    #[cfg(target_arch = "x86_64")]
    match kernel.bf16_unit() {
        // SAFETY: this kernel is only made once the CPU has been seen to have AVX-512F and
        // AVX512-BF16 (`Kernel::available`), and `words::tiles` cut `a`, `b` and `tile` to the
        // lengths the tile reads and writes, `width` at most `DOT_PANELS` panels (checked
        // above in debug builds).
        Bf16Unit::DotProduct => unsafe {
            match panels {
                1 => x86::tile_avx512bf16::<1>(a, b, tile, shape, end),
                2 => x86::tile_avx512bf16::<2>(a, b, tile, shape, end),
                3 => x86::tile_avx512bf16::<3>(a, b, tile, shape, end),
                _ => x86::tile_avx512bf16::<DOT_PANELS>(a, b, tile, shape, end),
            }
        },
        // SAFETY: every kernel is only made once the CPU has been seen to have AVX2 and FMA
        // (`Kernel::available`), and `words::tiles` cut `a`, `b` and `tile` to the lengths the
        // tile reads and writes, `width` one panel (checked above in debug builds). AMX's
        // kernel comes here only with weights packed in panels, for another kernel.
        Bf16Unit::Widening | Bf16Unit::Tiles => unsafe {
            x86::tile_avx2(a, (b.0, b.1), tile, shape, end)
        },
    }
    #[cfg(not(target_arch = "x86_64"))]
    kernel.unreachable();
}

impl Packing for Bf16Weights {
    type Scale = ();
    const CHANNELS: usize = PAIR;

    fn rows(&self) -> usize {
        self.shape()[0]
    }

    fn groups(&self) -> usize {
        self.shape()[1]
    }

    /// Rounds `image` (`channels x H x W` floats) into `out` (planes of words of two
    /// channels, [`Planes::len`] words, its padding zero): each word from its two channels.
    #[inline(always)]
    fn fill(planes: &Planes, image: &[f32], channels: usize, axes: [&Axis; 2], out: &mut [u32]) {
        planes.pack(image, channels, axes, out, |to, [first, second]: [&[f32]; PAIR]| {
            for (word, (&a, &b)) in to.iter_mut().zip(first.iter().zip(second)) {
                *word = round(a) | round(b) << 16;
            }
        });
    }

    fn multiply(
        &self,
        kernel: Kernel,
        b: Words,
        columns: usize,
        (): (),
        c: &mut [f32],
        relu: bool,
    ) {
        multiply(kernel, self, b, columns, (c, columns), relu);
    }
}

/// `sum` plus a word's two products, the second channel's first, one rounding each.
#[cfg(test)]
#[inline(always)]
fn add_pair(sum: f32, input: u32, weight: u32) -> f32 {
    let sum = widen(input >> 16).mul_add(widen(weight >> 16), sum);
    widen(input & 0xffff).mul_add(widen(weight & 0xffff), sum)
}

/// The end of an output: `sum + bias`, and with `relu` a value not above zero (a NaN
/// included) stored as +0, as `vmaxps` with zero second makes it.
#[inline(always)]
pub fn end(sum: f32, bias: f32, relu: bool) -> f32 {
    let value = sum + bias;
    if !relu || value > 0.0 {
        value
    } else {
        0.0
    }
}

/// The product as the definition reads, for the tests: `C` (rows x columns, row-major) from
/// `a`'s words and `b` in panels.
#[cfg(test)]
pub fn reference(a: &Bf16Weights, b: &[u32], columns: usize, relu: bool) -> Vec<f32> {
    let [rows, groups] = a.shape();
    let mut c = vec![0f32; rows * columns];
    for r in 0..rows {
        for j in 0..columns {
            let sum = (0..groups).fold(0f32, |sum, g| {
                add_pair(sum, words::panel_word(b, groups, g, j), a.word(r, g))
            });
            c[r * columns + j] = end(sum, a.bias(r), relu);
        }
    }
    c
}

/// How far AMX's sums may stray from the reference's, for `depth` words whose products' sizes
/// sum to `size`: in each, every one of the `2 x depth` additions rounds once (the reference's
/// in its order, the tiles' in theirs), by at most 2^-24 of a partial sum no larger than
/// `size`; twice that bounds the two sums' difference.
#[cfg(test)]
pub fn amx_bound(depth: usize, size: f64) -> f64 {
    2.0 * (2.0 * depth as f64 * size * f64::powi(2.0, -24))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The AVX2 and AVX512-BF16 tiles.

    use std::arch::x86_64::*;

    use super::super::gemm::Vector;
    use super::{COLUMNS, ROWS};

    /// `rows` lines of `tile` from `a` (`groups x ROWS` words) and `b` (`groups` runs of
    /// [`COLUMNS`] words, `stride` apart): [`ROWS`] x 16 sums in f32, each bf16 widened to an
    /// f32 and each word's two products added second first, as `vdpbf16ps` adds them; then
    /// each row's bias and the ReLU.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `a.len()` is a multiple of [`ROWS`], `groups = a.len() / ROWS`
    /// is at least 1, `b.len() >= (groups - 1) * stride + COLUMNS`, `bias.len() == ROWS`,
    /// `rows <= ROWS`, `width <= COLUMNS` and `tile.len() >= (rows - 1) * ldc + width`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_avx2(
        a: &[u32],
        (b, stride): (&[u32], usize),
        tile: &mut [f32],
        [ldc, rows, width]: [usize; 3],
        (bias, relu): (&[f32], bool),
    ) {
        let high = _mm256_set1_epi32(0xffff_0000_u32 as i32);
        // The second channel (the high half, masked) and the first (shifted up) as f32s.
        let split = |words: __m256i| {
            let second = _mm256_castsi256_ps(_mm256_and_si256(words, high));
            (second, _mm256_castsi256_ps(_mm256_slli_epi32::<16>(words)))
        };
        let mut acc = [[_mm256_setzero_ps(); 2]; ROWS];
        let mut column = b.as_ptr();
        for weights in a.chunks_exact(ROWS) {
            // SAFETY: this is one of the `groups` groups, whose run of `COLUMNS` words (two
            // vectors of 8) lies in `b` (the contract); unaligned loads.
            let inputs = unsafe {
                [_mm256_loadu_si256(column.cast()), _mm256_loadu_si256(column.add(8).cast())]
                    .map(split)
            };
            for (sums, &weight) in acc.iter_mut().zip(weights) {
                let (second, first) = split(_mm256_set1_epi32(weight as i32));
                for (sum, &(x_second, x_first)) in sums.iter_mut().zip(&inputs) {
                    *sum = _mm256_fmadd_ps(x_second, second, *sum);
                    *sum = _mm256_fmadd_ps(x_first, first, *sum);
                }
            }
            column = column.wrapping_add(stride);
        }
        for (row, sums) in acc.iter().enumerate().take(rows) {
            for (half, &sum) in sums.iter().enumerate() {
                let count = width.saturating_sub(half * 8).min(8);
                if count == 0 {
                    break;
                }
                let mut value = _mm256_add_ps(sum, _mm256_set1_ps(bias[row]));
                if relu {
                    value = _mm256_max_ps(value, _mm256_setzero_ps());
                }
                let part = &mut tile[row * ldc + half * 8..][..count];
                // SAFETY: the CPU has AVX2 (the contract), and `part` holds `count` floats, at
                // most 8.
                unsafe { value.store_first(part.as_mut_ptr(), count) };
            }
        }
    }

    /// `rows` lines of `tile` from `a` (`groups x ROWS` words) and the first `P` panels of `b`
    /// (`groups` runs of [`COLUMNS`] words each, `stride` apart; the panels `apart` apart):
    /// [`ROWS`] x `P` vectors of sums, each word's two products added by `vdpbf16ps` (second
    /// first, as the reference adds them); then each row's bias and the ReLU, `width` columns.
    ///
    /// # Safety
    /// The CPU has AVX-512F and AVX512-BF16; `a.len()` is a multiple of [`ROWS`],
    /// `groups = a.len() / ROWS` is at least 1, `b.len() >= (P - 1) * apart + (groups - 1) *
    /// stride + COLUMNS`, `bias.len() == ROWS`, `rows <= ROWS`, `(P - 1) * COLUMNS < width <=
    /// P * COLUMNS` and `tile.len() >= (rows - 1) * ldc + width`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn tile_avx512bf16<const P: usize>(
        a: &[u32],
        (b, stride, apart): (&[u32], usize, usize),
        tile: &mut [f32],
        [ldc, rows, width]: [usize; 3],
        (bias, relu): (&[f32], bool),
    ) {
        let mut acc = [[_mm512_setzero_ps(); P]; ROWS];
        let mut column = b.as_ptr();
        for weights in a.chunks_exact(ROWS) {
            // SAFETY: this is one of the `groups` groups, whose run of `COLUMNS` words (one
            // vector) lies in `b` for each of the `P` panels (the contract); unaligned loads.
            // A vector of words is a vector of bf16 pairs: any bits are a valid `__m512bh`.
            let inputs: [__m512bh; P] = std::array::from_fn(|panel| unsafe {
                std::mem::transmute(_mm512_loadu_si512(column.add(panel * apart).cast()))
            });
            for (sums, &weight) in acc.iter_mut().zip(weights) {
                // SAFETY: as above, a vector of 16 copies of one word of two bf16s.
                let weight: __m512bh =
                    unsafe { std::mem::transmute(_mm512_set1_epi32(weight as i32)) };
                for (sum, &input) in sums.iter_mut().zip(&inputs) {
                    *sum = _mm512_dpbf16_ps(*sum, input, weight);
                }
            }
            column = column.wrapping_add(stride);
        }
        for (row, sums) in acc.iter().enumerate().take(rows) {
            for (panel, &sum) in sums.iter().enumerate() {
                let count = width.saturating_sub(panel * COLUMNS).min(COLUMNS);
                let mut value = _mm512_add_ps(sum, _mm512_set1_ps(bias[row]));
                if relu {
                    value = _mm512_max_ps(value, _mm512_setzero_ps());
                }
                let part = &mut tile[row * ldc + panel * COLUMNS..][..count];
                // SAFETY: the CPU has AVX-512F (the contract), and `part` holds `count` floats,
                // at most 16.
                unsafe { value.store_first(part.as_mut_ptr(), count) };
            }
        }
    }

    const _: () = assert!(COLUMNS == 16, "the tile's columns are two vectors of 8, or one of 16");
}

#[cfg(test)]
mod tests {
    use super::super::glue::random;
    use super::super::words::{bits, convolve_layer, panels_len, write_rows};
    use super::super::words::{BLOCKS, GOOGLENET_LAYERS};
    use super::*;
    use tract_onnx::prelude::tract_ndarray::ArrayD;

    fn floats(shape: &[usize], seed: u32) -> Vec<f32> {
        random(shape, seed).into_iter().collect()
    }

    /// Reproducible words of two bf16s each, of every sign and of magnitudes 2^-8..2^8.
    fn halves(len: usize, seed: u32) -> Vec<u32> {
        let mut state = seed;
        let mut half = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let exponent = 119 + (state >> 8) % 17;
            (state >> 31) << 15 | exponent << 7 | (state >> 16) & 0x7f
        };
        (0..len).map(|_| half() | half() << 16).collect()
    }

    #[test]
    fn round_is_to_nearest_even_flushes_subnormals_and_keeps_nans_and_infinities() {
        let cases = [
            (1.0, 0x3f80),
            (-2.5, 0xc020),
            // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: to even, 1.
            (f32::from_bits(0x3f80_8000), 0x3f80),
            // 1 + 3 x 2^-8, halfway between 1 + 2^-7 and 1 + 2^-6: to even, up.
            (f32::from_bits(0x3f81_8000), 0x3f82),
            (f32::from_bits(0x3f80_8001), 0x3f81),
            (f32::from_bits(0x3f80_7fff), 0x3f80),
            (f32::MAX, 0x7f80),
            (f32::NEG_INFINITY, 0xff80),
            (1e-39, 0x0000),
            (-1e-39, 0x8000),
            (f32::MIN_POSITIVE, 0x0080),
            (-0.0, 0x8000),
        ];
        for (value, expected) in cases {
            assert_eq!(round(value), expected, "{value:e} ({:#x})", value.to_bits());
        }
        for nan in [f32::NAN, -f32::NAN, f32::from_bits(0x7f80_0001)] {
            assert!(widen(round(nan)).is_nan(), "{:#x}", nan.to_bits());
        }
        assert_eq!(widen(round(3.140625)), 3.140625, "a bf16 is its own rounding");
    }

    /// A kernel that widens bf16 to f32: every CPU with a kernel has one.
    fn widening() -> Kernel {
        let mut kernels = Kernel::available().into_iter();
        kernels.find(|kernel| kernel.bf16_unit() == Bf16Unit::Widening).unwrap()
    }

    /// Whether `kernel`'s output `got` agrees with the reference's `want`: bit for bit, but on
    /// AMX, whose tiles add in their own order, within [`amx_bound`] of a `depth`-word sum
    /// whose products' sizes sum to `size` (the same product of the values' magnitudes, and
    /// no bias), and one rounding of the output.
    fn agrees(kernel: Kernel, got: &[f32], want: &[f32], size: &[f32], depth: usize) -> bool {
        if kernel.bf16_unit() != Bf16Unit::Tiles {
            return bits(got) == bits(want);
        }
        let close = |((&got, &want), &size): ((&f32, &f32), &f32)| {
            let last = f64::from(got.abs().max(want.abs())) * f64::powi(2.0, -23);
            f64::from((got - want).abs()) <= amx_bound(depth, f64::from(size)) + last
        };
        got.len() == want.len() && got.iter().zip(want).zip(size).all(close)
    }

    /// The words with their bf16s' signs cleared.
    fn magnitudes(words: &[u32]) -> Vec<u32> {
        words.iter().map(|word| word & 0x7fff_7fff).collect()
    }

    #[test]
    fn weights_are_rounded_and_packed_by_tap_then_channel_pair() {
        // 2 rows, 3 channels (two pairs, the second padded), 1x2 taps.
        let mut weights = vec![0f32; 2 * 3 * 2];
        weights[0] = 1.0; // row 0, channel 0, tap 0
        weights[2 * 2 + 1] = -2.0; // row 0, channel 2, tap 1
        weights[6 + 2] = f32::from_bits(0x3f81_8000); // row 1, channel 1, tap 0: rounds up
        for kernel in Kernel::available() {
            let packed = Bf16Weights::new(&weights, &[1.0, 2.0], [2, 3, 1, 2], kernel);
            assert_eq!(packed.shape(), [2, 4]);
            assert_eq!(packed.word(0, 0), 0x3f80, "tap 0, pair 0: channel 0 in the low half");
            assert_eq!(packed.word(1, 0), 0x3f82 << 16, "channel 1 in the high half");
            assert_eq!(packed.word(0, 3), 0xc000, "tap 1, pair 1: channel 2, its pair's second 0");
            assert_eq!([packed.bias(0), packed.bias(1)], [1.0, 2.0]);
            let (words, bias, padded) = match &packed.packed {
                Packed::Panels(a) => (&a.words, &a.bias, ROWS),
                Packed::Lines(a) => (&a.words, &a.bias, amx::ROWS),
            };
            assert_eq!(words.len(), padded * 4, "{kernel:?}: rows padded to a panel");
            assert_eq!(bias[2..], vec![0.0; padded - 2], "{kernel:?}");
        }
    }

    #[test]
    fn every_kernel_matches_the_reference_on_random_blocks() {
        for kernel in Kernel::available() {
            for (seed, [rows, groups, columns]) in BLOCKS.into_iter().enumerate() {
                let seed = seed as u32;
                let weights = floats(&[rows, groups * PAIR], seed);
                let bias = floats(&[rows], seed + 1);
                let shape = [rows, groups * PAIR, 1, 1];
                let packed = Bf16Weights::new(&weights, &bias, shape, kernel);
                let b = halves(panels_len(groups, columns), seed + 2);
                let abs = weights.iter().map(|w| w.abs()).collect::<Vec<_>>();
                let sizes = Bf16Weights::new(&abs, &vec![0.0; rows], shape, kernel);
                let size = reference(&sizes, &magnitudes(&b), columns, false);
                // The same `B` row-major, its rows 5 words longer than the whole panels.
                let stride = columns.next_multiple_of(COLUMNS) + 5;
                let mut lines = halves(groups * stride, seed + 3);
                write_rows(&b, [groups, columns], (&mut lines, stride));
                for relu in [false, true] {
                    let expected = reference(&packed, &b, columns, relu);
                    for b in [Words::Panels(&b), Words::Rows(&lines, stride)] {
                        let mut out = vec![f32::NAN; rows * columns];
                        multiply(kernel, &packed, b, columns, (&mut out, columns), relu);
                        assert!(
                            agrees(kernel, &out, &expected, &size, groups),
                            "{kernel:?} {rows}x{groups}x{columns}, relu {relu}"
                        );
                    }
                }
            }
        }
    }

    /// The bf16 convolution by its definition, from the f32 weights and image: every value
    /// rounded by [`round`], the taps in order and within a tap the channels by pairs (a
    /// tap outside the image adds zeros, as the packed padding does), then [`end`].
    fn definition(
        image: &[f32],
        (weights, bias): (&[f32], &[f32]),
        [channels, height, width]: [usize; 3],
        [k, stride, pad]: [usize; 3],
        relu: bool,
    ) -> Vec<f32> {
        let (oh, ow) = ((height + 2 * pad - k) / stride + 1, (width + 2 * pad - k) / stride + 1);
        let pairs = channels.div_ceil(PAIR);
        let mut out = Vec::new();
        for (r, &bias) in bias.iter().enumerate() {
            let weight = |c: usize, tap: usize| {
                if c < channels {
                    round(weights[((r * channels + c) * k * k) + tap])
                } else {
                    0
                }
            };
            for y in 0..oh {
                for x in 0..ow {
                    let mut sum = 0f32;
                    for (tap, pair) in (0..k * k).flat_map(|t| (0..pairs).map(move |p| (t, p))) {
                        let (iy, ix) = (
                            (y * stride + tap / k) as isize - pad as isize,
                            (x * stride + tap % k) as isize - pad as isize,
                        );
                        let inside =
                            (0..height as isize).contains(&iy) && (0..width as isize).contains(&ix);
                        let value = |c: usize| {
                            if inside && c < channels {
                                round(image[(c * height + iy as usize) * width + ix as usize])
                            } else {
                                0
                            }
                        };
                        let (first, second) = (pair * PAIR, pair * PAIR + 1);
                        let input = value(first) | value(second) << 16;
                        sum = add_pair(sum, input, weight(first, tap) | weight(second, tap) << 16);
                    }
                    out.push(end(sum, bias, relu));
                }
            }
        }
        out
    }

    #[test]
    fn every_kernel_matches_the_definition_on_googlenet_s_layers() {
        for kernel in Kernel::available() {
            for (seed, &layer) in GOOGLENET_LAYERS.iter().enumerate() {
                let (channels, size, out, k, stride, pad) = layer;
                let seed = seed as u32;
                let weights = floats(&[out, channels, k, k], seed);
                let bias = floats(&[out], seed + 1);
                let packed = Bf16Weights::new(&weights, &bias, [out, channels, k, k], kernel);
                // conv1, the first, reads the signed image; the others a ReLU's output.
                let relu = seed > 0;
                let input: ArrayD<f32> = random(&[1, channels, size, size], seed + 2).mapv(|v| {
                    if relu {
                        v.max(0.0)
                    } else {
                        v
                    }
                });
                let image = input.as_slice().unwrap();
                let got = convolve_layer(kernel, &packed, layer, &input, relu);
                let shape = [channels, size, size];
                let window = [k, stride, pad];
                let want = definition(image, (&weights, &bias), shape, window, relu);
                let abs = |values: &[f32]| values.iter().map(|v| v.abs()).collect::<Vec<_>>();
                let zeros = vec![0.0; out];
                let sizes = definition(&abs(image), (&abs(&weights), &zeros), shape, window, false);
                let depth = k * k * channels.div_ceil(PAIR);
                assert!(
                    agrees(kernel, &got, &want, &sizes, depth),
                    "{kernel:?}: {channels}x{size}x{size} -> {out}, {k}x{k}"
                );
            }
        }
    }

    #[test]
    fn the_product_stays_within_bf16_s_rounding_of_the_f32_product() {
        // Each product's operands are off by at most 2^-8 relative each; summed with their
        // sizes, |bf16 - f32| <= 2 x 2^-8 x sum |w x| (and f32's own roundings, far smaller).
        let (rows, groups, columns) = (8, 200, 16);
        let weights = floats(&[rows, groups * PAIR], 7);
        let packed = Bf16Weights::new(&weights, &[0.0; 8], [rows, groups * PAIR, 1, 1], widening());
        let inputs = floats(&[groups * PAIR, columns], 8);
        let mut b = vec![0u32; panels_len(groups, columns)];
        for g in 0..groups {
            for j in 0..columns {
                let value = |c: usize| round(inputs[c * columns + j]);
                b[g * COLUMNS + j] = value(2 * g) | value(2 * g + 1) << 16;
            }
        }
        let got = reference(&packed, &b, columns, false);
        for r in 0..rows {
            for j in 0..columns {
                let products = (0..groups * PAIR)
                    .map(|c| f64::from(weights[r * groups * PAIR + c] * inputs[c * columns + j]));
                let (exact, size) = products.fold((0.0, 0.0), |(s, a), p| (s + p, a + p.abs()));
                let error = (f64::from(got[r * columns + j]) - exact).abs();
                assert!(error <= size * 2.0 / 256.0, "({r}, {j}): {error} of {size}");
            }
        }
    }
}
