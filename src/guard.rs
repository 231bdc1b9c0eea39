//! A boundary for panics and runaway allocations in dependencies. tract looks up tensors and
//! attributes by the names a model file gives and panics when a malformed file names something
//! that is not there (found by fuzzing the loader, see `fuzz/`); and while loading it evaluates
//! whatever a model computes from constants, however large (a `ConstantOfShape` of 40000 x 40000
//! took a minute and 6 GB before it was thrown away). The image decoders have panicked on
//! malformed files too (png 0.18.1 on a palette that is not whole RGB entries). [`contain`]
//! turns such a panic into a [`Breach`], without the panic message on stderr, and refuses any
//! single allocation over [`MAX_ALLOCATION_BYTES`] made inside it; any other panic is reported
//! as usual. [`catch`] is [`contain`] for the model, with its errors worded, and [`catch_load`]
//! also holds loading to [`MAX_LOAD_BYTES`] in all: a model computing several large constants
//! could otherwise hold them all at once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, Result};

use crate::files::Size;

/// The largest single allocation the work of [`contain`] may make. tract allocates tensors
/// fallibly, so a refused one is an error, and the project's own operators check their buffers
/// against it first (`model::custom::zeros`). GoogLeNet's largest tensor, conv1's output at the
/// largest batch (256), is 822 MB; a whole run is held to the same 4 GiB at load (see `model`).
pub const MAX_ALLOCATION_BYTES: u64 = 4 << 30;

/// How much more heap loading a model ([`catch_load`]) may hold, all allocations together, than
/// when it started. Classifying a photo with GoogLeNet peaks at 113 MB in all; a model of 1 GB,
/// parsed and packed, fits.
pub const MAX_LOAD_BYTES: u64 = 4 << 30;

/// The least alignment of an allocation that the ceiling of [`catch_load`] refuses. tract
/// allocates tensors aligned to 16 bytes or more and turns a refusal into a panic, which
/// [`contain`] catches; a `Vec` of numbers (aligned to 8 at most) aborts the process on one, so
/// it is left to the limit of [`MAX_ALLOCATION_BYTES`] and to `model`'s checks.
const CEILING_ALIGN: usize = 16;

/// The bytes the process holds on the heap, all threads together.
static HELD: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// What [`HELD`] may not exceed inside [`catch_load`].
    static CEILING: Cell<u64> = const { Cell::new(u64::MAX) };
    static REFUSED: Cell<Option<Refusal>> = const { Cell::new(None) };
}

/// An allocation refused inside [`contain`].
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// Of this many bytes, over [`MAX_ALLOCATION_BYTES`].
    TooLarge(u64),
    /// Of this many bytes, that would have taken the heap over the ceiling.
    OverBudget(u64),
}

/// The system allocator, counting what it holds. On a thread inside [`contain`] it refuses
/// (returns null for) an allocation over [`MAX_ALLOCATION_BYTES`], or a tensor's that would
/// take the heap over the thread's ceiling, and remembers the refusal.
pub struct Bounded;

#[global_allocator]
static ALLOCATOR: Bounded = Bounded;

/// Whether growing the heap by `added` bytes for an allocation of `layout` is refused here; a
/// refusal is remembered, the first that the ceiling made or else the largest allocation.
fn refuses(layout: Layout, added: usize) -> bool {
    if !CATCHING.try_with(Cell::get).unwrap_or(false) {
        return false;
    }
    let size = layout.size() as u64;
    let held = HELD.load(Ordering::Relaxed).saturating_add(added as u64);
    let refusal = if size > MAX_ALLOCATION_BYTES {
        Refusal::TooLarge(size)
    } else if layout.align() >= CEILING_ALIGN
        && held > CEILING.try_with(Cell::get).unwrap_or(u64::MAX)
    {
        Refusal::OverBudget(size)
    } else {
        return false;
    };
    let _ = REFUSED.try_with(|refused| {
        let kept = match (refused.get(), refusal) {
            (Some(Refusal::TooLarge(a)), Refusal::TooLarge(b)) => Refusal::TooLarge(a.max(b)),
            (Some(first @ Refusal::OverBudget(_)), _) => first,
            (_, refusal) => refusal,
        };
        refused.set(Some(kept));
    });
    true
}

