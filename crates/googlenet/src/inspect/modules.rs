//! Inception modules recognised from the graph, and the stages of the paper's Table 1.
//!
//! A module is a Concat whose inputs are four branches leaving one common tensor: a 1x1
//! convolution; a 1x1 reduction then a 3x3 convolution; a 1x1 reduction then a 5x5
//! convolution; a max-pool then a 1x1 projection (activations along the way are passed over).

#![allow(
    clippy::indexing_slicing,
    reason = "indices into `layers` come from enumerating that same slice, and `done` has one \
              entry per layer"
)]

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{aligned, paper, thousands, Layer, Network};

/// The kind of an Inception branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BranchKind {
    /// A 1x1 convolution.
    #[serde(rename = "1x1")]
    OneByOne,
    /// 1x1 reduction, then 3x3.
    #[serde(rename = "3x3")]
    ThreeByThree,
    /// 1x1 reduction, then 5x5.
    #[serde(rename = "5x5")]
    FiveByFive,
    /// Max-pool, then a 1x1 projection.
    PoolProj,
}

impl BranchKind {
    /// The letter of the branch in an order such as `135m`.
    pub(crate) fn letter(self) -> char {
        match self {
            BranchKind::OneByOne => '1',
            BranchKind::ThreeByThree => '3',
            BranchKind::FiveByFive => '5',
            BranchKind::PoolProj => 'm',
        }
    }

    /// The branch's name in Table 1: `1x1`, `3x3`, `5x5`, `pool proj`.
    pub fn title(self) -> &'static str {
        match self {
            BranchKind::OneByOne => "1x1",
            BranchKind::ThreeByThree => "3x3",
            BranchKind::FiveByFive => "5x5",
            BranchKind::PoolProj => "pool proj",
        }
    }
}

/// One branch of a module, in concatenation order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Branch {
    /// What the branch computes.
    pub kind: BranchKind,
    /// Output channels of the 1x1 reduction (3x3 and 5x5 branches).
    pub reduce: Option<usize>,
    /// Output channels of the branch.
    pub channels: usize,
    /// First and last channel of the branch in the module's output.
    pub range: [usize; 2],
    /// Multiply-adds per image of the branch's nodes.
    pub macs: u64,
}

/// An Inception module found in the graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Module {
    /// The common prefix of its node names, e.g. `inception_3a`.
    pub name: String,
    /// The Concat node.
    pub concat: String,
    /// The branch order, e.g. `135m`.
    pub order: String,
    /// The branches in concatenation order.
    pub branches: Vec<Branch>,
    /// Channels of the tensor the branches read.
    pub input_channels: Option<usize>,
    /// Indices into [`Network::layers`] of every node of the module.
    #[serde(skip)]
    pub members: Vec<usize>,
}

impl Module {
    /// The branch of `kind`.
    pub fn branch(&self, kind: BranchKind) -> Option<&Branch> {
        self.branches.iter().find(|b| b.kind == kind)
    }

    /// `inception (3a)` for a module named `inception_3a`, else its name.
    pub fn label(&self) -> String {
        match self.name.strip_prefix("inception_") {
            Some(id) => format!("inception ({id})"),
            None => self.name.clone(),
        }
    }
}

/// Producers and consumers of every tensor.
struct Wiring<'a> {
    layers: &'a [Layer],
    producer: HashMap<&'a str, usize>,
    consumers: HashMap<&'a str, Vec<usize>>,
}

impl<'a> Wiring<'a> {
    fn new(layers: &'a [Layer]) -> Wiring<'a> {
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, layer) in layers.iter().enumerate() {
            producer.insert(layer.output.as_str(), i);
            for input in &layer.inputs {
                consumers.entry(input.as_str()).or_default().push(i);
            }
        }
        Wiring { layers, producer, consumers }
    }

    fn consumer_count(&self, tensor: &str) -> usize {
        self.consumers.get(tensor).map_or(0, Vec::len)
    }

    /// The sole consumer of `tensor`, looking through one activation.
    fn next_past_activation(&self, tensor: &str) -> Option<(usize, Vec<usize>)> {
        let [next] = self.consumers.get(tensor)?.as_slice() else { return None };
        let layer = &self.layers[*next];
        if is_activation(layer) {
            let [after] = self.consumers.get(layer.output.as_str())?.as_slice() else {
                return None;
            };
            Some((*after, vec![*next]))
        } else {
            Some((*next, vec![]))
        }
    }

