//! The project's own operators, put in place of tract's in a typed model before it is
//! optimised: convolution as a matrix product with this project's SIMD kernel (`conv`,
//! `gemm`; 3x3 layers by Winograd's F(2x2, 3x3) or F(4x4, 3x3), `winograd`), max-pool
//! (`maxpool`) and LRN (`lrn`), with their window geometry (`window`) and the glue into
//! tract (`glue`): each writes its output straight into the tensor tract receives, and the
//! convolutions that end an Inception module's branches write straight into their parts of the
//! module's output, in place of the Concat that copied them (`join`).
//!
//! This is the project's only crate with `unsafe` code (besides the binary's allocator): the
//! matrix product's vector loads and stores and its prefetch hints; LRN's call into its loops
//! compiled for AVX-512 once the CPU is seen to have it, and their vector loads and stores; the
//! Winograd transforms' calls into their loops compiled for AVX2, likewise; the operators'
//! output tensors, made without zeroing for the operators to write whole (`glue::output`, whose
//! invariant the `poison` feature checks); and handing the heap's free pages back to the
//! system ([`release_free_heap`]). Each block states its invariant in a `// SAFETY:` comment,
//! and the kernel a product runs is a value only `gemm::Kernel::detect` can make, so safe code
//! cannot pick one the CPU lacks.
//!
//! Each replacement keeps tract's semantics: the unit tests compare every operator with
//! tract's own on random tensors, and the parity tests hold the whole network to onnxruntime's
//! outputs.

#![deny(unsafe_op_in_unsafe_fn)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

#[macro_use]
mod glue;
mod conv;
mod gemm;
mod join;
mod lrn;
mod maxpool;
mod window;
mod winograd;

use std::fmt;

use tract_onnx::tract_core::internal::{TractResult, TypedModel};

/// Puts the project's operators in place of tract's LRN, max-pools and plain convolutions of
/// `model` (a convolution only where the CPU has a kernel for it), and takes out the Concats
/// that the convolutions can write for themselves (`join`). Returns how many nodes.
pub fn replace_operators(model: &mut TypedModel) -> TractResult<usize> {
    let replaced =
        lrn::replace_lrn(model)? + maxpool::replace_max_pool(model)? + conv::replace_conv(model)?;
    Ok(replaced + join::join_branches(model)?)
}

/// The largest buffer or output tensor an operator makes, and the largest single allocation
/// the library's guard lets a model's work make: a malformed model's shapes become an error
/// here rather than an allocation the system cannot make.
pub const MAX_ALLOCATION_BYTES: u64 = 4 << 30;

/// A size in bytes, displayed for a message: to the nearest MiB, or in GiB when that is a whole
/// number of them (`64 MiB`, `1429 MiB`, `2 GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = self.0.saturating_add(1 << 19) >> 20;
        if mib >= 1024 && mib.is_multiple_of(1024) {
            write!(f, "{} GiB", mib / 1024)
        } else {
            write!(f, "{mib} MiB")
        }
    }
}

/// Hands the heap's free pages back to the system. Loading a model peaks well above what it
/// keeps; glibc keeps the freed pages, and the worker threads' arenas do not reuse them.
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
    use super::Size;

    #[test]
    fn sizes_read_in_whole_mib_or_gib() {
        assert_eq!(Size(64 << 20).to_string(), "64 MiB");
        assert_eq!(Size((1 << 30) + (300 << 20)).to_string(), "1324 MiB");
        assert_eq!(Size(i32::MAX as u64).to_string(), "2 GiB");
        assert_eq!(Size(4 << 30).to_string(), "4 GiB");
        assert_eq!(Size(1000).to_string(), "0 MiB");
    }
}
