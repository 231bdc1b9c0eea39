//! Variants of the network with one branch of Inception modules removed (its output channels
//! made zero), or with the LRN layers removed: how much does each scale, and the local response
//! normalisation, matter to the trained weights?

use anyhow::{ensure, Context, Result};
use prost::Message;
use tract_onnx::pb::{GraphProto, ModelProto};

use super::concat_order::chosen;
use super::weights;
use crate::engine::Classifier;
use crate::error::Error;
use crate::inspect::modules::{BranchKind, Module};
use crate::inspect::Network;

/// What a variant removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ablation {
    /// The branch of `kind` in the modules named (every module when empty): the weights and
    /// bias of its last convolution become zero, so its channels of the concatenation are zero.
    Branch {
        /// Which branch.
        kind: BranchKind,
        /// Which modules.
        modules: Vec<String>,
    },
    /// Every LRN layer: its readers read its input instead.
    Lrn,
}

/// A copy of `classifier`'s model without what `ablation` names, as ONNX bytes, and the names
/// of the nodes changed or removed.
pub fn ablate(
    classifier: &Classifier,
    ablation: &Ablation,
) -> crate::Result<(Vec<u8>, Vec<String>)> {
    let (proto, network) = super::graph(classifier)?;
    let (variant, changed) =
        ablated(&proto, &network, ablation).map_err(|err| Error::model(&err))?;
    Ok((variant.encode_to_vec(), changed))
}

/// [`ablate`] of the model `proto` whose layers are `network`.
fn ablated(
    proto: &ModelProto,
    network: &Network,
    ablation: &Ablation,
) -> Result<(ModelProto, Vec<String>)> {
    let mut proto = proto.clone();
    let graph = proto.graph.as_mut().context("the ONNX file holds no graph")?;
    let changed = match ablation {
        Ablation::Branch { kind, modules } => chosen(network, modules)?
            .iter()
            .map(|module| silence(graph, network, module, *kind))
            .collect::<Result<Vec<_>>>()?,
        Ablation::Lrn => bypass_lrn(graph)?,
    };
    Ok((proto, changed))
}

/// Zeroes the weights and bias of the convolution that ends the `kind` branch of `module`.
/// Returns its name.
fn silence(
    graph: &mut GraphProto,
    network: &Network,
    module: &Module,
    kind: BranchKind,
) -> Result<String> {
    let at = module.branches.iter().position(|b| b.kind == kind).context("no such branch")?;
    let concat = network
        .layers
        .iter()
        .find(|layer| layer.name == module.concat)
        .with_context(|| format!("{}: Concat node not found", module.name))?;
    let mut tensor = concat.inputs.get(at).context("Concat with fewer inputs than branches")?;
    let conv = loop {
        let node = graph
            .node
            .iter()
            .find(|node| node.output.contains(tensor))
            .with_context(|| format!("{}: no node writes {tensor}", module.name))?;
        if node.op_type == "Conv" {
            break node.clone();
        }
        ensure!(
            matches!(node.op_type.as_str(), "Relu" | "LeakyRelu" | "Clip"),
            "{}: the branch ends in {}, not a convolution and its activation",
            module.name,
            node.op_type
        );
        tensor = node.input.first().context("an activation without input")?;
    };
    for weight in conv.input.iter().skip(1) {
        let readers = graph.node.iter().filter(|n| n.input.contains(weight)).count();
        ensure!(readers == 1, "{}: weight {weight} is shared by {readers} nodes", conv.name);
        let tensor = graph
            .initializer
            .iter_mut()
            .find(|t| &t.name == weight)
            .with_context(|| format!("{}: weight {weight} is not a constant", conv.name))?;
        let zeros = vec![0.0; weights::floats(tensor)?.len()];
        weights::set_floats(tensor, zeros);
    }
    Ok(conv.name)
}

/// Removes every LRN node, its readers reading its input. Returns their names.
fn bypass_lrn(graph: &mut GraphProto) -> Result<Vec<String>> {
    let lrns: Vec<(String, String, String)> = graph
        .node
        .iter()
        .filter(|node| node.op_type == "LRN")
        .map(|node| {
            let input = node.input.first().context("LRN without input")?.clone();
            let output = node.output.first().context("LRN without output")?.clone();
            Ok((node.name.clone(), input, output))
        })
        .collect::<Result<_>>()?;
    ensure!(!lrns.is_empty(), "the model has no LRN layer");
    for (name, input, output) in &lrns {
        ensure!(!graph.output.iter().any(|o| &o.name == output), "{name} is an output");
        for tensor in graph.node.iter_mut().flat_map(|node| node.input.iter_mut()) {
            if tensor == output {
                tensor.clone_from(input);
            }
        }
    }
    graph.node.retain(|node| node.op_type != "LRN");
    Ok(lrns.into_iter().map(|(name, ..)| name).collect())
}
