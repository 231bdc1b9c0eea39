//! How much each input channel of a 1x1 convolution is used: the size of its weights and, over
//! real images, its mean contribution to the convolution's output, with the branch of the
//! Inception module each channel came from.

use std::fmt::Write as _;

use std::convert::Infallible;

use anyhow::{ensure, Context, Result};
use rayon::prelude::*;
use serde::Serialize;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::tract_ndarray::ArrayD;

use super::weights;
use crate::engine::Classifier;
use crate::error::Error;
use crate::inputs::Input;
use crate::inspect::modules::{find_modules, BranchKind};
use crate::inspect::{aligned, Layer, Network};
use crate::model::attributes;
use crate::model::Probe;
use crate::pipeline::run_ordered;
use crate::record::path_text;

/// Layers that keep every channel where it is, looked through when finding a channel's source.
const CHANNEL_WISE: [&str; 6] = ["MaxPool", "AveragePool", "Relu", "Dropout", "Identity", "LRN"];

/// One input channel of the convolution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Channel {
    /// Index in the convolution's input.
    pub index: usize,
    /// The branch (`inception_3b/5x5`) or layer it comes from.
    pub source: String,
    /// L2 norm of its weights over the output channels.
    pub weight_norm: f32,
    /// Mean over images, positions and output channels of `|w[o,c] x[c,p]|`.
    pub contribution: Option<f64>,
    /// The same mean without the absolute value: these add up over channels to the mean of the
    /// convolution's output less its bias.
    pub signed_contribution: Option<f64>,
}

/// The input channels of one 1x1 convolution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelUse {
    /// The convolution's node name.
    pub layer: String,
    /// The tensor it reads.
    #[serde(skip)]
    pub input: String,
    /// The tensor it writes (before its activation).
    #[serde(skip)]
    pub output: String,
    /// Its output channels.
    pub outputs: usize,
    /// Images the contributions were measured on.
    pub images: usize,
    /// Every input channel, in order.
    pub channels: Vec<Channel>,
    #[serde(skip)]
    weights: Vec<f32>,
    #[serde(skip)]
    sums: Vec<[f64; 2]>,
}

/// How each input channel of the 1x1 convolution `layer` of `classifier`'s model (of every
/// one, when `None`) is used: its weights' size and, when there are `inputs`, its mean
/// contribution to the convolution's output over them, run on the classifier's worker
/// threads. `failed` is told of each input that could not be run, and of a layer that could
/// not take an image's activations, with the error.
pub fn measure(
    classifier: &Classifier,
    layer: Option<&str>,
    inputs: &[Input],
    mut failed: impl FnMut(&str, &Error),
) -> crate::Result<Vec<ChannelUse>> {
    let (proto, network) = super::graph(classifier)?;
    let layers = match layer {
        None => pointwise_convolutions(&network),
        Some(name) => vec![name.to_owned()],
    };
    let mut uses = layers
        .iter()
        .map(|name| ChannelUse::new(&proto, &network, name))
        .collect::<Result<Vec<_>>>()
        .map_err(|err| Error::model(&err))?;
    if inputs.is_empty() {
        return Ok(uses);
    }
    let tensors: Vec<&str> = uses.iter().map(|u| u.input.as_str()).collect();
    let probe = Probe::new(classifier.model_bytes(), &tensors).map_err(|err| Error::model(&err))?;
    let runner = classifier.runner();
    let work = |chunk: &[Input]| -> Vec<(String, crate::Result<Vec<ArrayD<f32>>>)> {
        let probed = |input: &Input| {
            let tensor = runner.tensor(input)?;
            probe.run(&tensor).map_err(|err| Error::model(&err))
        };
        chunk.iter().map(|input| (path_text(input.path()), probed(input))).collect()
    };
    let _ = run_ordered(inputs, classifier.threads(), 1, work, |(name, activations)| {
        let activations = match activations {
            Ok(activations) => activations,
            Err(err) => {
                failed(&name, &err);
                return Ok::<(), Infallible>(());
            }
        };
        // The layers' sums are independent: each is taken on a core of its own.
        let refused: Vec<(String, Error)> = uses
            .par_iter_mut()
            .zip(activations.par_iter())
            .filter_map(|(one, activation)| {
                one.add(activation).err().map(|err| (one.layer.clone(), Error::model(&err)))
            })
            .collect();
        refused.iter().for_each(|(layer, err)| failed(layer, err));
        Ok(())
    });
    Ok(uses)
}

/// Every 1x1 convolution of the network, by name.
fn pointwise_convolutions(network: &Network) -> Vec<String> {
    network.layers.iter().filter(|l| is_pointwise(l)).map(|l| l.name.clone()).collect()
}