    /// Walks back from `tensor` to the first tensor with several consumers: the nodes on the
    /// way (input to output) and that tensor.
    fn branch(&self, tensor: &'a str) -> Option<(Vec<usize>, &'a str)> {
        let mut nodes = Vec::new();
        let mut current = tensor;
        for _ in 0..8 {
            let index = *self.producer.get(current)?;
            let [input] = self.layers[index].inputs.as_slice() else { return None };
            nodes.push(index);
            if self.consumer_count(input) > 1 {
                nodes.reverse();
                return Some((nodes, input.as_str()));
            }
            current = input.as_str();
        }
        None
    }
}

fn is_activation(layer: &Layer) -> bool {
    matches!(layer.op.as_str(), "Relu" | "LeakyRelu" | "Sigmoid" | "Tanh" | "Clip")
}

/// Every Inception module of the network, in graph order.
pub fn find_modules(network: &Network) -> Vec<Module> {
    let wiring = Wiring::new(&network.layers);
    network
        .layers
        .iter()
        .enumerate()
        .filter(|(_, layer)| layer.op == "Concat")
        .filter_map(|(index, concat)| module(&wiring, index, concat))
        .collect()
}

fn module(wiring: &Wiring, index: usize, concat: &Layer) -> Option<Module> {
    if concat.inputs.len() != 4 {
        return None;
    }
    let mut members = vec![index];
    let mut branches = Vec::new();
    let mut source = None;
    let mut start = 0;
    for input in &concat.inputs {
        let (nodes, from) = wiring.branch(input)?;
        if *source.get_or_insert(from) != from {
            return None;
        }
        let mut branch = classify_branch(&nodes, wiring.layers, start)?;
        branch.macs = nodes.iter().map(|&i| wiring.layers[i].macs).sum();
        start += branch.channels;
        branches.push(branch);
        members.extend(nodes);
    }
    let mut kinds: Vec<char> = branches.iter().map(|b| b.kind.letter()).collect();
    let order: String = kinds.iter().collect();
    kinds.sort_unstable();
    if kinds != ['1', '3', '5', 'm'] {
        return None;
    }
    members.sort_unstable();
    let names: Vec<&str> = members.iter().map(|&i| wiring.layers[i].name.as_str()).collect();
    let input = source.and_then(|tensor| wiring.producer.get(tensor));
    Some(Module {
        name: common_prefix(&names),
        concat: concat.name.clone(),
        order,
        branches,
        input_channels: input.and_then(|&i| wiring.layers[i].channels()),
        members,
    })
}

/// What a branch computes, from its convolutions and pools in order.
fn classify_branch(nodes: &[usize], layers: &[Layer], start: usize) -> Option<Branch> {
    let ops: Vec<&Layer> =
        nodes.iter().map(|&i| &layers[i]).filter(|l| !is_activation(l)).collect();
    let conv = |l: &Layer, k: usize| l.op == "Conv" && l.kernel == Some((k, k));
    let (kind, reduce) = match ops.as_slice() {
        [a] if conv(a, 1) => (BranchKind::OneByOne, None),
        [a, b] if conv(a, 1) && conv(b, 3) => (BranchKind::ThreeByThree, a.channels()),
        [a, b] if conv(a, 1) && conv(b, 5) => (BranchKind::FiveByFive, a.channels()),
        [a, b] if a.op == "MaxPool" && conv(b, 1) => (BranchKind::PoolProj, None),
        _ => return None,
    };
    let channels = ops.last()?.channels()?;
    Some(Branch { kind, reduce, channels, range: [start, start + channels - 1], macs: 0 })
}

/// The longest common prefix of the names, cut back to the last `/`.
fn common_prefix(names: &[&str]) -> String {
    let first = names.first().copied().unwrap_or_default();
    let mut len = first.len();
    for name in names {
        len = first.bytes().zip(name.bytes()).take(len).take_while(|(a, b)| a == b).count();
    }
    let prefix = &first[..len];
    prefix
        .rfind('/')
        .map_or(prefix, |slash| &prefix[..slash])
        .trim_end_matches(['/', '_'])
        .to_owned()
}

