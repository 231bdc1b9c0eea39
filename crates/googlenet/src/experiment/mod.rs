//! Experiments that answer questions about the Inception module with the real network: does
//! the order of the concatenated branches matter ([`concat_order`]), is any input channel of a
//! 1x1 convolution thrown away ([`channel_use`]), and how much does each branch, or the LRN,
//! matter ([`ablate`]). Each works from a loaded [`Classifier`]: a variant is the classifier's
//! own model changed, as ONNX bytes, and [`compare`] runs both on the same images.

pub mod ablate;
pub mod channel_use;
pub mod concat_order;
#[cfg(test)]
mod tests;
mod weights;

use std::convert::Infallible;
use std::path::Path;

use anyhow::Context;
use tract_onnx::pb::ModelProto;

pub use concat_order::Comparison;

use crate::engine::Classifier;
use crate::error::{Error, Result};
use crate::eval::true_synset;
use crate::inputs::Input;
use crate::inspect::Network;
use crate::model::{read_proto, Model};
use crate::pipeline::run_ordered;
use crate::record::path_text;

/// The classifier's model as its ONNX graph and its layers (with a symbolic batch), parsed
/// from the bytes read at load.
fn graph(classifier: &Classifier) -> Result<(ModelProto, Network)> {
    let bytes = classifier.model_bytes();
    let proto = read_proto(bytes).map_err(|err| Error::model(&err))?;
    let network = Network::analyse(bytes, None).map_err(|err| Error::model(&err))?;
    Ok((proto, network))
}

/// One image's probabilities from the original model and from the variant.
type Pair = (Vec<f32>, Vec<f32>);

/// Runs `original` and `variant` (an ONNX model's bytes, loaded with the original's
/// preprocessing, kernels and precision) on every input, on the original's worker threads, and compares their
/// probabilities image by image; an input's true class comes from its name ([`true_synset`]).
/// `failed` is told of each input that could not be run, with its error.
pub fn compare(
    original: &Classifier,
    variant: &[u8],
    inputs: &[Input],
    mut failed: impl FnMut(&str, &Error),
) -> Result<Comparison> {
    let model = Model::with_kernels(variant, 1, original.kernels())
        .map_err(|err| Error::model(&err.context("cannot load the variant")))?;
    let runner = original.runner();
    let both = |input: &Input| -> Result<Pair> {
        let tensor = runner.tensor(input)?;
        let image = std::slice::from_ref(&tensor);
        let first = |outputs: anyhow::Result<Vec<Vec<f32>>>| {
            outputs.and_then(|o| o.into_iter().next().context("no output"))
        };
        let original = first(runner.model().run(image)).map_err(|err| Error::model(&err))?;
        let changed = first(model.run(image)).map_err(|err| Error::model(&err))?;
        Ok((original, changed))
    };
    let mut comparison = Comparison::default();
    let work = |chunk: &[Input]| -> Vec<(String, Result<Pair>)> {
        chunk.iter().map(|input| (path_text(input.path()), both(input))).collect()
    };
    let _ = run_ordered(inputs, original.threads(), 1, work, |(name, result)| {
        match result {
            Ok((a, b)) => {
                let truth = true_synset(Path::new(&name)).and_then(|synset| {
                    original.labels().by_synset(&synset).map(|(index, _)| index)
                });
                comparison.add(&a, &b, truth);
            }
            Err(err) => failed(&name, &err),
        }
        Ok::<(), Infallible>(())
    });
    Ok(comparison)
}