fn is_pointwise(layer: &Layer) -> bool {
    layer.op == "Conv" && layer.kernel == Some((1, 1))
}

impl ChannelUse {
    /// The weights and sources of the input channels of the 1x1 convolution `name`.
    fn new(proto: &ModelProto, network: &Network, name: &str) -> Result<ChannelUse> {
        let layer =
            network.layers.iter().find(|l| l.name == name).with_context(|| {
                format!("no layer named {name}: `googlenet inspect` lists them")
            })?;
        let what = match layer.kernel {
            Some((h, w)) if layer.op == "Conv" => format!("a {h}x{w} convolution"),
            _ => format!("a {} node", layer.op),
        };
        ensure!(is_pointwise(layer), "{name} is {what}, not a 1x1 convolution");
        let graph = proto.graph.as_ref().context("the ONNX file holds no graph")?;
        let node = graph
            .node
            .iter()
            .find(|n| n.output.first() == Some(&layer.output))
            .with_context(|| format!("{name}: node not found"))?;
        let weight_name = node.input.get(1).context("convolution without weights")?;
        let tensor = graph
            .initializer
            .iter()
            .find(|t| &t.name == weight_name)
            .with_context(|| format!("{name}: weights are not a constant"))?;
        let (outputs, inputs) = match tensor.dims.as_slice() {
            &[o, i, 1, 1] => (usize::try_from(o)?, usize::try_from(i)?),
            dims => anyhow::bail!("{name}: weights {dims:?}, expected [O, C, 1, 1]"),
        };
        ensure!(attributes::int(node, "group").unwrap_or(1) == 1, "{name}: grouped");
        let weights = weights::floats(tensor)?;
        ensure!(weights.len() == outputs * inputs, "{name}: {} weights", weights.len());
        let input = layer.inputs.first().context("convolution without input")?.clone();
        let channels = sources(network, &input, inputs)
            .into_iter()
            .enumerate()
            .map(|(c, source)| Channel {
                index: c,
                source,
                weight_norm: column(&weights, inputs, c).map(|w| w * w).sum::<f32>().sqrt(),
                contribution: None,
                signed_contribution: None,
            })
            .collect();
        Ok(ChannelUse {
            layer: name.to_owned(),
            input,
            output: layer.output.clone(),
            outputs,
            images: 0,
            channels,
            weights,
            sums: vec![[0.0; 2]; inputs],
        })
    }

    /// Adds one image's input to the convolution (`[1, C, H, W]`) to the contributions.
    fn add(&mut self, input: &ArrayD<f32>) -> Result<()> {
        let inputs = self.channels.len();
        ensure!(
            input.ndim() == 4 && input.shape().get(..2) == Some(&[1, inputs][..]),
            "activation {:?}, expected [1, {inputs}, H, W]",
            input.shape()
        );
        let plane = input.len() / inputs;
        let values = input.as_standard_layout();
        let values = values.as_slice().context("activation not contiguous")?;
        for (sums, map) in self.sums.iter_mut().zip(values.chunks_exact(plane)) {
            sums[0] += map.iter().map(|v| f64::from(v.abs())).sum::<f64>() / plane as f64;
            sums[1] += map.iter().map(|&v| f64::from(v)).sum::<f64>() / plane as f64;
        }
        self.images += 1;
        let images = self.images as f64;
        for (channel, sums) in self.channels.iter_mut().zip(&self.sums) {
            // |w x| = |w| |x|, and means of products of independent factors factor.
            let column = || column(&self.weights, inputs, channel.index).map(f64::from);
            let outputs = self.outputs as f64;
            let abs_weight = column().map(f64::abs).sum::<f64>() / outputs;
            let weight = column().sum::<f64>() / outputs;
            channel.contribution = Some(abs_weight * sums[0] / images);
            channel.signed_contribution = Some(weight * sums[1] / images);
        }
        Ok(())
    }

    /// Where the input comes from: a module and its branch count, or one layer.
    fn from(&self) -> String {
        let mut sources: Vec<&str> = self.channels.iter().map(|c| c.source.as_str()).collect();
        sources.dedup();
        match sources.as_slice() {
            [one] => (*one).to_owned(),
            [first, ..] => {
                let module = first.split('/').next().unwrap_or(first);
                format!("{module} ({} branches)", sources.len())
            }
            [] => String::new(),
        }
    }

