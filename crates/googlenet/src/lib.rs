//! `googlenet`: classify images with GoogLeNet (Inception v1) on the CPU, through tract, with
//! the project's own convolution, max-pool and LRN kernels (`googlenet-kernels`).
//!
//! [`Classifier::builder`] is the way in: it resolves and loads the model once (by default the
//! one embedded at build time), picks its preprocessing and labels, and gives a [`Classifier`]
//! for class scores or an [`Embedder`] for features. [`Classifier::classify_each`] and
//! [`Embedder::embed_each`] run any number of [`Input`]s on worker threads and hand back a
//! [`Record`] for each, in input order, as soon as it is done; [`Classifier::classify`] is the
//! same for a few inputs at once.
//!
//! ```
//! use googlenet::{Classifier, Input, Outcome};
//!
//! let classifier = Classifier::builder().top_k(3).build()?;
//! let photo = Input::from_arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/chelsea.png"));
//! let records = classifier.classify(&[photo]);
//! let Outcome::Predictions(predictions) = &records[0].outcome else { panic!("not classified") };
//! println!("{}: {:.1}%", predictions[0].name, 100.0 * predictions[0].probability);
//! assert_eq!(predictions[0].name, "Egyptian cat");
//! # Ok::<(), googlenet::Error>(())
//! ```
//!
//! Every failure is an [`Error`], whose variants tell an unreadable image from a failed
//! download, an unusable model, a bad setting and cancelled work. An input's error is its
//! record's ([`Outcome::Error`]); the run goes on past it.
//!
//! The public modules each open one more thing up: [`inputs`] finds images in folders and
//! lists; [`eval`] scores records against labelled file names; [`inspect`] lays the network out
//! (its layers, the paper's Table 1, a profile); [`experiment`] and [`explain`] ask the network
//! questions; [`similarity`] and [`npy`] work with features; [`guard`] is what a binary's
//! global allocator consults to bound a malformed input's memory.
//!
//! No tract or ndarray type appears in this API.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

mod cancel;
mod classify;
mod crops;
mod download;
mod engine;
mod error;
mod files;
#[cfg(test)]
mod fuzz_seeds;
mod labels;
mod model;
mod pipeline;
mod precision;
mod preprocess;
mod record;
#[cfg(test)]
#[path = "../tests/it/reference.rs"]
mod reference;

pub mod eval;
pub mod experiment;
pub mod explain;
pub mod guard;
pub mod inputs;
pub mod inspect;
pub mod npy;
pub mod similarity;

pub use cancel::Cancel;
pub use classify::Prediction;
pub use crops::Crops;
pub use download::{redact as redact_url, Downloader, DEFAULT_MAX_DOWNLOAD};
pub use engine::{Adjust, Builder, Classifier, Embedder, InputInfo, LayerShape, ModelInfo};
pub use error::{one_line, Error, Result};
pub use files::Size;
pub use inputs::Input;
pub use labels::{Label, Labels};
pub use model::{cache_path, ISA_ENV, MODEL_ENV};
pub use precision::Precision;
pub use preprocess::{ChannelOrder, Preset, ResizeMode, DEFAULT_MAX_PIXELS, LARGEST_MAX_PIXELS};
pub use record::{Outcome, Record};

/// The fuzzers' way in (`fuzz/`), compiled only as cargo-fuzz builds (`--cfg fuzzing`): `bytes`
/// decoded and preprocessed as a photo under a limit of 4 megapixels (within libFuzzer's memory
/// limit); whether they made a tensor of the network's input size.
#[cfg(fuzzing)]
pub fn fuzz_decode(bytes: &[u8]) -> bool {
    let settings = preprocess::Preset::Caffe.settings(224, 224);
    let settings = preprocess::Preprocess { max_pixels: 4_000_000, ..settings };
    settings.tensor(bytes).is_ok_and(|tensor| tensor.shape() == [3, 224, 224])
}

/// The fuzzers' way in for models (`fuzz/`), compiled only with `--cfg fuzzing`: `bytes` loaded
/// as a model, and a model that loads run once on a blank image of at most 512 x 512 pixels.
#[cfg(fuzzing)]
pub fn fuzz_model(bytes: &[u8]) {
    let Ok(model) = model::Model::from_bytes(bytes, 1) else { return };
    let (w, h) = (model.input.width as usize, model.input.height as usize);
    if w * h <= 512 * 512 {
        let blank = tract_onnx::prelude::tract_ndarray::Array3::zeros((3, h, w));
        let _ = model.run(&[blank]);
    }
}
