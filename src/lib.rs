//! `googlenet`: classify images with GoogLeNet (Inception v1) through tract.
//!
//! Data flows one way: paths are found ([`pipeline::discover`]), decoded and preprocessed
//! ([`preprocess`]) into tensors, run through one optimised plan ([`model`]) on worker threads
//! ([`pipeline`]), ranked and labelled ([`classify`], [`labels`]) and written as records in input
//! order ([`output`]). [`eval`] scores them against labelled folders; [`commands`] wires the
//! subcommands of [`cli`] to all of it.

#![deny(unsafe_op_in_unsafe_fn)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

pub mod classify;
pub mod cli;
pub mod commands;
pub mod crops;
pub mod download;
pub mod eval;
pub mod experiment;
pub mod explain;
pub mod fetch;
pub mod files;
pub mod guard;
pub mod inspect;
pub mod kernels;
pub mod labels;
pub mod model;
pub mod npy;
pub mod output;
pub mod pipeline;
pub mod preprocess;
pub mod serve;
pub mod similarity;
