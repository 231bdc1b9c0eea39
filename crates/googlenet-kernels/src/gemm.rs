//! The convolution's matrix product, `C = bias + A B`, with the weights `A` and the bias packed
//! once at load time and the patches `B` gathered straight into the layout the kernel reads, or
//! read where they lie ([`Right`]).
//!
//! `A` (out channels x depth) is stored in panels of [`ROWS`] rows, depth-major, so the kernel
//! reads the [`ROWS`] weights of one depth step as one run. `B` (depth x columns) is stored in
//! panels of [`PANEL`] columns, each `depth x PANEL` row-major, so one depth step of a panel is
//! two 512-bit vectors (four 256-bit ones) and a panel's block of [`DEPTH`] steps stays in the
//! L1 cache while every row panel of `A` runs over it (for `B` read where it lies, a row panel
//! of `A` stays there instead, while `B` streams past). The kernel keeps a `ROWS x PANEL` tile
//! of `C` in registers and stores it once per depth block: the first block adds the bias, the
//! next ones add what is in `C`, so `C` is never filled beforehand.
//!
//! Measured on this project's machine against `matrixmultiply` (which packs both operands on
//! every call, then runs its own 16x16 kernel) on GoogLeNet's shapes: roughly 10-30% more
//! multiply-adds per second for the product alone, and the gathering writes the packed form
//! directly, so the separate packing copy of the patches is gone.
//!
//! Kernels: AVX-512F, and AVX2 with FMA. On a CPU with neither, [`Kernel::detect`] says so and
//! the convolutions are left to tract. A [`Kernel`] also names how its CPU multiplies bf16
//! ([`Bf16Unit`]): the kernel paths `amx` and `avx512bf16` run this AVX-512 product at f32.

#![allow(
    clippy::indexing_slicing,
    reason = "every slice is cut from lengths `multiply` checks against the panels' shapes first"
)]

use std::fmt;

/// Rows of `A` per packed panel, and of the tile the kernel keeps in registers; the last
/// panels of a matrix may hold 8 or 4 (see [`row_panels`]).
pub const ROWS: usize = 12;
/// Columns of `B` per panel, and of the register tile.
pub const PANEL: usize = 32;
/// Depth steps per block: a panel's block of `B` is `DEPTH x PANEL` floats (32 kB).
const DEPTH: usize = 256;

/// The weights, `out x depth`, packed in the row panels of [`row_panels`] (the last one
/// zero-padded): a panel of `height` rows from row `first` holds, for each depth step `k`, the
/// weights of rows `first .. first + height` at `k`, and starts at `first * depth`. With them,
/// the bias of each row, zero-padded the same way.
#[derive(Clone, PartialEq)]
pub struct PackedWeights {
    rows: usize,
    depth: usize,
    data: Vec<f32>,
    bias: Vec<f32>,
}

impl fmt::Debug for PackedWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackedWeights({} x {})", self.rows, self.depth)
    }
}

impl PackedWeights {
    /// Packs the row-major `rows x depth` matrix `weights` and the `rows` values of `bias`.
    pub fn new(weights: &[f32], bias: &[f32], rows: usize, depth: usize) -> PackedWeights {
        let padded_rows = rows.next_multiple_of(GROUP);
        let mut padded = vec![0f32; padded_rows];
        for (to, &from) in padded.iter_mut().zip(bias) {
            *to = from;
        }
        let mut data = vec![0f32; padded_rows * depth];
        let lines: Vec<&[f32]> = weights.chunks_exact(depth.max(1)).take(rows).collect();
        for (first, height) in row_panels(rows) {
            let packed = &mut data[first * depth..][..height * depth];
            for (lane, line) in lines.iter().skip(first).take(height).enumerate() {
                for (step, &value) in packed.chunks_exact_mut(height).zip(*line) {
                    step[lane] = value;
                }
            }
        }
        PackedWeights { rows, depth, data, bias: padded }
    }

    /// Rows of the matrix: output channels.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the matrix: input channels x kernel height x kernel width.
    pub fn depth(&self) -> usize {
        self.depth
    }
}

/// Row panels come in multiples of this many rows.
const GROUP: usize = 4;

/// The row panels of a `rows`-row `A`, as (first row, height): [`ROWS`] rows each, but for the
/// last ones, which take the rows left rounded up to a multiple of [`GROUP`]. Four rows left
/// after a whole panel make two panels of 8 instead: a tile of 4 rows keeps too few sums in
/// registers to hide the multiply-adds' latency.
fn row_panels(rows: usize) -> impl Iterator<Item = (usize, usize)> {
    let padded = rows.next_multiple_of(GROUP);
    let (whole, left) = (padded / ROWS, padded % ROWS);
    let (whole, last): (usize, &[usize]) = match left {
        0 => (whole, &[]),
        GROUP if whole > 0 => (whole - 1, &[2 * GROUP, 2 * GROUP]),
        GROUP => (whole, &[GROUP]),
        _ => (whole, &[2 * GROUP]),
    };
    let heights = std::iter::repeat_n(ROWS, whole).chain(last.iter().copied());
    heights.scan(0, |first, height| {
        let panel = (*first, height);
        *first += height;
        Some(panel)
    })
}

