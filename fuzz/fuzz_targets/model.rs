//! A mutated ONNX file in, a runnable model or an error out; a model that loads is run once.
#![no_main]

// The binary's allocator, so that the guard's limits hold here as they do in `googlenet`.
#[path = "../../src/alloc.rs"]
mod alloc;

use googlenet::model::Model;
use libfuzzer_sys::fuzz_target;
use tract_onnx::prelude::tract_ndarray::Array3;

fuzz_target!(
    init: googlenet::guard::install_hook(),
    |bytes: &[u8]| {
        let Ok(model) = Model::from_bytes(bytes, 1) else { return };
        let (w, h) = (model.input.width as usize, model.input.height as usize);
        if w * h <= 512 * 512 {
            let _ = model.probabilities(&[Array3::zeros((3, h, w))]);
        }
    }
);