    /// Per-source totals: `(source, channels, mean weight norm, share of the contribution)`.
    fn by_source(&self) -> Vec<(String, usize, f32, Option<f64>)> {
        let total: Option<f64> = self.channels.iter().map(|c| c.contribution).sum();
        let mut sources: Vec<String> = Vec::new();
        for channel in &self.channels {
            if !sources.contains(&channel.source) {
                sources.push(channel.source.clone());
            }
        }
        sources
            .into_iter()
            .map(|source| {
                let members: Vec<&Channel> =
                    self.channels.iter().filter(|c| c.source == source).collect();
                let norm =
                    members.iter().map(|c| c.weight_norm).sum::<f32>() / members.len() as f32;
                let part: Option<f64> = members.iter().map(|c| c.contribution).sum();
                let share = part.zip(total).map(|(p, t)| if t > 0.0 { p / t } else { 0.0 });
                (source, members.len(), norm, share)
            })
            .collect()
    }

    /// The weakest channel by weight norm and by contribution, relative to the median.
    fn weakest(&self) -> Weakest {
        let relative = |value: fn(&Channel) -> Option<f64>| {
            let mut values: Vec<f64> = self.channels.iter().filter_map(value).collect();
            values.sort_by(f64::total_cmp);
            let median = *values.get(values.len() / 2)?;
            let (channel, least) = self
                .channels
                .iter()
                .filter_map(|c| Some((c, value(c)?)))
                .min_by(|a, b| a.1.total_cmp(&b.1))?;
            Some(Outlier {
                channel: channel.index,
                source: channel.source.clone(),
                of_median: least / median,
                under_a_tenth: values.iter().filter(|v| **v < median * 0.1).count(),
            })
        };
        Weakest {
            by_weight: relative(|c| Some(f64::from(c.weight_norm))),
            by_contribution: relative(|c| c.contribution),
        }
    }
}

/// What `experiment channel-use` reports for one layer: every channel and the weakest ones.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// The layer's channels.
    #[serde(flatten)]
    pub one: &'a ChannelUse,
    /// Its weakest channels.
    pub weakest: Weakest,
}

impl<'a> Report<'a> {
    /// The report on `one`.
    pub fn new(one: &'a ChannelUse) -> Report<'a> {
        Report { weakest: one.weakest(), one }
    }

    /// The per-channel table, the totals by source, a histogram and the weakest channel.
    pub fn to_text(&self) -> String {
        let Report { one: this, weakest } = self;
        let mut text = format!(
            "{}: {} input channels, {} outputs, {} images\n\n",
            this.layer,
            this.channels.len(),
            this.outputs,
            this.images
        );
        let top = this.channels.iter().filter_map(|c| c.contribution).fold(0.0, f64::max);
        let rows: Vec<[String; 5]> = this
            .channels
            .iter()
            .map(|c| {
                [
                    c.index.to_string(),
                    c.source.clone(),
                    format!("{:.4}", c.weight_norm),
                    c.contribution.map_or("-".into(), |v| format!("{v:.5}")),
                    c.contribution.map_or(String::new(), |v| bar(v / top, 20)),
                ]
            })
            .collect();
        let header = ["channel", "source", "weight L2", "contribution", ""].map(String::from);
        let right = [true, false, true, true, false];
        text += &aligned(&header, &rows, &Default::default(), &right);
        text += "\n";
        let rows: Vec<[String; 4]> = this
            .by_source()
            .into_iter()
            .map(|(source, n, norm, share)| {
                let share = share.map_or("-".into(), |s| format!("{:.1}%", s * 100.0));
                [source, n.to_string(), format!("{norm:.4}"), share]
            })
            .collect();
        let header = ["source", "channels", "mean weight L2", "share"].map(String::from);
        text += &aligned(&header, &rows, &Default::default(), &[false, true, true, true]);
        text += "\nweight L2 relative to the median, channels per bin:\n";
        text += &histogram(&this.channels.iter().map(|c| c.weight_norm).collect::<Vec<_>>());
        text += &weakest.to_text();
        text
    }
}

/// The weakest input channel of a convolution, by weight norm and by measured contribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Weakest {
    /// By the L2 norm of the weights.
    pub by_weight: Option<Outlier>,
    /// By the mean absolute contribution, when images were given.
    pub by_contribution: Option<Outlier>,
}

/// The weakest channel by one measure, and how many channels are far below the median.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outlier {
    /// Its index.
    pub channel: usize,
    /// Where it comes from.
    pub source: String,
    /// Its value over the median channel's.
    pub of_median: f64,
    /// How many channels are under a tenth of the median.
    pub under_a_tenth: usize,
}

impl Outlier {
    fn to_text(&self) -> String {
        format!(
            "channel {} ({}), {:.0}% of the median; {} channels under 10% of the median",
            self.channel,
            self.source,
            self.of_median * 100.0,
            self.under_a_tenth
        )
    }
}

