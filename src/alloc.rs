//! The binary's global allocator: the system's, counting what the heap holds and refusing
//! what the library's guard refuses ([`googlenet::guard::admits`]), so that a malformed model
//! or image is an error instead of gigabytes or an abort; and handing the heap's free pages
//! back to the system after a load ([`release_free_heap`]). This is the binary's only `unsafe`.

use std::alloc::{GlobalAlloc, Layout, System};

use googlenet::guard;

/// The system allocator, asking [`guard::admits`] before each allocation that grows the heap
/// and reporting what it made and freed to [`guard::count`].
pub struct Bounded;

#[global_allocator]
static ALLOCATOR: Bounded = Bounded;

/// `pointer`, with `added` bytes counted as held and `freed` as no longer held unless it is
/// null.
fn counted(pointer: *mut u8, added: usize, freed: usize) -> *mut u8 {
    if !pointer.is_null() {
        guard::count(added, freed);
    }
    pointer
}

// SAFETY: every call is passed on to `System` unchanged, or answered with null, which the
// `GlobalAlloc` contract allows for any allocation.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !guard::admits(layout, layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `alloc`'s contract, which is `System`'s.
        counted(unsafe { System.alloc(layout) }, layout.size(), 0)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !guard::admits(layout, layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as for `alloc`.
        counted(unsafe { System.alloc_zeroed(layout) }, layout.size(), 0)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !guard::admits(new_layout, new_size.saturating_sub(layout.size())) {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` and `layout` come from this allocator, which is `System`'s.
        counted(unsafe { System.realloc(ptr, layout, new_size) }, new_size, layout.size())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        guard::count(0, layout.size());
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Hands the heap's free pages back to the system. Loading a model peaks well above what it
/// keeps (the parsed file, tract's unpacked weights); glibc keeps the freed pages, and the
/// worker threads' arenas do not reuse them.
pub fn release_free_heap() {
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

#[cfg(test)]
mod tests {
    use anyhow::Result;
    use googlenet::guard::{catch, catch_load, MAX_ALLOCATION_BYTES};

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
        let mut outside: Vec<u8> = Vec::new();
        assert!(outside.try_reserve_exact(huge).is_ok(), "outside catch nothing is refused");
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
        assert!(outside.is_ok(), "runs have no ceiling: the ceiling is lifted after loading");
    }
}
