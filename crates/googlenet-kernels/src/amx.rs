//! The bf16 product on AMX's tiles: `tdpbf16ps` adds to a 16 x 16 tile of f32 sums the
//! products of a 16-row tile of the weights (16 words of a row, 32 bf16s) and a 16-row tile of
//! `B` (16 groups of a panel's 16 columns), which is [`Words`]' panel as it stands: a panel's
//! groups are a tile's rows, [`COLUMNS`] words apart in panels or `stride` apart where `B` is
//! read as it lies. The weights are rows of words ([`Lines`]), 16 rows to a tile.
//!
//! **Walk.** Each tile of `C` is 16 rows by 2 panels: per 16 groups of depth, one tile of
//! weights and two of `B`, for two `tdpbf16ps` (tiles 0 and 1 the sums, 2 the weights, 3 and
//! 4 the panels). The depth's last groups, fewer than 16, take tiles 5 to 7, configured that
//! short, so nothing is read past the depth. The sums go through a buffer on the stack, where
//! each row's bias and the ReLU are applied on the way to `C`.
//!
//! **Leave.** Linux hands out AMX's tile state only to a process that asks for it
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); [`usable`] asks once, and the
//! `amx` kernel exists only where the CPU has AMX-BF16 and the kernel said yes. The tile
//! configuration is a thread's: each product loads it first and releases the tiles after.

#![allow(
    clippy::indexing_slicing,
    reason = "the tiles' rows and the stored sums are cut from lengths `words::tiles` checks"
)]

use super::bf16;
use super::gemm::Kernel;
use super::words::{self, Words, COLUMNS};

/// Rows of a tile: of the weights, of `C`.
pub const ROWS: usize = 16;
/// Groups (words) of depth per tile.
const DEPTH: usize = 16;
/// Panels of `B` per tile of `C`.
const PANELS: usize = 2;

/// The weights as AMX reads them: `rows` (padded with zero rows to a multiple of [`ROWS`]) of
/// `groups` words each, row after row, and each row's bias, zero-padded the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct Lines {
    /// Output channels.
    pub rows: usize,
    /// The depth in words.
    pub groups: usize,
    /// Row `r`'s group `g` at `r * groups + g`.
    pub words: Vec<u32>,
    /// One per row, and zeros for the padding rows.
    pub bias: Vec<f32>,
}

impl Lines {
    /// The row-major words of [`words::Weights`] with one row a panel, padded to whole tiles.
    pub fn new(packed: words::Weights<1>) -> Lines {
        let words::Weights { rows, groups, mut words, mut bias } = packed;
        let padded = rows.next_multiple_of(ROWS);
        words.resize(padded * groups, 0);
        bias.resize(padded, 0.0);
        Lines { rows, groups, words, bias }
    }
}

/// Whether this CPU has AMX-BF16 and this process may use its tiles: asked of the kernel once.
pub fn usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| cpu_has_amx_bf16() && os_grants_tiles())
}

/// CPUID leaf 7: AMX-BF16 (EDX bit 22) and AMX-TILE (EDX bit 24).
#[cfg(target_arch = "x86_64")]
fn cpu_has_amx_bf16() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // Leaf 0 says how many leaves there are.
    if __cpuid(0).eax < 7 {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    edx & (1 << 22) != 0 && edx & (1 << 24) != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_amx_bf16() -> bool {
    false
}

/// Asks Linux for the tile data state (`ARCH_REQ_XCOMP_PERM`, `XFEATURE_XTILEDATA`): without
/// it, the first tile instruction kills the process.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn os_grants_tiles() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM reads no memory: it only widens what this
    // process may use, or fails (an older kernel, no AMX) with an error code.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn os_grants_tiles() -> bool {
    false
}