/// How many floats the panels of `columns` columns of a `depth`-deep `B` take.
pub fn panels_len(depth: usize, columns: usize) -> usize {
    columns.div_ceil(PANEL) * PANEL * depth
}

/// Where value `(step, column)` of `B` lives in its panels.
pub fn panel_index(depth: usize, step: usize, column: usize) -> usize {
    (column / PANEL) * PANEL * depth + step * PANEL + column % PANEL
}

/// `B` (depth x columns) as a product reads it.
#[derive(Debug, Clone, Copy)]
pub enum Right<'a> {
    /// Packed in panels (see [`panel_index`]).
    Panels(&'a [f32]),
    /// Row-major as it stands, one depth step every `stride` floats (a 1x1 convolution's input
    /// planes): read a whole panel at a time, so the product takes whole panels of it only.
    Rows(&'a [f32], usize),
    /// Depth step `k` the run of `values` from `offsets[k]` on (the padded input lines that a
    /// convolution's taps read for a line of output pixels), one offset per step: read a whole
    /// panel at a time, so `values` holds the columns' whole panels past every offset.
    Runs(&'a [f32], &'a [usize]),
}

impl<'a> Right<'a> {
    /// Panel `index` of a `depth`-deep `B` from depth step `start` on, for `steps` steps: the
    /// floats the kernel reads (for [`Right::Runs`], all from the panel on: [`Right::holds`]
    /// checked that they reach far enough), and where each of its steps starts in them.
    fn panel(
        self,
        depth: usize,
        index: usize,
        [start, steps]: [usize; 2],
    ) -> (&'a [f32], Steps<'a>) {
        let (from, steps) = match self {
            Right::Panels(panels) => {
                (&panels[index * PANEL * depth + start * PANEL..], Steps::Every(PANEL, steps))
            }
            Right::Rows(rows, stride) => {
                (&rows[index * PANEL + start * stride..], Steps::Every(stride, steps))
            }
            Right::Runs(values, offsets) => {
                (&values[index * PANEL..], Steps::At(&offsets[start..][..steps]))
            }
        };
        match steps {
            Steps::Every(..) => (&from[..steps.reach()], steps),
            Steps::At(_) => (from, steps),
        }
    }

    /// Whether `B` holds the whole panels of `columns` columns, `depth` steps deep.
    fn holds(self, depth: usize, columns: usize) -> bool {
        match self {
            Right::Panels(panels) => panels.len() >= panels_len(depth, columns),
            Right::Rows(rows, stride) => {
                columns.is_multiple_of(PANEL)
                    && stride >= columns
                    && rows.len() >= (depth - 1) * stride + columns
            }
            Right::Runs(values, offsets) => {
                let last =
                    offsets.iter().max().map_or(0, |&last| last + columns.div_ceil(PANEL) * PANEL);
                offsets.len() == depth && values.len() >= last
            }
        }
    }
}

/// Where each depth step of a panel of `B` starts in the floats the kernel reads.
#[derive(Debug, Clone, Copy)]
enum Steps<'a> {
    /// Step `k` at `k * stride`, for `steps` steps.
    Every(usize, usize),
    /// Step `k` at `offsets[k]`.
    At(&'a [usize]),
}

impl Steps<'_> {
    /// How many floats the steps reach: each is a panel's width.
    fn reach(self) -> usize {
        match self {
            Steps::Every(stride, steps) => (steps - 1) * stride + PANEL,
            Steps::At(offsets) => offsets.iter().max().map_or(0, |&last| last + PANEL),
        }
    }

    /// How many steps there are.
    fn len(self) -> usize {
        match self {
            Steps::Every(_, steps) => steps,
            Steps::At(offsets) => offsets.len(),
        }
    }
}

/// A matrix-product kernel this CPU can run. Only [`Kernel::available`] and [`Kernel::detect`]
/// make one, after checking the CPU's features, so holding a `Kernel` proves that the CPU runs
/// its instructions: the products are safe to call with any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel(Isa);

/// The instruction sets there are kernels for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    /// AVX-512 with AMX's bf16 tiles: bf16 on `tdpbf16ps`, f32 as [`Isa::Avx512`].
    #[cfg(target_arch = "x86_64")]
    Amx,
    /// AVX-512 with AVX512-BF16: bf16 on `vdpbf16ps`, f32 as [`Isa::Avx512`].
    #[cfg(target_arch = "x86_64")]
    Avx512Bf16,
    /// 512-bit vectors: the tile is 12 rows (or its panel's 8 or 4) of two vectors.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// 256-bit vectors with FMA: the tile is run in parts of 6 rows (4 in the panels of 8 or 4)
    /// and 2 vectors.
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

