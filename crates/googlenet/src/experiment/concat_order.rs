//! Variants of the network whose Inception modules concatenate their branches in another order,
//! with or without the matching permutation of the next layers' input channels.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{bail, ensure, Context, Result};
use prost::Message;
use serde::Serialize;
use tract_onnx::pb::{GraphProto, ModelProto};

use super::weights;
use crate::classify::ranking;
use crate::engine::Classifier;
use crate::error::Error;
use crate::inspect::modules::{find_modules, BranchKind, Module};
use crate::inspect::Network;
use crate::model::attributes;

/// An order of the four branches, written with their letters: `135m`, `m531`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order(Vec<BranchKind>);

impl FromStr for Order {
    type Err = String;

    fn from_str(text: &str) -> Result<Order, String> {
        let kinds = text
            .chars()
            .map(|c| match c {
                '1' => Ok(BranchKind::OneByOne),
                '3' => Ok(BranchKind::ThreeByThree),
                '5' => Ok(BranchKind::FiveByFive),
                'm' => Ok(BranchKind::PoolProj),
                other => Err(format!("`{other}` is not a branch: use 1, 3, 5 and m")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut sorted: Vec<char> = kinds.iter().map(|k| k.letter()).collect();
        sorted.sort_unstable();
        if sorted != ['1', '3', '5', 'm'] {
            return Err(format!("`{text}` must name each of 1, 3, 5 and m once"));
        }
        Ok(Order(kinds))
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|k| write!(f, "{}", k.letter()))
    }
}

/// A reordered copy of a model.
#[derive(Debug, Clone)]
pub struct Variant {
    /// The changed model, as ONNX bytes.
    pub onnx: Vec<u8>,
    /// The modules whose Concat was reordered, with their original order.
    pub modules: Vec<(String, String)>,
    /// How many weight tensors were permuted to compensate.
    pub permuted: usize,
}

/// Builds the variant of `classifier`'s model whose modules named in `only` (all modules when
/// empty) concatenate their branches in `order`. With `compensate`, the input channels of every
/// layer that reads a reordered output (through channel-wise layers such as pools,
/// activations, dropout and flattening of a 1x1 map) are permuted to match, so the network
/// computes the same function.
pub fn reorder(
    classifier: &Classifier,
    order: &Order,
    only: &[String],
    compensate: bool,
) -> crate::Result<Variant> {
    let (proto, network) = super::graph(classifier)?;
    reordered(&proto, &network, order, only, compensate).map_err(|err| Error::model(&err))
}

/// [`reorder`] of the model `proto` whose layers are `network`.
fn reordered(
    proto: &ModelProto,
    network: &Network,
    order: &Order,
    only: &[String],
    compensate: bool,
) -> Result<Variant> {
    let modules = chosen(network, only)?;
    let mut proto = proto.clone();
    let graph = proto.graph.as_mut().context("the ONNX file holds no graph")?;
    let mut permuted = 0;
    for module in &modules {
        let output = network
            .layers
            .iter()
            .find(|layer| layer.name == module.concat)
            .map(|layer| layer.output.clone())
            .with_context(|| format!("{}: Concat node not found", module.name))?;
        let node = graph
            .node
            .iter_mut()
            .find(|node| node.output.first() == Some(&output))
            .with_context(|| format!("{}: no node writes {output}", module.name))?;
        let old = node.input.clone();
        let mut inputs = Vec::with_capacity(4);
        let mut channels = Vec::new();
        for kind in &order.0 {
            let at = module.branches.iter().position(|b| b.kind == *kind).context("no branch")?;
            inputs.push(old.get(at).context("Concat with fewer inputs than branches")?.clone());
            let [first, last] = module.branches.get(at).context("no branch")?.range;
            channels.extend(first..=last);
        }
        node.input = inputs;
        if compensate {
            permuted += carry(graph, &output, &channels)?;
        }
    }
    let modules = modules.iter().map(|m| (m.name.clone(), m.order.clone())).collect();
    Ok(Variant { onnx: proto.encode_to_vec(), modules, permuted })
}

/// The modules named in `only`, or all of them.
pub(super) fn chosen(network: &Network, only: &[String]) -> Result<Vec<Module>> {
    let modules = find_modules(network);
    ensure!(!modules.is_empty(), "the model has no Inception modules");
    if only.is_empty() {
        return Ok(modules);
    }
    only.iter()
        .map(|name| {
            modules.iter().find(|m| &m.name == name).cloned().with_context(|| {
                let known: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
                format!("no module named {name}: the model has {}", known.join(", "))
            })
        })
        .collect()
}

/// Makes every reader of `tensor`, whose channels now come in the order `channels` (new
/// channel `i` is old channel `channels[i]`), read them as before. Returns how many weight
/// tensors were permuted.
fn carry(graph: &mut GraphProto, tensor: &str, channels: &[usize]) -> Result<usize> {
    ensure!(
        !graph.output.iter().any(|o| o.name == tensor),
        "{tensor} is an output of the model: its channel order cannot be compensated"
    );
    let readers: Vec<_> = graph
        .node
        .iter()
        .filter(|node| node.input.iter().any(|input| input == tensor))
        .cloned()
        .collect();
    let mut permuted = 0;
    for node in &readers {
        let (op, name, output) = (node.op_type.clone(), node.name.clone(), node.output.clone());
        ensure!(
            node.input.first().map(String::as_str) == Some(tensor),
            "{name}: reads {tensor} as a weight"
        );
        match op.as_str() {
            "Conv" => {
                ensure!(
                    attributes::int(node, "group").unwrap_or(1) == 1,
                    "{name}: grouped convolution"
                );
                let weight = node.input.get(1).cloned().context("convolution without weights")?;
                permute(graph, &weight, 1, channels)?;
                permuted += 1;
            }
            "Gemm" | "MatMul" => {
                let transposed = op == "Gemm" && attributes::int(node, "transB") == Some(1);
                let weight = node.input.get(1).cloned().context("no weight matrix")?;
                permute(graph, &weight, if transposed { 1 } else { 0 }, channels)?;
                permuted += 1;
            }
            "MaxPool" | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool" | "Relu"
            | "LeakyRelu" | "Sigmoid" | "Tanh" | "Clip" | "Dropout" | "Identity" | "Reshape"
            | "Flatten" | "Squeeze" => {
                let next = output.first().context("node without output")?;
                permuted += carry(graph, next, channels)?;
            }
            other => bail!("cannot carry the channel order through {other} node {name}"),
        }
    }
    Ok(permuted)
}

/// Permutes the initializer `name` along `axis` so that index `i` holds what index
/// `channels[i]` held. The axis must have exactly `channels.len()` entries: a flattened map
/// larger than 1x1 is refused here.
fn permute(graph: &mut GraphProto, name: &str, axis: usize, channels: &[usize]) -> Result<()> {
    let shared = graph.node.iter().filter(|n| n.input.iter().any(|i| i == name)).count();
    ensure!(shared == 1, "weight {name} is shared by {shared} nodes");
    let tensor = graph
        .initializer
        .iter_mut()
        .find(|t| t.name == name)
        .with_context(|| format!("weight {name} is not a constant"))?;
    let dims: Vec<usize> =
        tensor.dims.iter().map(|&d| usize::try_from(d)).collect::<Result<_, _>>()?;
    let size = *dims.get(axis).with_context(|| format!("weight {name} has no axis {axis}"))?;
    ensure!(
        size == channels.len(),
        "weight {name} has {size} entries on axis {axis}, not the {} channels reordered",
        channels.len()
    );
    let inner: usize = dims.get(axis + 1..).unwrap_or_default().iter().product();
    let values = weights::floats(tensor)?;
    let mut moved = Vec::with_capacity(values.len());
    for block in values.chunks_exact(size * inner) {
        for &from in channels {
            let slice = block.get(from * inner..(from + 1) * inner);
            moved.extend_from_slice(slice.with_context(|| format!("channel {from} of {name}"))?);
        }
    }
    weights::set_floats(tensor, moved);
    Ok(())
}

/// The outputs of a variant against the original's, image by image.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Comparison {
    /// Images compared.
    pub images: usize,
    /// Largest absolute difference of any class probability.
    pub max_abs_diff: f32,
    /// Images whose top class is the same.
    pub top1_agree: usize,
    /// Images whose five most probable classes are the same, in the same order.
    pub top5_agree: usize,
    /// Images whose true class is known from their name.
    pub labelled: usize,
    /// Of those, how many the original model gets right (top-1).
    pub original_correct: usize,
    /// Of those, how many the variant gets right (top-1).
    pub variant_correct: usize,
    /// Of the labelled images, how many have the true class in the original's top 5.
    pub original_top5_correct: usize,
    /// And in the variant's top 5.
    pub variant_top5_correct: usize,
    /// The mean over the labelled images of the variant's probability of the true class less
    /// the original's.
    pub mean_true_probability_change: f64,
}

impl Comparison {
    /// Adds one image's probabilities from both models, with its true class when known.
    pub fn add(&mut self, original: &[f32], variant: &[f32], truth: Option<usize>) {
        let diff = original.iter().zip(variant).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        self.max_abs_diff = self.max_abs_diff.max(diff);
        let (a, b) = (ranking(original), ranking(variant));
        self.images += 1;
        self.top1_agree += usize::from(a.first() == b.first());
        self.top5_agree += usize::from(a.iter().take(5).eq(b.iter().take(5)));
        if let Some(truth) = truth {
            let in_top5 =
                |ranking: &[usize]| usize::from(ranking.iter().take(5).any(|&c| c == truth));
            let change = |p: &[f32]| f64::from(p.get(truth).copied().unwrap_or(0.0));
            let sum = self.mean_true_probability_change * self.labelled as f64;
            self.labelled += 1;
            self.original_correct += usize::from(a.first() == Some(&truth));
            self.variant_correct += usize::from(b.first() == Some(&truth));
            self.original_top5_correct += in_top5(&a);
            self.variant_top5_correct += in_top5(&b);
            self.mean_true_probability_change =
                (sum + change(variant) - change(original)) / self.labelled as f64;
        }
    }