/// `C = A B + bias` for the first `columns` columns of `B` on the `amx` kernel (`kernel`
/// proves the CPU has it: only [`Kernel::available`] makes one, after [`usable`]). `C` holds a
/// row per row of `a`, `ldc` floats apart, of at least `columns` values; what they held is not
/// read. With `relu`, every value not above zero is stored as zero.
pub fn multiply(
    kernel: Kernel,
    a: &Lines,
    b: Words,
    columns: usize,
    (c, ldc): (&mut [f32], usize),
    relu: bool,
) {
    assert_eq!(kernel.bf16_unit(), super::gemm::Bf16Unit::Tiles, "the amx product on {kernel:?}");
    let groups = a.groups;
    if a.rows == 0 || columns == 0 || groups == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let config = x86::Config::new(groups % DEPTH);
        // SAFETY: the CPU has AMX and the process has the kernel's leave (the `Kernel`), and
        // the configuration is valid for palette 1 (`Config::new`).
        unsafe { x86::load(&config) };
        words::tiles::<ROWS, PANELS, _>([a.rows, groups], b, columns, (c, ldc), |block| {
            let weights = &a.words[block * ROWS * groups..][..ROWS * groups];
            let bias = &a.bias[block * ROWS..][..ROWS];
            move |b, tile, shape| {
                debug_assert!(b.0.len() >= (groups - 1) * b.1 + COLUMNS);
                // SAFETY: the tiles are configured (`load` above, on this thread); `weights`
                // holds `ROWS` lines of `groups` words, and `words::tiles` cut `b` to the
                // panels' `groups` runs of `COLUMNS` words, `stride` apart, for every panel
                // of the tile's `width` columns, `apart` words from each other.
                let sums = unsafe { x86::sums(weights, groups, b, shape[2]) };
                end(&sums, tile, shape, (bias, relu));
            }
        });
        // SAFETY: as for `load`.
        unsafe { x86::release() };
    }
    #[cfg(not(target_arch = "x86_64"))]
    kernel.unreachable();
}