/// `pointer`, counting `added` bytes held and `freed` no longer held unless it is null.
fn counted(pointer: *mut u8, added: usize, freed: usize) -> *mut u8 {
    if !pointer.is_null() {
        HELD.fetch_add(added as u64, Ordering::Relaxed);
        HELD.fetch_sub(freed as u64, Ordering::Relaxed);
    }
    pointer
}

// SAFETY: every call is passed on to `System` unchanged, or answered with null, which the
// `GlobalAlloc` contract allows for any allocation.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refuses(layout, layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `alloc`'s contract, which is `System`'s.
        counted(unsafe { System.alloc(layout) }, layout.size(), 0)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refuses(layout, layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as for `alloc`.
        counted(unsafe { System.alloc_zeroed(layout) }, layout.size(), 0)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if refuses(new_layout, new_size.saturating_sub(layout.size())) {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` and `layout` come from this allocator, which is `System`'s.
        counted(unsafe { System.realloc(ptr, layout, new_size) }, new_size, layout.size())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Installs a panic hook that stays silent inside [`contain`] and otherwise calls the hook that
/// was in place. Call it once, at start-up.
pub fn install_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !CATCHING.with(Cell::get) {
            previous(info);
        }
    }));
}

/// What went wrong inside [`contain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breach {
    /// The work panicked, with this message.
    Panicked(String),
    /// The work failed after an allocation of this many bytes was refused.
    TooLarge(u64),
    /// The work failed after an allocation of this many bytes was refused because it would
    /// have taken the heap over the ceiling of [`catch_load`] (outside it there is none).
    OverBudget(u64),
}

/// Runs `work` with panics silenced and allocations over [`MAX_ALLOCATION_BYTES`] refused. Its
/// result passes through, unless it panicked ([`Breach::Panicked`]) or it panicked or failed
/// after a refused allocation ([`Breach::TooLarge`], the largest refused).
pub fn contain<T, E>(work: impl FnOnce() -> Result<T, E>) -> Result<Result<T, E>, Breach> {
    let outer = CATCHING.with(|catching| catching.replace(true));
    let outer_refused = REFUSED.with(|refused| refused.replace(None));
    let result = std::panic::catch_unwind(AssertUnwindSafe(work));
    CATCHING.with(|catching| catching.set(outer));
    let refused = REFUSED.with(|refused| refused.replace(outer_refused));
    match (result, refused) {
        (Err(_) | Ok(Err(_)), Some(Refusal::TooLarge(bytes))) => Err(Breach::TooLarge(bytes)),
        (Err(_) | Ok(Err(_)), Some(Refusal::OverBudget(bytes))) => Err(Breach::OverBudget(bytes)),
        (Ok(result), _) => Ok(result),
        (Err(payload), None) => Err(Breach::Panicked(message(payload.as_ref()))),
    }
}

/// Runs `work` in [`contain`], turning a panic inside it into the error "the model is malformed
/// (tract: message)", and a failure after a refused allocation into "the model needs a tensor
/// of ..., over the limit of 4 GiB" (or, in [`catch_load`], "loading the model needs more than
/// 4 GiB of memory").
pub fn catch<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    match contain(work) {
        Ok(result) => result,
        Err(Breach::Panicked(message)) => Err(anyhow!("the model is malformed (tract: {message})")),
        Err(Breach::TooLarge(bytes)) => Err(anyhow!(
            "the model needs a tensor of {}, over the limit of {}",
            Size(bytes),
            Size(MAX_ALLOCATION_BYTES)
        )),
        Err(Breach::OverBudget(_)) => {
            Err(anyhow!("loading the model needs more than {} of memory", Size(MAX_LOAD_BYTES)))
        }
    }
}

/// [`catch`] for loading a model: its allocations together may add at most [`MAX_LOAD_BYTES`]
/// to the heap. tract evaluates whatever a model computes from constants while loading it, so
/// without this a small file could hold many tensors of just under 4 GiB at once.
pub fn catch_load<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    let ceiling = HELD.load(Ordering::Relaxed).saturating_add(MAX_LOAD_BYTES);
    let outer = CEILING.with(|outer| outer.replace(ceiling.min(outer.get())));
    let result = catch(work);
    CEILING.with(|restored| restored.set(outer));
    release_freed();
    result
}