    /// Lines for people.
    pub fn to_text(&self) -> String {
        let n = self.images;
        let mut text = format!(
            "images: {n}\nlargest |difference| of a probability: {:.2e}\n\
             same top-1: {}/{n}\nsame top-5, in order: {}/{n}\n",
            self.max_abs_diff, self.top1_agree, self.top5_agree
        );
        if self.labelled > 0 {
            let labelled = self.labelled;
            text += &format!(
                "on the {labelled} labelled images: top-1 original {}, variant {}; top-5 original \
                 {}, variant {}; mean change of the true class's probability {:+.4}\n",
                self.original_correct,
                self.variant_correct,
                self.original_top5_correct,
                self.variant_top5_correct,
                self.mean_true_probability_change
            );
        }
        text
    }
}

/// What was reordered and how, in one line.
pub fn describe(variant: &Variant, order: &Order, compensate: bool) -> String {
    let mut by_order: HashMap<&str, Vec<&str>> = HashMap::new();
    for (name, old) in &variant.modules {
        by_order.entry(old.as_str()).or_default().push(name.as_str());
    }
    let mut olds: Vec<_> = by_order.into_iter().collect();
    olds.sort();
    let from: Vec<String> =
        olds.iter().map(|(old, names)| format!("{} (was {old})", names.join(", "))).collect();
    let how = if compensate {
        format!("{} weight tensors permuted to compensate", variant.permuted)
    } else {
        "not compensated".to_owned()
    };
    format!("concatenated as {order}: {}; {how}", from.join("; "))
}
