//! A boundary for panics and runaway allocations in dependencies. tract looks up tensors and
//! attributes by the names a model file gives and panics when a malformed file names something
//! that is not there (found by fuzzing the loader, see `fuzz/`); and while loading it evaluates
//! whatever a model computes from constants, however large (a `ConstantOfShape` of 40000 x 40000
//! took a minute and 6 GB before it was thrown away). The image decoders have panicked on
//! malformed files too (png 0.18.1 on a palette that is not whole RGB entries). [`contain`]
//! turns such a panic into a [`Breach`], without the panic message on stderr, and refuses any
//! single allocation over [`MAX_ALLOCATION_BYTES`] made inside it; any other panic is reported
//! as usual. [`catch`] is [`contain`] for the model, with its errors worded.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::AssertUnwindSafe;

use anyhow::{anyhow, Result};

use crate::files::Size;

/// The largest single allocation the work of [`contain`] may make. tract allocates tensors
/// fallibly, so a refused one is an error, and the project's own operators check their buffers
/// against it first (`model::custom::zeros`). GoogLeNet's largest tensor, conv1's output at the
/// largest batch (256), is 822 MB; a whole run is held to the same 4 GiB at load (see `model`).
pub const MAX_ALLOCATION_BYTES: u64 = 4 << 30;

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static REFUSED: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, except that on a thread inside [`contain`] it refuses (returns null
/// for) an allocation over [`MAX_ALLOCATION_BYTES`] and remembers its size.
pub struct Bounded;

#[global_allocator]
static ALLOCATOR: Bounded = Bounded;

/// Whether an allocation of `size` bytes is refused here; a refusal is remembered.
fn refuses(size: usize) -> bool {
    let size = size as u64;
    let refused = size > MAX_ALLOCATION_BYTES && CATCHING.try_with(Cell::get).unwrap_or(false);
    if refused {
        let _ = REFUSED.try_with(|largest| largest.set(largest.get().max(size)));
    }
    refused
}

// SAFETY: every call is passed on to `System` unchanged, or answered with null, which the
// `GlobalAlloc` contract allows for any allocation.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refuses(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `alloc`'s contract, which is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refuses(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if refuses(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` and `layout` come from this allocator, which is `System`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
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
}

/// Runs `work` with panics silenced and allocations over [`MAX_ALLOCATION_BYTES`] refused. Its
/// result passes through, unless it panicked ([`Breach::Panicked`]) or it panicked or failed
/// after a refused allocation ([`Breach::TooLarge`], the largest refused).
pub fn contain<T, E>(work: impl FnOnce() -> Result<T, E>) -> Result<Result<T, E>, Breach> {
    let outer = CATCHING.with(|catching| catching.replace(true));
    let outer_refused = REFUSED.with(|refused| refused.replace(0));
    let result = std::panic::catch_unwind(AssertUnwindSafe(work));
    CATCHING.with(|catching| catching.set(outer));
    let refused = REFUSED.with(|refused| refused.replace(outer_refused));
    match result {
        Err(_) | Ok(Err(_)) if refused > 0 => Err(Breach::TooLarge(refused)),
        Ok(result) => Ok(result),
        Err(payload) => Err(Breach::Panicked(message(payload.as_ref()))),
    }
}

/// Runs `work` in [`contain`], turning a panic inside it into the error "the model is malformed
/// (tract: message)", and a failure after a refused allocation into "the model needs a tensor
/// of ..., over the limit of 4 GiB".
pub fn catch<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    match contain(work) {
        Ok(result) => result,
        Err(Breach::Panicked(message)) => Err(anyhow!("the model is malformed (tract: {message})")),
        Err(Breach::TooLarge(bytes)) => Err(anyhow!(
            "the model needs a tensor of {}, over the limit of {}",
            Size(bytes),
            Size(MAX_ALLOCATION_BYTES)
        )),
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
        assert!(!refuses(huge), "outside catch nothing is refused");
        assert_eq!(REFUSED.with(Cell::get), 0, "the refusal is forgotten");
    }
}