/// How a kernel multiplies bf16 (at `Precision::Bf16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Unit {
    /// Each bf16 widened to an f32 and multiplied by FMA: bf16's numbers, no faster than f32.
    Widening,
    /// AVX512-BF16's `vdpbf16ps`: 16 pairs of bf16 products into f32 sums an instruction.
    DotProduct,
    /// AMX's `tdpbf16ps`: a 16 x 16 tile of f32 sums from a 16 x 32 and a 32 x 16 tile of bf16.
    Tiles,
}

impl Kernel {
    /// Every kernel this CPU can run, fastest first. Each needs AVX2 and FMA, which the int8
    /// product's tile runs on; the AVX-512 ones need AVX-512F besides, `avx512bf16`
    /// AVX512-BF16, and `amx` AMX-BF16 with the kernel's leave to use the tiles
    /// (asked once, with `arch_prctl`).
    pub fn available() -> Vec<Kernel> {
        let mut kernels = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            if avx2 && std::arch::is_x86_feature_detected!("avx512f") {
                if super::amx::usable() {
                    kernels.push(Kernel(Isa::Amx));
                }
                if std::arch::is_x86_feature_detected!("avx512bf16") {
                    kernels.push(Kernel(Isa::Avx512Bf16));
                }
                kernels.push(Kernel(Isa::Avx512));
            }
            if avx2 {
                kernels.push(Kernel(Isa::Avx2));
            }
        }
        kernels
    }

    /// The fastest kernel this CPU can run, if any.
    pub fn detect() -> Option<Kernel> {
        Kernel::available().into_iter().next()
    }

    /// The kernel called `name` ([`Kernel::name`]), if this CPU runs it.
    pub fn named(name: &str) -> Option<Kernel> {
        Kernel::available().into_iter().find(|kernel| kernel.name() == name)
    }

    /// The names of the kernels this build has, whether or not this CPU runs them.
    pub const NAMES: [&str; 4] = ["amx", "avx512bf16", "avx512", "avx2"];

    /// Where no x86 kernel is compiled, no `Kernel` can be made: code that holds one cannot
    /// be reached.
    #[cfg(not(target_arch = "x86_64"))]
    pub fn unreachable(self) -> ! {
        match self.0 {}
    }

    /// Its name: `amx`, `avx512bf16`, `avx512` or `avx2`.
    pub fn name(self) -> &'static str {
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            Isa::Amx => "amx",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Bf16 => "avx512bf16",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
        }
    }

    /// How it multiplies bf16.
    pub fn bf16_unit(self) -> Bf16Unit {
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            Isa::Amx => Bf16Unit::Tiles,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Bf16 => Bf16Unit::DotProduct,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx2 => Bf16Unit::Widening,
        }
    }
}

/// `C = bias + A B` for the first `columns` columns of `B` (for [`Right::Rows`], a multiple
/// of [`PANEL`]). `C` holds `a.rows()` rows, `ldc` floats apart, of at least `columns`
/// values; what they held before is not read. With `relu`, every sum below zero is stored as
/// zero.
pub fn multiply(
    kernel: Kernel,
    a: &PackedWeights,
    b: Right,
    columns: usize,
    c: &mut [f32],
    ldc: usize,
    relu: bool,
) {
    let depth = a.depth;
    if a.rows == 0 || columns == 0 || depth == 0 {
        return;
    }
    assert!(
        b.holds(depth, columns) && ldc >= columns && c.len() >= (a.rows - 1) * ldc + columns,
        "matrix product of mismatched shapes"
    );
    for start in (0..depth).step_by(DEPTH) {
        let steps = DEPTH.min(depth - start);
        let (first, last) = (start == 0, start + steps == depth);
        let mut run = |index: usize, (first_row, height): (usize, usize)| {
            let (b, located) = b.panel(depth, index, [start, steps]);
            let column = index * PANEL;
            let width = PANEL.min(columns - column);
            let rows = height.min(a.rows - first_row);
            let tile = &mut c[first_row * ldc + column..][..(rows - 1) * ldc + width];
            let weights = &a.data[first_row * depth..][..height * depth];
            let block = &weights[start * height..][..steps * height];
            let bias = &a.bias[first_row..][..height];
            let before = if first { Start::Bias(bias) } else { Start::Sums };
            let shape = [ldc, height, rows, width];
            run_tile(kernel, block, (b, located), tile, shape, before, relu && last);
        };
        // Packed panels of `B` stay in L1 while every row panel of `A` passes over them. `B`
        // read where it lies (`Rows`, `Runs`: a step's floats far from the next step's) is
        // the one streamed instead, past a row panel of `A` that stays in L1: the layers that
        // read it so ran 1.03x-1.04x faster that way, the others slower.
        let column_panels = 0..columns.div_ceil(PANEL);
        if let Right::Panels(_) = b {
            for index in column_panels {
                row_panels(a.rows).for_each(|panel| run(index, panel));
            }
        } else {
            for panel in row_panels(a.rows) {
                column_panels.clone().for_each(|index| run(index, panel));
            }
        }
    }
}