/// Hands the heap's free pages back to the system. Loading a model peaks well above what it
/// keeps (the parsed file, tract's unpacked weights); glibc keeps the freed pages, and the
/// worker threads' arenas do not reuse them.
fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: `malloc_trim` only returns unused heap pages to the kernel; it takes no
        // pointer and leaves every allocation where it is.
        unsafe { malloc_trim(0) };
    }
}

/// The message of a panic whose payload is `payload`.
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors_and_results_pass_through() {
        install_hook();
        let err = catch(|| -> Result<()> { panic!("no entry found for key") });
        assert_eq!(
            err.unwrap_err().to_string(),
            "the model is malformed (tract: no entry found for key)"
        );
        assert_eq!(catch(|| Ok(7)).unwrap(), 7);
        let slice = std::hint::black_box(&[1u8][..]);
        let breach = contain(|| -> Result<u8, ()> { Ok(slice[..3].iter().sum()) }).unwrap_err();
        assert_eq!(
            breach,
            Breach::Panicked("range end index 3 out of range for slice of length 1".into())
        );
        assert_eq!(contain(|| Err::<(), _>("an error")), Ok(Err("an error")));
        assert!(!CATCHING.with(Cell::get), "the flag is reset");
    }

    #[test]
    fn allocations_over_the_limit_fail_inside_catch_only() {
        let huge = usize::try_from(MAX_ALLOCATION_BYTES + (1 << 20)).unwrap();
        let err = catch(|| -> Result<()> {
            let mut bytes: Vec<u8> = Vec::new();
            bytes.try_reserve_exact(huge)?;
            Ok(())
        });
        assert_eq!(
            err.unwrap_err().to_string(),
            "the model needs a tensor of 4097 MiB, over the limit of 4 GiB"
        );
        assert!(catch(|| Ok(Vec::<u8>::with_capacity(1 << 20))).is_ok());
        let layout = Layout::from_size_align(huge, 1).unwrap();
        assert!(!refuses(layout, huge), "outside catch nothing is refused");
        assert!(REFUSED.with(Cell::get).is_none(), "the refusal is forgotten");
    }

    #[test]
    fn loading_holds_at_most_its_budget_in_all() {
        /// Aligned as tract's tensors are.
        #[repr(align(16))]
        struct Lane {
            _bytes: [u8; 16],
        }
        // Reserved, not written: the pages are never touched.
        let three_gib = 3 << 30;
        let reserve = |lanes: &mut Vec<Lane>| lanes.try_reserve_exact(three_gib / 16);
        let err = catch_load(|| -> Result<()> {
            let (mut first, mut second) = (Vec::new(), Vec::new());
            reserve(&mut first)?;
            reserve(&mut second)?;
            Ok(())
        });
        assert_eq!(
            err.unwrap_err().to_string(),
            "loading the model needs more than 4 GiB of memory"
        );
        let freed = catch_load(|| -> Result<()> {
            for _ in 0..3 {
                reserve(&mut Vec::new())?;
            }
            Ok(())
        });
        assert!(freed.is_ok(), "what is freed again does not count");
        let bytes = catch_load(|| -> Result<()> {
            let mut lanes = Vec::new();
            reserve(&mut lanes)?;
            Ok(Vec::<u8>::new().try_reserve_exact(three_gib)?)
        });
        assert!(bytes.is_ok(), "a Vec of bytes, which would abort on a refusal, is not refused");
        let outside = catch(|| -> Result<()> {
            let (mut first, mut second) = (Vec::new(), Vec::new());
            reserve(&mut first)?;
            Ok(reserve(&mut second)?)
        });
        assert!(outside.is_ok(), "runs have no ceiling");
        assert_eq!(CEILING.with(Cell::get), u64::MAX, "the ceiling is lifted");
    }
}
