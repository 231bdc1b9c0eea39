//! The library against the ground truth: onnxruntime's reference outputs, the shared labelled
//! photos, and its public API as a user calls it.

mod api;
mod reference;