impl Weakest {
    fn to_text(&self) -> String {
        let mut text = String::new();
        for (what, weakest) in
            [("weight", &self.by_weight), ("contribution", &self.by_contribution)]
        {
            if let Some(outlier) = weakest {
                let _ = writeln!(text, "weakest {what}: {}", outlier.to_text());
            }
        }
        text
    }
}

/// One summary line per layer, for a report on every 1x1 convolution.
pub fn summary(reports: &[Report]) -> String {
    let rows: Vec<[String; 5]> = reports
        .iter()
        .map(|Report { one: u, weakest }| {
            let cell = |outlier: &Option<Outlier>| {
                outlier.as_ref().map_or("-".into(), |o| {
                    let share = o.of_median * 100.0;
                    format!(
                        "{share:.0}% (#{} {}), {} under 10%",
                        o.channel, o.source, o.under_a_tenth
                    )
                })
            };
            [
                u.layer.clone(),
                u.channels.len().to_string(),
                u.from(),
                cell(&weakest.by_weight),
                cell(&weakest.by_contribution),
            ]
        })
        .collect();
    let header = [
        "layer",
        "inputs",
        "first source",
        "weakest weight / median",
        "weakest contribution / median",
    ]
    .map(String::from);
    aligned(&header, &rows, &Default::default(), &[false, true, false, false, false])
}

fn column(weights: &[f32], inputs: usize, c: usize) -> impl Iterator<Item = f32> + '_ {
    weights.iter().skip(c).step_by(inputs).copied()
}

/// Where each of the `count` channels of `tensor` comes from: the branch of an Inception
/// module (looking through pools and activations) or else the layer that wrote it.
fn sources(network: &Network, tensor: &str, count: usize) -> Vec<String> {
    let mut current = tensor;
    let producer = loop {
        let Some(layer) = network.layers.iter().find(|l| l.output == current) else {
            return vec![current.to_owned(); count];
        };
        match layer.inputs.as_slice() {
            [input] if CHANNEL_WISE.contains(&layer.op.as_str()) => current = input,
            _ => break layer,
        }
    };
    let module = find_modules(network).into_iter().find(|m| m.concat == producer.name);
    (0..count)
        .map(|c| {
            let branch = module.as_ref().and_then(|m| {
                let b = m.branches.iter().find(|b| (b.range[0]..=b.range[1]).contains(&c))?;
                Some(format!("{}/{}", m.name, branch_name(b.kind)))
            });
            branch.unwrap_or_else(|| producer.name.clone())
        })
        .collect()
}

fn branch_name(kind: BranchKind) -> &'static str {
    match kind {
        BranchKind::OneByOne => "1x1",
        BranchKind::ThreeByThree => "3x3",
        BranchKind::FiveByFive => "5x5",
        BranchKind::PoolProj => "pool_proj",
    }
}

/// A bar of `width` cells for a fraction 0..=1, in eighths.
fn bar(fraction: f64, width: usize) -> String {
    let eighths = (fraction.clamp(0.0, 1.0) * (width * 8) as f64).round() as usize;
    let mut text = "█".repeat(eighths / 8);
    if let Some(&part) = ['▏', '▎', '▍', '▌', '▋', '▊', '▉'].get((eighths % 8).wrapping_sub(1))
    {
        text.push(part);
    }
    text
}

/// Ten bins of `values` relative to their median, 0 to 2x, with counts and bars.
fn histogram(values: &[f32]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let Some(&median) = sorted.get(sorted.len() / 2) else { return String::new() };
    let mut bins = [0usize; 10];
    for v in values {
        let bin = ((v / median) * 5.0).floor().clamp(0.0, 9.0) as usize;
        if let Some(count) = bins.get_mut(bin) {
            *count += 1;
        }
    }
    let most = bins.iter().copied().max().unwrap_or(1).max(1);
    let mut text = String::new();
    for (i, n) in bins.iter().enumerate() {
        let range = if i == 9 {
            "1.8-  ".to_owned()
        } else {
            format!("{:.1}-{:.1}", i as f32 * 0.2, (i + 1) as f32 * 0.2)
        };
        let line = format!("  {range}  {n:>4}  {}", bar(*n as f64 / most as f64, 30));
        let _ = writeln!(text, "{}", line.trim_end());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_histograms_scale() {
        assert_eq!(bar(1.0, 2), "██");
        assert_eq!(bar(0.5, 1), "▌");
        assert_eq!(bar(0.0, 3), "");
        let text = histogram(&[1.0, 1.0, 1.0, 0.05]);
        assert!(text.lines().next().unwrap().contains("   1  "), "{text}");
        assert!(text.lines().nth(5).unwrap().contains("   3  "), "{text}");
    }
}
