//! Bytes in, tensor or error out: decoding (every format, EXIF, DCT scaling) and preprocessing.
#![no_main]

// The binary's allocator, so that the guard's limits hold here as they do in `googlenet`.
#[path = "../../src/alloc.rs"]
#[allow(dead_code)]
mod alloc;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // The limit itself is what is checked before allocating. A decoder's panic is contained as
    // an error in the CLI, but libFuzzer's panic hook aborts first, so the fuzzer still sees it.
    googlenet::fuzz_decode(bytes);
});