/// One row of Table 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// `convolution`, `max pool`, `LRN`, `inception (3a)`, `avg pool`, `linear`, `softmax`.
    pub stage: String,
    /// Patch size and stride, e.g. `7x7/2`.
    pub patch: Option<String>,
    /// Output size `HxWxC`.
    pub output: String,
    /// Layers with weights along the stage's deepest path.
    pub depth: usize,
    /// Inception `#1x1`.
    pub n1x1: Option<usize>,
    /// `#3x3 reduce`.
    pub n3x3_reduce: Option<usize>,
    /// `#3x3`.
    pub n3x3: Option<usize>,
    /// `#5x5 reduce`.
    pub n5x5_reduce: Option<usize>,
    /// `#5x5`.
    pub n5x5: Option<usize>,
    /// `pool proj`.
    pub pool_proj: Option<usize>,
    /// Parameters of the stage's nodes.
    pub params: u64,
    /// Multiply-adds per image of the stage's nodes.
    pub macs: u64,
    /// An Inception module's cost without its 1x1 reductions (the paper's naive module: 1x1,
    /// 3x3 and 5x5 convolutions and a 3x3 max-pool straight on the module's input).
    #[serde(flatten)]
    pub naive: Option<Naive>,
    /// The paper's (rounded) parameter figure, when compared with the paper.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paper_params: Option<&'static str>,
    /// The paper's (rounded) operations figure, when compared with the paper.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paper_ops: Option<&'static str>,
}

impl Stage {
    fn new(stage: &str, main: &Layer, depth: usize) -> Stage {
        Stage {
            stage: stage.into(),
            patch: main.patch(),
            output: main.output_size(),
            depth,
            n1x1: None,
            n3x3_reduce: None,
            n3x3: None,
            n5x5_reduce: None,
            n5x5: None,
            pool_proj: None,
            params: 0,
            macs: 0,
            naive: None,
            paper_params: None,
            paper_ops: None,
        }
    }

    fn add(&mut self, layer: &Layer) {
        self.params += layer.params;
        self.macs += layer.macs;
    }
}

/// What an Inception module would cost without dimension reduction, and how much of it goes to
/// the 3x3 and 5x5 branches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Naive {
    /// Parameters of the naive module (weights and biases of its three convolutions).
    pub naive_params: u64,
    /// Its multiply-adds per image.
    pub naive_macs: u64,
    /// Its output channels: the three convolutions' and all the input's, passed by the pool.
    pub naive_channels: usize,
    /// The 3x3 branch's share of the real module's output channels.
    pub share_3x3_channels: f64,
    /// The 5x5 branch's share of the output channels.
    pub share_5x5_channels: f64,
    /// The 3x3 branch's share of the module's multiply-adds, its reduction included.
    pub share_3x3_macs: f64,
    /// The 5x5 branch's share of the multiply-adds, its reduction included.
    pub share_5x5_macs: f64,
}

impl Naive {
    /// The naive cost of `module`, whose output is `height x width` and whose real cost is
    /// `macs`; `None` when its input's channels are not known.
    fn of(module: &Module, (height, width): (u64, u64), macs: u64) -> Option<Naive> {
        let input = module.input_channels? as u64;
        let branch = |kind| module.branch(kind);
        let (one, three, five) = (
            branch(BranchKind::OneByOne)?,
            branch(BranchKind::ThreeByThree)?,
            branch(BranchKind::FiveByFive)?,
        );
        let weights: u64 = [(one, 1), (three, 9), (five, 25)]
            .iter()
            .map(|(b, area)| input * area * b.channels as u64)
            .sum();
        let biases: u64 = [one, three, five].iter().map(|b| b.channels as u64).sum();
        let channels: usize = module.branches.iter().map(|b| b.channels).sum();
        let share = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { 0.0 };
        Some(Naive {
            naive_params: weights + biases,
            naive_macs: weights * height * width,
            naive_channels: one.channels + three.channels + five.channels + input as usize,
            share_3x3_channels: share(three.channels as f64, channels as f64),
            share_5x5_channels: share(five.channels as f64, channels as f64),
            share_3x3_macs: share(three.macs as f64, macs as f64),
            share_5x5_macs: share(five.macs as f64, macs as f64),
        })
    }
}

