//! The project's own operators, put in place of tract's in a typed model before it is
//! optimised: convolution as a matrix product with this project's SIMD kernel (`conv`,
//! `gemm`; at a lower precision, the input packed into words of several channels, `words`:
//! at int8, signed-byte weights by 7-bit input codes with exact integer sums, `int8`; at
//! bf16, bf16 weights by bf16 inputs with f32 sums, `bf16`, on AMX's tiles `amx`; 3x3 layers
//! by Winograd's F(2x2, 3x3) or F(4x4, 3x3), `winograd`), max-pool (`maxpool`) and LRN
//! (`lrn`), with their window geometry (`window`) and the glue into tract (`glue`): each
//! writes its output straight into the tensor tract receives, and the convolutions that end
//! an Inception module's branches write straight into their parts of the module's output, in
//! place of the Concat that copied them (`join`).
//!
//! This is the project's only crate with `unsafe` code (besides the binary's allocator): the
//! matrix products' vector loads and stores and the f32 one's prefetch hints; AMX's tile
//! instructions (`asm!`) and the `arch_prctl` that asks Linux for them (`amx`); LRN's call into
//! its loops compiled for AVX-512 once the CPU is seen to have it, and their vector loads and
//! stores; the calls into code compiled for AVX2 once the CPU is seen to have it (the
//! Winograd transforms, the packing of words), likewise; and the operators' output tensors,
//! made without zeroing for the operators to write whole (`glue::output`, whose invariant the
//! `poison` feature checks). Each block states its invariant in a `// SAFETY:` comment, and the
//! kernel a product runs is a value only `gemm::Kernel::detect` can make, so safe code cannot
//! pick one the CPU lacks.
//!
//! Each replacement keeps tract's semantics: the unit tests compare every operator with
//! tract's own on random tensors (the lower precisions with their definitions, bit for bit),
//! and the parity tests hold the whole network to onnxruntime's outputs.

#![deny(unsafe_op_in_unsafe_fn)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

#[macro_use]
mod glue;
mod amx;
mod bf16;
mod conv;
mod gemm;
mod int8;
mod join;
mod lrn;
mod maxpool;
mod window;
mod winograd;
mod words;

use tract_onnx::tract_core::internal::{TractResult, TypedModel};

pub use conv::Precision;
pub use gemm::{Bf16Unit, Kernel};

/// Puts the project's operators in place of tract's LRN, max-pools and plain convolutions of
/// `model` (the convolutions where there is a `kernel`, at `precision`), and takes out the
/// Concats that the convolutions can write for themselves (`join`). Returns how many nodes.
pub fn replace_operators(
    model: &mut TypedModel,
    kernel: Option<Kernel>,
    precision: Precision,
) -> TractResult<usize> {
    let mut replaced = lrn::replace_lrn(model)? + maxpool::replace_max_pool(model)?;
    if let Some(kernel) = kernel {
        replaced += conv::replace_conv(model, kernel, precision)?;
    }
    Ok(replaced + join::join_branches(model)?)
}
