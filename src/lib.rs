//! `googlenet`: classify images with GoogLeNet (Inception v1) through tract.
//!
//! Data flows one way: image paths are decoded and preprocessed ([`preprocess`]) into tensors,
//! run through one optimised plan ([`model`]), ranked and labelled ([`classify`], [`labels`]) and
//! written as records ([`output`]). [`commands`] wires the subcommands of [`cli`] to them.

pub mod classify;
pub mod cli;
pub mod commands;
pub mod labels;
pub mod model;
pub mod output;
pub mod preprocess;