/// The network as the stages of Table 1: Inception modules, convolutions (a 1x1 reduction
/// with the convolution it feeds counts as one stage of depth 2), pools, LRN, the classifier.
/// Other nodes (activations, reshapes) are folded into the stage before them.
pub fn stages(network: &Network, modules: &[Module], with_paper: bool) -> Vec<Stage> {
    let layers = &network.layers;
    let wiring = Wiring::new(layers);
    let mut owner: HashMap<usize, &Module> = HashMap::new();
    for module in modules {
        owner.extend(module.members.iter().map(|&i| (i, module)));
    }
    let mut stages: Vec<Stage> = Vec::new();
    let mut done = vec![false; layers.len()];
    for (index, layer) in layers.iter().enumerate() {
        if done[index] {
            continue;
        }
        done[index] = true;
        if let Some(module) = owner.get(&index) {
            stages.push(module_stage(module, layers));
            module.members.iter().for_each(|&i| done[i] = true);
            continue;
        }
        let mut stage = match layer.op.as_str() {
            "Conv" => conv_stage(&wiring, index, &owner, &mut done),
            "MaxPool" => Stage::new("max pool", layer, 0),
            "AveragePool" | "GlobalAveragePool" => Stage::new("avg pool", layer, 0),
            "LRN" => Stage::new("LRN", layer, 0),
            "Gemm" | "MatMul" => Stage::new("linear", layer, 1),
            "Softmax" => Stage::new("softmax", layer, 0),
            "Dropout" => Stage::new("dropout", layer, 0),
            _ => match stages.last_mut() {
                Some(previous) => {
                    previous.add(layer);
                    continue;
                }
                None => Stage::new(&layer.op, layer, 0),
            },
        };
        if layer.op != "Conv" {
            stage.add(layer);
        }
        stages.push(stage);
    }
    if with_paper {
        for stage in &mut stages {
            if let Some((params, ops)) = paper::figures(&stage.stage, &stage.output) {
                stage.paper_params = Some(params);
                stage.paper_ops = Some(ops);
            }
        }
    }
    stages
}

fn module_stage(module: &Module, layers: &[Layer]) -> Stage {
    let concat = module.members.iter().map(|&i| &layers[i]).find(|l| l.name == module.concat);
    let mut stage = concat.map_or_else(
        || Stage::new(&module.label(), &layers[module.members[0]], 2),
        |concat| Stage::new(&module.label(), concat, 2),
    );
    stage.patch = None;
    let branch = |kind| module.branch(kind);
    stage.n1x1 = branch(BranchKind::OneByOne).map(|b| b.channels);
    stage.n3x3_reduce = branch(BranchKind::ThreeByThree).and_then(|b| b.reduce);
    stage.n3x3 = branch(BranchKind::ThreeByThree).map(|b| b.channels);
    stage.n5x5_reduce = branch(BranchKind::FiveByFive).and_then(|b| b.reduce);
    stage.n5x5 = branch(BranchKind::FiveByFive).map(|b| b.channels);
    stage.pool_proj = branch(BranchKind::PoolProj).map(|b| b.channels);
    module.members.iter().for_each(|&i| stage.add(&layers[i]));
    let size = concat.map(|c| {
        let dim = |i: usize| c.shape.get(i).and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
        (dim(2), dim(3))
    });
    stage.naive = size.and_then(|size| Naive::of(module, size, stage.macs));
    stage
}

/// A convolution stage: alone (depth 1), or a 1x1 reduction feeding a wider convolution
/// (depth 2, with its `#reduce` column).
fn conv_stage(
    wiring: &Wiring,
    index: usize,
    owner: &HashMap<usize, &Module>,
    done: &mut [bool],
) -> Stage {
    let layers = wiring.layers;
    let conv = &layers[index];
    let next = wiring.next_past_activation(&conv.output).filter(|(next, _)| {
        let next_layer = &layers[*next];
        conv.kernel == Some((1, 1))
            && next_layer.op == "Conv"
            && next_layer.kernel.is_some_and(|(k, _)| k > 1)
            && !owner.contains_key(next)
            && !done[*next]
    });
    let Some((wide, between)) = next else {
        let mut stage = Stage::new("convolution", conv, 1);
        stage.add(conv);
        return stage;
    };
    let wide_layer = &layers[wide];
    let mut stage = Stage::new("convolution", wide_layer, 2);
    match wide_layer.kernel {
        Some((5, _)) => (stage.n5x5_reduce, stage.n5x5) = (conv.channels(), wide_layer.channels()),
        _ => (stage.n3x3_reduce, stage.n3x3) = (conv.channels(), wide_layer.channels()),
    }
    for i in between.into_iter().chain([index, wide]) {
        stage.add(&layers[i]);
        done[i] = true;
    }
    stage
}

