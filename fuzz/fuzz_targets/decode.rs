//! Bytes in, tensor or error out: decoding (every format, EXIF, DCT scaling) and preprocessing.
#![no_main]

// The binary's allocator, so that the guard's limits hold here as they do in `googlenet`.
#[path = "../../src/alloc.rs"]
mod alloc;

use googlenet::preprocess::{Preprocess, Preset};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // A limit of 4 megapixels keeps every decode within libFuzzer's memory limit; the limit
    // itself is what is checked before allocating. A decoder's panic is contained as an
    // error in the CLI, but libFuzzer's panic hook aborts first, so the fuzzer still sees it.
    let settings = Preprocess { max_pixels: 4_000_000, ..Preset::Caffe.settings(224, 224) };
    if let Ok(tensor) = settings.tensor(bytes) {
        assert_eq!(tensor.shape(), &[3, 224, 224]);
    }
});
