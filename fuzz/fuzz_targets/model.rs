//! A mutated ONNX file in, a runnable model or an error out; a model that loads is run once.
#![no_main]

// The binary's allocator, so that the guard's limits hold here as they do in `googlenet`.
#[path = "../../src/alloc.rs"]
#[allow(dead_code)]
mod alloc;

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: googlenet::guard::install_hook(),
    |bytes: &[u8]| googlenet::fuzz_model(bytes)
);