/// Table 1 and the branch order of each module, as aligned text.
pub fn to_text(stages: &[Stage], modules: &[Module]) -> String {
    let paper = stages.iter().any(|s| s.paper_params.is_some() || s.paper_ops.is_some());
    let cell = |v: Option<usize>| v.map_or_else(String::new, |v| v.to_string());
    let mut header = vec![
        "stage",
        "patch/stride",
        "output",
        "depth",
        "#1x1",
        "#3x3 reduce",
        "#3x3",
        "#5x5 reduce",
        "#5x5",
        "pool proj",
        "params",
        "mult-adds",
    ];
    if paper {
        header.extend(["paper params", "paper ops"]);
    }
    let header: [String; 14] =
        std::array::from_fn(|i| header.get(i).copied().unwrap_or("").to_owned());
    let rows: Vec<[String; 14]> = stages
        .iter()
        .map(|s| {
            [
                s.stage.clone(),
                s.patch.clone().unwrap_or_default(),
                s.output.clone(),
                s.depth.to_string(),
                cell(s.n1x1),
                cell(s.n3x3_reduce),
                cell(s.n3x3),
                cell(s.n5x5_reduce),
                cell(s.n5x5),
                cell(s.pool_proj),
                thousands(s.params),
                thousands(s.macs),
                s.paper_params.unwrap_or_default().to_owned(),
                s.paper_ops.unwrap_or_default().to_owned(),
            ]
        })
        .collect();
    let totals: [String; 14] = std::array::from_fn(|i| match i {
        0 => "total".into(),
        10 => thousands(stages.iter().map(|s| s.params).sum()),
        11 => thousands(stages.iter().map(|s| s.macs).sum()),
        _ => String::new(),
    });
    let right: [bool; 14] = std::array::from_fn(|i| i >= 3);
    let mut text = aligned(&header, &rows, &totals, &right);
    if modules.is_empty() {
        text.push_str(
            "\nno Inception modules: no Concat joins 1x1, 3x3, 5x5 and pool-projection branches\n",
        );
        return text;
    }
    let _ = writeln!(
        text,
        "\nconcatenation order (1 = 1x1, 3 = 3x3, 5 = 5x5, m = max-pool projection):"
    );
    let width = modules.iter().map(|m| m.name.len()).max().unwrap_or(0);
    for module in modules {
        let ranges: Vec<String> = module
            .branches
            .iter()
            .map(|b| format!("{} {}..{}", b.kind.title(), b.range[0], b.range[1]))
            .collect();
        let _ =
            writeln!(text, "  {:<width$}  {}  {}", module.name, module.order, ranges.join(", "));
    }
    text + &naive_text(stages)
}

/// Each module's cost against the naive module's, and the shares of its 3x3 and 5x5 branches.
fn naive_text(stages: &[Stage]) -> String {
    let modules: Vec<(&Stage, &Naive)> =
        stages.iter().filter_map(|s| Some((s, s.naive.as_ref()?))).collect();
    if modules.is_empty() {
        return String::new();
    }
    let times = |naive: u64, real: u64| format!("{:.1}x", naive as f64 / real.max(1) as f64);
    let percent = |share: f64| format!("{:.0}%", share * 100.0);
    let header = [
        "module",
        "params",
        "naive",
        "ratio",
        "mult-adds",
        "naive",
        "ratio",
        "3x3 ch",
        "5x5 ch",
        "3x3 ops",
        "5x5 ops",
    ]
    .map(String::from);
    let rows: Vec<[String; 11]> = modules
        .iter()
        .map(|(stage, naive)| {
            [
                stage.stage.clone(),
                thousands(stage.params),
                thousands(naive.naive_params),
                times(naive.naive_params, stage.params),
                thousands(stage.macs),
                thousands(naive.naive_macs),
                times(naive.naive_macs, stage.macs),
                percent(naive.share_3x3_channels),
                percent(naive.share_5x5_channels),
                percent(naive.share_3x3_macs),
                percent(naive.share_5x5_macs),
            ]
        })
        .collect();
    let sum = |value: fn(&(&Stage, &Naive)) -> u64| modules.iter().map(value).sum::<u64>();
    let (params, naive_params) = (sum(|m| m.0.params), sum(|m| m.1.naive_params));
    let (macs, naive_macs) = (sum(|m| m.0.macs), sum(|m| m.1.naive_macs));
    let totals: [String; 11] = std::array::from_fn(|i| match i {
        0 => "total".into(),
        1 => thousands(params),
        2 => thousands(naive_params),
        3 => times(naive_params, params),
        4 => thousands(macs),
        5 => thousands(naive_macs),
        6 => times(naive_macs, macs),
        _ => String::new(),
    });
    let right: [bool; 11] = std::array::from_fn(|i| i >= 1);
    format!(
        "\ncost without the 1x1 reductions (the paper's naive module, on the same input), and the \
         shares of\nthe 3x3 and 5x5 branches in the output channels and the multiply-adds:\n{}",
        aligned(&header, &rows, &totals, &right)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_stop_at_a_slash() {
        assert_eq!(
            common_prefix(&["inception_3a/1x1", "inception_3a/3x3_reduce", "inception_3a/output"]),
            "inception_3a"
        );
        assert_eq!(common_prefix(&["mixed_1", "mixed_10"]), "mixed_1");
    }
}
