//! `googlenet`: classify images with GoogLeNet (Inception v1) through tract, with the project's
//! own convolution, max-pool and LRN kernels ([`googlenet_kernels`]).
//!
//! [`Classifier::builder`] is the way in: it resolves and loads the model (by default the one
//! embedded at build time), picks its preprocessing and labels, and gives a [`Classifier`] for
//! class scores or an [`Embedder`] for features.
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
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Data flows one way: paths are found ([`pipeline::discover`]), read or downloaded
//! ([`download`]), decoded and preprocessed ([`preprocess`], [`crops`]) into tensors, run through
//! one optimised plan ([`model`]) on worker threads ([`pipeline`]), ranked and labelled
//! ([`classify`], [`labels`]) into [`Record`]s in input order. [`eval`] scores records against
//! labelled folders; [`inspect`], [`experiment`] and [`explain`] open the network up;
//! [`similarity`] and [`npy`] work with features.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

pub mod cancel;
pub mod classify;
pub mod crops;
pub mod download;
mod engine;
pub mod eval;
pub mod experiment;
pub mod explain;
pub mod files;
pub mod guard;
pub mod inspect;
pub mod labels;
pub mod model;
pub mod npy;
pub mod pipeline;
pub mod preprocess;
pub mod record;
pub mod similarity;

pub use cancel::{Cancel, Cancelled};
pub use engine::{Adjust, Builder, Classifier, Embedder, InputInfo, LayerShape, ModelInfo, Plan};
pub use pipeline::Input;
pub use preprocess::Preset;
pub use record::{Outcome, Record};