/// What a tile's sums are added to when stored.
#[derive(Clone, Copy)]
enum Start<'a> {
    /// The first depth block: each row's bias (the panel's height of values).
    Bias(&'a [f32]),
    /// A later block: the sums already in the tile.
    Sums,
}

/// One tile: `tile`'s `rows` lines (`ldc` apart, `width` used) `= start + a b`, where `a` is
/// `steps x height` (a row panel: 4, 8 or [`ROWS`] rows, `rows` of them used) and `b` is
/// `steps x PANEL`, its steps where the [`Steps`] say.
fn run_tile(
    kernel: Kernel,
    a: &[f32],
    b: (&[f32], Steps),
    tile: &mut [f32],
    shape: [usize; 4],
    start: Start,
    relu: bool,
) {
    let [ldc, height, rows, width] = shape;
    debug_assert!(b.0.len() >= b.1.reach() && b.1.len() * height == a.len());
    debug_assert!(matches!(height, 4 | 8 | ROWS) && rows <= height && width <= PANEL);
    debug_assert!(tile.len() == (rows - 1) * ldc + width);
    debug_assert!(
        matches!(start, Start::Sums) || matches!(start, Start::Bias(b) if b.len() == height)
    );
    match kernel.0 {
        // SAFETY: a `Kernel` is only made once the CPU has been seen to have its features
        // (`Kernel::available`), and `multiply` cut the operands to the lengths the kernels
        // read and write, or for `Right::Runs` asserted (`Right::holds`) that every run lies
        // inside `b` (checked above in debug builds).
        #[cfg(target_arch = "x86_64")]
        Isa::Amx | Isa::Avx512Bf16 | Isa::Avx512 => unsafe {
            x86::tile_avx512(a, b, tile, shape, start, relu)
        },
        // SAFETY: as above, for AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::tile_avx2(a, b, tile, shape, start, relu) },
    }
}