/// The tile's sums, `ROWS x PANELS * COLUMNS` f32s (each panel's tile, row by row, after the
/// other's), into `rows` lines of `tile` (`ldc` apart, `width` used), each ended with its
/// row's bias and the ReLU ([`bf16::end`]).
fn end(
    sums: &[f32],
    tile: &mut [f32],
    [ldc, rows, width]: [usize; 3],
    (bias, relu): (&[f32], bool),
) {
    for (row, &bias) in bias.iter().enumerate().take(rows) {
        let line = &mut tile[row * ldc..][..width];
        for (panel, part) in line.chunks_mut(COLUMNS).enumerate() {
            let sums = &sums[(panel * ROWS + row) * COLUMNS..][..part.len()];
            for (out, &sum) in part.iter_mut().zip(sums) {
                *out = bf16::end(sum, bias, relu);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The tile instructions, through `asm!`. Tiles keep their values from one `asm!` block to
    //! the next: the compiler itself never uses them.

    use std::arch::asm;

    use super::{COLUMNS, DEPTH, PANELS, ROWS};

    /// The 64-byte tile configuration `ldtilecfg` reads: palette 1; tiles 0 and 1 the sums
    /// (16 rows of 16 f32s), 2 the weights (16 rows of 16 words), 3 and 4 two panels of `B`
    /// (16 groups of 16 words); for a depth that is not a multiple of 16, 5 the weights' and
    /// 6 and 7 the panels' last `tail` groups. Unused tiles are configured empty.
    #[repr(C, align(64))]
    pub struct Config {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        /// Bytes per row of each tile.
        colsb: [u16; 16],
        /// Rows of each tile.
        rows: [u8; 16],
    }

    impl Config {
        /// The configuration for a depth that leaves `tail` groups (below 16) past its whole
        /// tiles.
        pub fn new(tail: usize) -> Config {
            const ROW_BYTES: u16 = 64;
            let mut config = Config {
                palette: 1,
                start_row: 0,
                reserved: [0; 14],
                colsb: [0; 16],
                rows: [0; 16],
            };
            for tile in 0..5 {
                config.colsb[tile] = ROW_BYTES;
                config.rows[tile] = ROWS as u8;
            }
            if tail > 0 {
                config.colsb[5] = (tail * 4) as u16;
                config.rows[5] = ROWS as u8;
                for tile in [6, 7] {
                    config.colsb[tile] = ROW_BYTES;
                    config.rows[tile] = tail as u8;
                }
            }
            config
        }
    }

    const _: () = assert!(std::mem::size_of::<Config>() == 64);
    const _: () = assert!(COLUMNS * 4 == 64 && DEPTH * 4 == 64 && ROWS == 16 && PANELS == 2);

    /// Loads the tile configuration.
    ///
    /// # Safety
    /// The CPU has AMX-TILE and the process the kernel's leave to use it ([`super::usable`]).
    pub unsafe fn load(config: &Config) {
        // SAFETY: as the contract says; `config` is 64 valid bytes of palette 1 whose tiles fit
        // its limits (8 tiles of at most 16 rows of 64 bytes).
        unsafe { asm!("ldtilecfg [{}]", in(reg) config, options(nostack, readonly)) };
    }

    /// Returns the tiles to their initial state, ending their use on this thread.
    ///
    /// # Safety
    /// As [`load`].
    pub unsafe fn release() {
        // SAFETY: as the contract says.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }

    /// One tile of `C`'s sums: `ROWS` rows of `a` (`groups` words each) by the panels of `b`
    /// that `width` columns take (1 or 2), each panel's `ROWS x COLUMNS` sums after the
    /// other's. A second panel's sums, where `width` takes one, are zero.
    ///
    /// # Safety
    /// [`load`] ran on this thread with `Config::new(groups % DEPTH)`; `a` holds `ROWS * groups`
    /// words; `b.0` holds each of the `width.div_ceil(COLUMNS)` panels' `groups` runs of
    /// `COLUMNS` words, `b.1` apart, the panels `b.2` apart.
    pub unsafe fn sums(
        a: &[u32],
        groups: usize,
        (b, stride, apart): (&[u32], usize, usize),
        width: usize,
    ) -> [f32; PANELS * ROWS * COLUMNS] {
        let mut sums = [0f32; PANELS * ROWS * COLUMNS];
        let (a_stride, b_stride) = (groups * 4, stride * 4);
        let two = width > COLUMNS;
        // One step of the depth from group `$g` on, on tiles `$a` (weights), `$b` and `$c`
        // (the panels): tile 0's sums and, with `two`, tile 1's.
        macro_rules! step {
            ($g:expr, $a:literal, $b:literal, $c:literal) => {
                let (weights, panel) = (a.as_ptr().add($g), b.as_ptr().add($g * stride));
                asm!(
                    concat!("tileloadd ", $a, ", [{a} + {sa}]"),
                    concat!("tileloadd ", $b, ", [{b} + {sb}]"),
                    concat!("tdpbf16ps tmm0, ", $a, ", ", $b),
                    a = in(reg) weights, sa = in(reg) a_stride,
                    b = in(reg) panel, sb = in(reg) b_stride,
                    options(nostack, readonly),
                );
                if two {
                    asm!(
                        concat!("tileloadd ", $c, ", [{b} + {sb}]"),
                        concat!("tdpbf16ps tmm1, ", $a, ", ", $c),
                        b = in(reg) panel.add(apart), sb = in(reg) b_stride,
                        options(nostack, readonly),
                    );
                }
            };
        }
        // SAFETY (every block below): the tiles are configured as `Config::new` says; each
        // load reads `rows` rows of `colsb` bytes, `stride` bytes apart, from a start inside the
        // operand: the weights' 16 rows from group `g` on (`g + depth <= groups`), a panel's
        // `depth` groups from group `g` on, which the contract says `b` holds.
        unsafe {
            asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
            let whole = groups - groups % DEPTH;
            for g in (0..whole).step_by(DEPTH) {
                step!(g, "tmm2", "tmm3", "tmm4");
            }
            if whole < groups {
                step!(whole, "tmm5", "tmm6", "tmm7");
            }
            // Each panel's sums: 16 rows of 64 bytes.
            let out = sums.as_mut_ptr();
            asm!(
                "tilestored [{c} + {s}], tmm0",
                "tilestored [{d} + {s}], tmm1",
                c = in(reg) out, d = in(reg) out.add(ROWS * COLUMNS), s = in(reg) COLUMNS * 4,
                options(nostack),
            );
        }
        sums
    }
}
