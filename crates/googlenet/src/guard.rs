//! A boundary for panics and runaway allocations in dependencies. tract looks up tensors and
//! attributes by the names a model file gives and panics when a malformed file names something
//! that is not there (found by fuzzing the loader, see `fuzz/`); and while loading it evaluates
//! whatever a model computes from constants, however large (a `ConstantOfShape` of 40000 x 40000
//! took a minute and 6 GB before it was thrown away). The image decoders have panicked on
//! malformed files too (png 0.18.1 on a palette that is not whole RGB entries). [`catch`]
//! turns such a panic into an error, without the panic message on stderr, and refuses any
//! single allocation over [`MAX_ALLOCATION_BYTES`] made inside it; any other panic is reported
//! as usual. [`catch_load`] also holds loading to [`MAX_LOAD_BYTES`] in all: a model computing
//! several large constants could otherwise hold them all at once.
//!
//! The allocation limits need the binary's global allocator, which asks [`admits`] before
//! each allocation and reports to [`count`]; a library does not install one for its users. This
//! module is public for that allocator alone (and for its tests, which run [`catch`] and
//! [`catch_load`]): the library forbids `unsafe` code, so the allocator lives in the binary,
//! and it must ask this module's per-thread state.

use std::alloc::Layout;
use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, Result};

use crate::files::Size;

/// The largest single allocation the work of [`catch`] may make. tract allocates tensors
/// fallibly, so a refused one is an error, and the project's own operators check their buffers
/// against the same 4 GiB first. GoogLeNet's largest tensor, conv1's output at the largest
/// batch (256), is 822 MB; a whole run is held to the same 4 GiB at load (see `model`).
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

/// Whether the allocator may make an allocation of `layout` that grows the heap by `added`
/// bytes: on a thread inside [`catch`] it may not when the allocation is over
/// [`MAX_ALLOCATION_BYTES`], or when it is a tensor's that would take the heap over the
/// thread's ceiling in [`catch_load`]; a refusal is remembered for [`catch`] to report, the
/// first that the ceiling made or else the largest allocation. The binary's global allocator
/// asks this before each allocation and reports what it made and freed with [`count`]; without
/// such an allocator (an embedding that installs none) nothing is refused, and panics are still
/// contained.
pub fn admits(layout: Layout, added: usize) -> bool {
    if !CATCHING.try_with(Cell::get).unwrap_or(false) {
        return true;
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
        return true;
    };
    let _ = REFUSED.try_with(|refused| {
        let kept = match (refused.get(), refusal) {
            (Some(Refusal::TooLarge(a)), Refusal::TooLarge(b)) => Refusal::TooLarge(a.max(b)),
            (Some(first @ Refusal::OverBudget(_)), _) => first,
            (_, refusal) => refusal,
        };
        refused.set(Some(kept));
    });
    false
}

/// Counts `added` bytes more and `freed` bytes fewer held on the heap, all threads together:
/// the allocator's report of an allocation it made, resized or freed.
pub fn count(added: usize, freed: usize) {
    HELD.fetch_add(added as u64, Ordering::Relaxed);
    HELD.fetch_sub(freed as u64, Ordering::Relaxed);
}

/// Installs a panic hook that stays silent inside [`catch`] and otherwise calls the hook that
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
pub(crate) enum Breach {
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
pub(crate) fn contain<T, E>(work: impl FnOnce() -> Result<T, E>) -> Result<Result<T, E>, Breach> {
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

/// Runs `work` with panics silenced and allocations over [`MAX_ALLOCATION_BYTES`] refused,
/// turning a panic inside it into the error "the model is malformed (tract: message)", and a
/// failure after a refused allocation into "the model needs a tensor
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
    result
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
    fn the_allocator_is_told_to_refuse_inside_contain_only() {
        let bytes = MAX_ALLOCATION_BYTES + 1;
        let huge = Layout::from_size_align(usize::try_from(bytes).unwrap(), 1).unwrap();
        assert!(admits(huge, huge.size()), "outside contain nothing is refused");
        let refused = contain(|| if admits(huge, huge.size()) { Ok(()) } else { Err(()) });
        assert_eq!(refused, Err(Breach::TooLarge(bytes)));
        assert!(contain(|| Ok::<_, ()>(())).is_ok(), "the refusal is forgotten");
    }
}