/// The f32 vector operations, which the lower precisions' tiles use to store their sums.
#[cfg(target_arch = "x86_64")]
pub(crate) use x86::Vector;

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The kernels. Each reads `a` (`steps x height`) and `b` (`steps x PANEL`, its steps where
    //! its [`Steps`] say) whole, and writes (after reading, unless it starts from the bias)
    //! `width` values of each of `rows` lines of `tile`, `ldc` apart. One body, [`vectors`],
    //! serves both vector widths and both kinds of steps: inlined into each kernel, it is
    //! compiled with that kernel's CPU features.
    //!
    //! The contract every `unsafe fn` here shares, called "the kernel contract" below: the CPU
    //! has the features of the vector type `V` (AVX-512F for `__m512`, AVX2 and FMA for
    //! `__m256`), and the operands have the lengths above, with `height` 4, 8 or `ROWS`,
    //! `rows <= height`,
    //! `width <= PANEL`, `b.0.len() >= b.1.reach()` (every step's `PANEL` floats lie in
    //! `b.0`), `b.1.len() == steps` and `tile.len() == (rows - 1) * ldc + width`.

    use std::arch::x86_64::*;

    use super::super::glue::LINE_FLOATS;
    use super::{Start, Steps, PANEL, ROWS};

    /// How many depth steps ahead the AVX-512 kernel asks for the lines of `b` it is about to
    /// read. Left to the hardware prefetcher, the loads wait on the next level of cache (`b`'s
    /// steps are often far apart: a 1x1 convolution reads its input planes as they stand).
    /// With 8 steps the whole network ran 1.04x-1.11x faster than with none; 4 was even with
    /// 8, and 16 behind it. The AVX2 kernel asks for nothing ahead: on an AMD EPYC Zen 2 the
    /// same requests made the network 1.12x slower.
    const B_AHEAD: usize = 8;
    /// The same for the weights, `a`, whose steps follow each other: 1.02x more. Only a step
    /// that starts a new cache line asks (with 8 rows, 1.02x more than asking at every step).
    const A_AHEAD: usize = 16;

    /// # Safety
    /// The kernel contract, for AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_avx512(
        a: &[f32],
        b: (&[f32], Steps),
        tile: &mut [f32],
        shape: [usize; 4],
        start: Start,
        relu: bool,
    ) {
        // SAFETY: the caller keeps the kernel contract for `__m512`; the whole tile is one part,
        // as high as its panel.
        unsafe {
            match shape[1] {
                4 => part::<__m512, 4, 4>(a, b, tile, shape, start, relu, [0, 0]),
                8 => part::<__m512, 8, 8>(a, b, tile, shape, start, relu, [0, 0]),
                _ => part::<__m512, ROWS, ROWS>(a, b, tile, shape, start, relu, [0, 0]),
            }
        }
    }

    /// # Safety
    /// The kernel contract, for AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_avx2(
        a: &[f32],
        b: (&[f32], Steps),
        tile: &mut [f32],
        shape: [usize; 4],
        start: Start,
        relu: bool,
    ) {
        // 16 registers: a tile of 12 rows x 4 vectors would not fit, so it runs in parts of 6 x 2
        // (4 x 2 in the panels of 8 or 4 rows).
        // SAFETY: the caller keeps the kernel contract for `__m256`, with the panel's height.
        unsafe {
            match shape[1] {
                4 => parts_avx2::<4, 4>(a, b, tile, shape, start, relu),
                8 => parts_avx2::<4, 8>(a, b, tile, shape, start, relu),
                _ => parts_avx2::<6, ROWS>(a, b, tile, shape, start, relu),
            }
        }
    }

    /// The AVX2 tile in parts of `R` rows x 2 vectors, the two row parts of a column half back
    /// to back, so that the second reads its lines of `b` from L1.
    ///
    /// # Safety
    /// The kernel contract for `__m256`, with `height == S`, and `R` divides `S`.
    #[inline(always)]
    unsafe fn parts_avx2<const R: usize, const S: usize>(
        a: &[f32],
        b: (&[f32], Steps),
        tile: &mut [f32],
        shape: [usize; 4],
        start: Start,
        relu: bool,
    ) {
        let [_, _, rows, width] = shape;
        for first_column in (0..width).step_by(PANEL / 2) {
            for first_row in (0..rows).step_by(R) {
                let corner = [first_row, first_column];
                // SAFETY: passed on from the caller; the corner is inside the tile, as the loops
                // stop at `rows` and `width`, and `R` rows from it are within `S`, as `R`
                // divides `S` and `rows <= S`.
                unsafe { part::<__m256, R, S>(a, b, tile, shape, start, relu, corner) }
            }
        }
    }

    /// The part of the tile from row and column `corner` on, its steps located by their kind.
    ///
    /// # Safety
    /// The kernel contract, with `height == S`; `corner` is inside the tile and `R` rows from it
    /// are within `S`.
    #[inline(always)]
    unsafe fn part<V: Vector, const R: usize, const S: usize>(
        a: &[f32],
        (b, steps): (&[f32], Steps),
        tile: &mut [f32],
        shape: [usize; 4],
        start: Start,
        relu: bool,
        corner: [usize; 2],
    ) {
        // SAFETY: passed on from the caller; `Every` and `At` locate the steps as `steps` does.
        unsafe {
            match steps {
                Steps::Every(stride, _) => {
                    located::<V, R, S, _>(a, (b, Every(stride)), tile, shape, start, relu, corner)
                }
                Steps::At(offsets) => {
                    located::<V, R, S, _>(a, (b, At(offsets)), tile, shape, start, relu, corner)
                }
            }
        }
    }

    /// [`part`] with its steps located by `L`: `R` rows of two vectors, or of one when the
    /// columns left fit in one (the last panel of an image is often part-empty).
    ///
    /// # Safety
    /// As [`part`].
    #[inline(always)]
    unsafe fn located<V: Vector, const R: usize, const S: usize, L: Locate>(
        a: &[f32],
        b: (&[f32], L),
        tile: &mut [f32],
        shape: [usize; 4],
        start: Start,
        relu: bool,
        corner: [usize; 2],
    ) {
        // SAFETY: passed on from the caller; `H` vectors of `V::LANES` cover the columns left or,
        // with `H` = 1, what is left of them fits in one vector.
        unsafe {
            if shape[3] - corner[1] > V::LANES {
                vectors::<V, R, S, 2, L>(a, b, tile, shape, start, relu, corner);
            } else {
                vectors::<V, R, S, 1, L>(a, b, tile, shape, start, relu, corner);
            }
        }
    }

    /// Where step `k` of `b` starts: one kind of [`Steps`], so that each kind compiles to its
    /// own loop.
    trait Locate: Copy {
        /// The start of step `step`, or of the first step where it is past the last.
        fn at(self, step: usize) -> usize;
    }

    /// [`Steps::Every`]: step `k` at `k * stride`.
    #[derive(Clone, Copy)]
    struct Every(usize);

    impl Locate for Every {
        #[inline(always)]
        fn at(self, step: usize) -> usize {
            step * self.0
        }
    }

    /// [`Steps::At`]: step `k` at `offsets[k]`.
    #[derive(Clone, Copy)]
    struct At<'a>(&'a [usize]);

    impl Locate for At<'_> {
        #[inline(always)]
        fn at(self, step: usize) -> usize {
            self.0.get(step).copied().unwrap_or(0)
        }
    }

    /// [`located`] with `H` vectors per row.
    ///
    /// # Safety
    /// As [`part`], and `first_column + H * V::LANES <= PANEL`.
    #[inline(always)]
    unsafe fn vectors<V: Vector, const R: usize, const S: usize, const H: usize, L: Locate>(
        a: &[f32],
        (b, steps): (&[f32], L),
        tile: &mut [f32],
        [ldc, _, rows, width]: [usize; 4],
        start: Start,
        relu: bool,
        [first_row, first_column]: [usize; 2],
    ) {
        // SAFETY: the CPU has `V`'s features (the kernel contract).
        let mut sums = [[unsafe { V::zero() }; H]; R];
        let weights = a.as_ptr();
        for (step, a) in a.chunks_exact(S).enumerate() {
            if V::PREFETCH {
                let b_ahead = b.as_ptr().wrapping_add(steps.at(step + B_AHEAD) + first_column);
                for line in (0..H * V::LANES).step_by(LINE_FLOATS) {
                    prefetch(b_ahead.wrapping_add(line));
                }
                if (step * S) % LINE_FLOATS < S {
                    prefetch(weights.wrapping_add((step + A_AHEAD) * S));
                }
            }
            let at = steps.at(step) + first_column;
            // SAFETY: the CPU has `V`'s features; step `step` of `b` starts `steps.at(step)`
            // floats in and holds `PANEL` floats (the kernel contract: `step` is below the
            // steps' count), and the vectors read end at `first_column + H * V::LANES <= PANEL`.
            let columns: [V; H] = std::array::from_fn(|half| unsafe {
                V::load(b.as_ptr().add(at + half * V::LANES))
            });
            // Exactly `R` weights, so that the loop unrolls and the sums stay in registers.
            for (sum, &weight) in sums.iter_mut().zip(&a[first_row..first_row + R]) {
                // SAFETY: the CPU has `V`'s features.
                let weight = unsafe { V::splat(weight) };
                for (sum, &column) in sum.iter_mut().zip(&columns) {
                    // SAFETY: the CPU has `V`'s features.
                    *sum = unsafe { V::fmadd(weight, column, *sum) };
                }
            }
        }
        let columns = (H * V::LANES).min(width - first_column);
        for (row, sum) in sums.iter().enumerate().take(rows - first_row) {
            let line = &mut tile[(first_row + row) * ldc + first_column..][..columns];
            let bias = match start {
                Start::Bias(bias) => Some(bias[first_row + row]),
                Start::Sums => None,
            };
            for (half, &sum) in sum.iter().enumerate() {
                let count = (columns - half * V::LANES).min(V::LANES);
                let part = &mut line[half * V::LANES..][..count];
                // SAFETY: the CPU has `V`'s features, and `part` holds the `count` floats that
                // `load_first` reads and `store_first` writes.
                unsafe {
                    let before = match bias {
                        Some(bias) => V::splat(bias),
                        None => V::load_first(part.as_ptr(), count),
                    };
                    let value = V::add(before, sum);
                    let value = if relu { V::max(value, V::zero()) } else { value };
                    value.store_first(part.as_mut_ptr(), count);
                }
            }
        }
    }

    /// Asks for the cache line holding `at` to be brought into L1. `at` need not point into
    /// anything (make it with `wrapping_add`): a prefetch reads nothing and cannot fault.
    #[inline(always)]
    fn prefetch(at: *const f32) {
        // SAFETY: SSE is part of x86_64, and a prefetch only hints (see above).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast()) };
    }

    /// The few vector operations the kernel body needs, for one register width. Every method
    /// needs the CPU feature of its width, `load` a valid run of `LANES` floats, `load_first`
    /// and `store_first` one of `count` (at most `LANES`).
    pub(crate) trait Vector: Copy {
        const LANES: usize;
        /// Whether the kernel asks for its operands' cache lines ahead of use ([`B_AHEAD`],
        /// [`A_AHEAD`]) at this width.
        const PREFETCH: bool;
        unsafe fn zero() -> Self;
        unsafe fn splat(value: f32) -> Self;
        /// `LANES` floats from `at`.
        unsafe fn load(at: *const f32) -> Self;
        /// The first `count` lanes from `at`, zeros after them.
        unsafe fn load_first(at: *const f32, count: usize) -> Self;
        /// Stores the first `count` lanes at `at`.
        unsafe fn store_first(self, at: *mut f32, count: usize);
        unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self;
        unsafe fn add(a: Self, b: Self) -> Self;
        unsafe fn max(a: Self, b: Self) -> Self;
    }

    /// Implements [`Vector`] for one register type with its intrinsics, but for `load_first`
    /// and `store_first`. Each method keeps the contract of [`Vector`] and passes it on.
    macro_rules! vector {
        ($type:ty, $lanes:expr, $zero:ident, $splat:ident, $load:ident, $fmadd:ident, $add:ident, $max:ident, $($partial:item)*) => {
            impl Vector for $type {
                $($partial)*
                const LANES: usize = $lanes;
                #[inline(always)]
                unsafe fn zero() -> Self {
                    // SAFETY: the caller's CPU has this width's feature.
                    unsafe { $zero() }
                }
                #[inline(always)]
                unsafe fn splat(value: f32) -> Self {
                    // SAFETY: the caller's CPU has this width's feature.
                    unsafe { $splat(value) }
                }
                #[inline(always)]
                unsafe fn load(at: *const f32) -> Self {
                    // SAFETY: the caller's CPU has this width's feature, and `LANES` floats
                    // from `at` are valid to read.
                    unsafe { $load(at) }
                }
                #[inline(always)]
                unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
                    // SAFETY: the caller's CPU has this width's feature.
                    unsafe { $fmadd(a, b, c) }
                }
                #[inline(always)]
                unsafe fn add(a: Self, b: Self) -> Self {
                    // SAFETY: the caller's CPU has this width's feature.
                    unsafe { $add(a, b) }
                }
                #[inline(always)]
                unsafe fn max(a: Self, b: Self) -> Self {
                    // SAFETY: the caller's CPU has this width's feature.
                    unsafe { $max(a, b) }
                }
            }
        };
    }

    vector! {
        __m512,
        16,
        _mm512_setzero_ps,
        _mm512_set1_ps,
        _mm512_loadu_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        _mm512_max_ps,
        const PREFETCH: bool = true;
        // Masked: lanes past `count` are neither read nor written.
        #[inline(always)]
        unsafe fn load_first(at: *const f32, count: usize) -> Self {
            // SAFETY: the caller's CPU has AVX-512F and `count` floats at `at` are valid; the
            // mask keeps the load to them.
            unsafe { _mm512_maskz_loadu_ps(lanes(count), at) }
        }
        #[inline(always)]
        unsafe fn store_first(self, at: *mut f32, count: usize) {
            // SAFETY: the caller's CPU has AVX-512F and `count` floats at `at` are valid to
            // write; the mask keeps the store to them.
            unsafe { _mm512_mask_storeu_ps(at, lanes(count), self) }
        }
    }
    vector! {
        __m256,
        8,
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_loadu_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        _mm256_max_ps,
        const PREFETCH: bool = false;
        // Whole vectors directly, parts through a copy on the stack.
        #[inline(always)]
        unsafe fn load_first(at: *const f32, count: usize) -> Self {
            let mut values = [0f32; 8];
            // SAFETY: the caller's CPU has AVX2 and `count` (at most 8) floats at `at` are valid
            // to read; `values` holds 8.
            unsafe {
                if count == 8 {
                    return _mm256_loadu_ps(at);
                }
                std::ptr::copy_nonoverlapping(at, values.as_mut_ptr(), count);
                _mm256_loadu_ps(values.as_ptr())
            }
        }
        #[inline(always)]
        unsafe fn store_first(self, at: *mut f32, count: usize) {
            let mut values = [0f32; 8];
            // SAFETY: the caller's CPU has AVX2 and `count` (at most 8) floats at `at` are valid
            // to write; `values` holds 8.
            unsafe {
                if count == 8 {
                    return _mm256_storeu_ps(at, self);
                }
                _mm256_storeu_ps(values.as_mut_ptr(), self);
                std::ptr::copy_nonoverlapping(values.as_ptr(), at, count);
            }
        }
    }

    /// The mask of the first `count` of 16 lanes.
    #[inline(always)]
    fn lanes(count: usize) -> __mmask16 {
        if count >= 16 {
            u16::MAX
        } else {
            (1u16 << count) - 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bias + A B` the plain way, for `a` (rows x depth) and `b` (depth x columns), row-major.
    fn naive(a: &[f32], b: &[f32], bias: &[f32], [rows, depth, columns]: [usize; 3]) -> Vec<f32> {
        let mut out: Vec<f32> = bias.iter().flat_map(|&v| vec![v; columns]).collect();
        for r in 0..rows {
            for j in 0..columns {
                let dot: f32 = (0..depth).map(|k| a[r * depth + k] * b[k * columns + j]).sum();
                out[r * columns + j] += dot;
            }
        }
        out
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * 7919 + seed * 104_729) % 211) as f32 / 105.0 - 1.0).collect()
    }

    #[test]
    fn every_kernel_matches_the_plain_product_on_ragged_shapes() {
        let kernels = Kernel::available();
        assert!(!kernels.is_empty() || cfg!(not(target_arch = "x86_64")));
        // Rows and columns off the tile size, a depth across two blocks, tiny ones.
        let shapes = [
            [8, 32, 32],
            [13, 300, 45],
            [3, 5, 7],
            [16, 513, 70],
            [1, 1, 1],
            [20, 64, 17],
            [13, 300, 64],
            [24, 40, 33],
            [28, 70, 96],
            // A panel of 12 rows with 10 used, and one with 11: its last part is short.
            [10, 37, 40],
            [23, 100, 64],
        ];
        for kernel in kernels {
            for (seed, [rows, depth, columns]) in shapes.into_iter().enumerate() {
                let (a, b, bias) = (
                    values(rows * depth, seed),
                    values(depth * columns, seed + 1),
                    values(rows, 3),
                );
                let mut panels = vec![f32::NAN; panels_len(depth, columns)];
                for (k, line) in b.chunks_exact(columns).enumerate() {
                    for (j, &v) in line.iter().enumerate() {
                        panels[panel_index(depth, k, j)] = v;
                    }
                }
                // The same `B` row-major as it stands, its rows 3 floats longer than its columns.
                let stride = columns + 3;
                let mut rows_of_b = vec![f32::NAN; depth * stride];
                for (to, from) in rows_of_b.chunks_exact_mut(stride).zip(b.chunks_exact(columns)) {
                    to[..columns].copy_from_slice(from);
                }
                // And its steps in reverse order, each run found by its offset.
                let runs = depth * stride + PANEL;
                let mut reversed = vec![f32::NAN; runs];
                let offsets: Vec<usize> = (0..depth).map(|k| (depth - 1 - k) * stride).collect();
                for (&offset, from) in offsets.iter().zip(b.chunks_exact(columns)) {
                    reversed[offset..][..columns].copy_from_slice(from);
                }
                let mut operands = vec![Right::Panels(&panels), Right::Runs(&reversed, &offsets)];
                if columns.is_multiple_of(PANEL) {
                    operands.push(Right::Rows(&rows_of_b, stride));
                }
                let expected = naive(&a, &b, &bias, [rows, depth, columns]);
                let runs = operands.iter().flat_map(|&b| [(false, b), (true, b)]);
                for (relu, b) in runs {
                    let mut out = vec![f32::NAN; rows * columns];
                    let packed = PackedWeights::new(&a, &bias, rows, depth);
                    multiply(kernel, &packed, b, columns, &mut out, columns, relu);
                    for (got, want) in out.iter().zip(&expected) {
                        let want = if relu { want.max(0.0) } else { *want };
                        assert!(
                            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                            "{kernel:?} {rows}x{depth}x{columns}, relu {relu}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn packing_puts_each_depth_step_of_a_row_panel_together() {
        // 14 rows: two panels of 8, the second with two rows of zeros.
        let weights: Vec<f32> = (0..14 * 3).map(|v| v as f32).collect();
        let bias: Vec<f32> = (0..14).map(|v| -(v as f32)).collect();
        let packed = PackedWeights::new(&weights, &bias, 14, 3);
        assert_eq!(packed.data.len(), 16 * 3);
        assert_eq!(packed.bias[8..], [-8.0, -9.0, -10.0, -11.0, -12.0, -13.0, 0.0, 0.0]);
        // Step 1 of the first panel: column 1 of rows 0..8.
        let step: Vec<f32> = (0..8).map(|r| (r * 3 + 1) as f32).collect();
        assert_eq!(&packed.data[8..16], &step[..]);
        // Step 0 of the second panel, from row 8 on.
        assert_eq!(&packed.data[24..32], &[24.0, 27.0, 30.0, 33.0, 36.0, 39.0, 0.0, 0.0]);
    }

    #[test]
    fn row_panels_are_whole_but_for_the_last_rows_by_fours() {
        let panels = |rows| row_panels(rows).collect::<Vec<_>>();
        assert_eq!(panels(0), []);
        assert_eq!(panels(3), [(0, 4)]);
        assert_eq!(panels(8), [(0, 8)]);
        assert_eq!(panels(12), [(0, 12)]);
        assert_eq!(panels(16), [(0, 8), (8, 8)]);
        assert_eq!(panels(20), [(0, 12), (12, 8)]);
        assert_eq!(panels(64), [(0, 12), (12, 12), (24, 12), (36, 12), (48, 8), (56, 8)]);
        assert_eq!(row_panels(192).count(), 16);
    }
}
