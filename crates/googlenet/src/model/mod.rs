//! The ONNX classifier: where it comes from, loading it, reading its input and output from the
//! graph, and running the optimised tract plan.

mod allowlist;
pub(crate) mod attributes;
mod checked_ops;
mod features;
mod graph_size;
#[cfg(test)]
mod parity;
mod shapes;
mod source;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use prost::Message;
use tract_onnx::pb::{ModelProto, TensorProto};
use tract_onnx::prelude::tract_ndarray::{self, Array3, Array4, ArrayD};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;
use tract_onnx::tract_core::plan::SimpleState;
use tract_onnx::tract_hir::infer::Factoid;

#[cfg(test)]
pub(crate) use allowlist::OPERATORS;
pub(crate) use checked_ops::onnx;
pub use source::{cache_path, ModelSource, Origin, MODEL_ENV};

pub use googlenet_kernels::{Kernel, Precision as KernelPrecision};

use crate::files::Size;
use crate::guard;

/// What the model's output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// A probability distribution: the graph ends in a Softmax.
    Probabilities,
    /// Unnormalised scores: softmax is applied to them.
    Logits,
    /// Features from inside the network, returned as they are.
    Features,
}

/// The model's image input as read from the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// The input's name in the graph, such as `data_0`.
    pub name: String,
    /// Input width in pixels.
    pub width: u32,
    /// Input height in pixels.
    pub height: u32,
}

/// A loaded classifier: one optimised plan, for a fixed batch size, that many threads may run
/// at once.
#[derive(Debug)]
pub struct Model {
    plan: Arc<TypedSimplePlan>,
    /// The image input.
    pub input: InputSpec,
    /// The name of the output: the class scores, or the features.
    pub output_name: String,
    /// What the output holds.
    pub output_kind: OutputKind,
    /// How many values the output holds per image: the classes it scores, or the features.
    pub classes: usize,
    /// How many images one run of the plan takes.
    pub batch_size: usize,
}

impl Model {
    /// [`Model::with_kernels`] running the default operators, in f32 ([`Kernels::default`]),
    /// for the tests and the fuzzers.
    #[cfg(any(test, fuzzing))]
    pub fn from_bytes(bytes: &[u8], batch_size: usize) -> Result<Model> {
        Model::with_kernels(bytes, batch_size, Kernels::default())
    }

    /// Parses an ONNX model and prepares its plan for batches of `batch_size` images, running
    /// the operators of `kernels`. Above 1, Reshape nodes that pin the batch to 1 are rewritten
    /// to copy it from their input.
    pub fn with_kernels(bytes: &[u8], batch_size: usize, kernels: Kernels) -> Result<Model> {
        guard::catch_load(|| Model::prepare(read_proto(bytes)?, batch_size, None, kernels))
    }

    /// [`Model::with_kernels`] for a plan that returns features instead of class scores: the
    /// output of the node or tensor `layer`, or by default what the classifier's last linear
    /// layer reads, followed back through reshapes to the layer that computes it (the global
    /// average pool of a CNN).
    pub fn features(
        bytes: &[u8],
        batch_size: usize,
        layer: Option<&str>,
        kernels: Kernels,
    ) -> Result<Model> {
        guard::catch_load(|| {
            let proto = read_proto(bytes)?;
            let tensor = match layer {
                Some(layer) => layer.to_owned(),
                None => features::feature_tensor(&proto)?,
            };
            Model::prepare(proto, batch_size, Some(&tensor), kernels)
        })
    }

    /// Prepares the plan for the first output, or the tensor or node named `features`.
    fn prepare(
        mut proto: ModelProto,
        batch_size: usize,
        features: Option<&str>,
        kernels: Kernels,
    ) -> Result<Model> {
        ensure!(batch_size >= 1, "the batch size must be at least 1");
        let onnx = onnx();
        let output_kind = match features {
            Some(_) => OutputKind::Features,
            None => output_kind(&proto)?,
        };
        if batch_size > 1 {
            free_batch(&mut proto);
        }
        let mut model = onnx.model_for_proto_model(&proto)?;
        ensure!(model.inputs.len() == 1, "expected one image input, found {}", model.inputs.len());
        ensure!(!model.outputs.is_empty(), "the model has no output");
        let input = input_spec(&model)?;
        let fact = f32::fact([batch_size, 3, input.height as usize, input.width as usize]);
        model.set_input_fact(0, fact.into())?;
        match features {
            Some(name) => model.select_outputs_by_name([name]).map_err(|_| {
                anyhow::anyhow!("no node or tensor `{name}`: `googlenet inspect` lists the layers")
            })?,
            None => {
                model.select_output_outlets(&[*model.outputs.first().context("no output")?])?
            }
        }
        let output = *model.outputs.first().context("the model has no output")?;
        let output_name = model
            .outlet_label(output)
            .map_or_else(|| model.node(output.node).name.clone(), str::to_owned);
        let optimised = optimise(model, kernels)
            .with_context(|| format!("cannot prepare the model for batches of {batch_size}"))?;
        let classes = class_count(&optimised, batch_size)?;
        let plan = optimised.into_runnable()?;
        Ok(Model { plan, input, output_name, output_kind, classes, batch_size })
    }

    /// Runs up to [`Model::batch_size`] `3 x H x W` images through the network in one call and
    /// returns each one's output: its class probabilities (softmax applied to logits), or its
    /// features, flattened. A short batch is padded.
    pub fn run(&self, images: &[Array3<f32>]) -> Result<Vec<Vec<f32>>> {
        let input = self.batch(images)?.into_tvalue();
        let outputs = guard::catch(|| self.plan.run(tvec!(input)))?;
        let output = outputs.first().context("the model returned no output")?;
        let scores = output.to_plain_array_view::<f32>()?;
        let scores = scores.as_slice().context("the output is not contiguous")?;
        Ok(scores
            .chunks_exact(self.classes)
            .take(images.len())
            .map(|row| match self.output_kind {
                OutputKind::Probabilities | OutputKind::Features => row.to_vec(),
                OutputKind::Logits => crate::classify::softmax(row),
            })
            .collect())
    }

    /// Runs a batch of copies of `image` `runs` times after one warm-up run, timing every node
    /// of the optimised plan. Returns each node's mean time and the mean time of a whole run.
    pub fn profile(&self, image: &Array3<f32>, runs: usize) -> Result<(Vec<NodeTime>, Duration)> {
        let input = self.batch(&vec![image.clone(); self.batch_size])?;
        let mut state = SimpleState::new(&self.plan)?;
        state.run(tvec!(input.clone().into_tvalue()))?;
        let mut times: HashMap<usize, Duration> = HashMap::new();
        let mut total = Duration::ZERO;
        for _ in 0..runs.max(1) {
            let started = Instant::now();
            state.run_plan_with_eval(
                tvec!(input.clone().into_tvalue()),
                |ctx, op_state, node, inputs| {
                    let node_started = Instant::now();
                    let outputs = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                    *times.entry(node.id).or_default() += node_started.elapsed();
                    outputs
                },
            )?;
            total += started.elapsed();
        }
        let runs = runs.max(1) as u32;
        let model = self.plan.model();
        let mut nodes: Vec<NodeTime> = times
            .into_iter()
            .map(|(id, time)| NodeTime {
                name: model.node(id).name.clone(),
                op: model.node(id).op.name().to_string(),
                time: time / runs,
            })
            .collect();
        nodes.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| a.name.cmp(&b.name)));
        Ok((nodes, total / runs))
    }

    /// Stacks up to a batch of images into the input tensor, padding with zeros.
    fn batch(&self, images: &[Array3<f32>]) -> Result<Tensor> {
        ensure!(
            images.len() <= self.batch_size,
            "{} images for a batch of {}",
            images.len(),
            self.batch_size
        );
        let (h, w) = (self.input.height as usize, self.input.width as usize);
        let mut batch = Array4::<f32>::zeros((self.batch_size, 3, h, w));
        for (mut slot, image) in batch.outer_iter_mut().zip(images) {
            let shape = image.shape();
            ensure!(shape == [3, h, w], "image tensor {shape:?}, expected [3, {h}, {w}]");
            slot.assign(image);
        }
        Ok(Tensor::from(batch))
    }
}

/// The mean time one node of the optimised plan took in [`Model::profile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTime {
    /// Node name (tract keeps the ONNX name of the main operator of a fused node).
    pub name: String,
    /// tract's operator.
    pub op: String,
    /// Mean time per run.
    pub time: Duration,
}

/// The environment variable that forces a kernel path: `tract` for tract's own operators, or
/// the name of a product kernel of the project's ([`Kernel::NAMES`]); unset, the fastest
/// kernel this CPU runs.
pub const ISA_ENV: &str = "GOOGLENET_ISA";

/// Whose convolution, max-pool and LRN operators a plan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// The project's own ([`googlenet_kernels`]): the convolutions on this product kernel at
    /// this precision, or tract's where the CPU has no kernel. The default.
    Project(Option<Kernel>, KernelPrecision),
    /// tract's own, in f32: slower, the reference the differential tests compare the
    /// project's with.
    Tract,
}

impl Default for Kernels {
    /// The project's, on the fastest kernel this CPU runs, in f32.
    fn default() -> Kernels {
        Kernels::Project(Kernel::detect(), KernelPrecision::F32)
    }
}

impl Kernels {
    /// The operators [`ISA_ENV`] forces, in f32, or by default the project's on the fastest
    /// kernel this CPU runs; an error says what is wrong with a value that is no path, or one
    /// this CPU lacks.
    pub fn from_env() -> std::result::Result<Kernels, String> {
        let Some(value) = std::env::var_os(ISA_ENV) else { return Ok(Kernels::default()) };
        let value = value.to_string_lossy();
        if value == "tract" {
            return Ok(Kernels::Tract);
        }
        if let Some(kernel) = Kernel::named(&value) {
            return Ok(Kernels::Project(Some(kernel), KernelPrecision::F32));
        }
        let paths = Kernel::NAMES.join(", ");
        Err(if Kernel::NAMES.contains(&&*value) {
            format!("is `{value}`, a kernel whose instructions this CPU lacks")
        } else {
            format!("is `{value}`, no kernel path: this build has {paths} and tract")
        })
    }

    /// The kernel path's name: the product kernel's ([`Kernel::name`]), `tract`, or `tract
    /// convolutions` where the CPU has no product kernel.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Project(Some(kernel), _) => kernel.name(),
            Kernels::Project(None, _) => "tract convolutions",
            Kernels::Tract => "tract",
        }
    }
}

/// Types the model, checks its shapes, puts the operators of `kernels` in place of tract's and
/// optimises it.
fn optimise(model: InferenceModel, kernels: Kernels) -> Result<TypedModel> {
    let mut typed = model.into_typed()?;
    shapes::check_shapes(&typed)?;
    if let Kernels::Project(kernel, precision) = kernels {
        googlenet_kernels::replace_operators(&mut typed, kernel, precision)?;
    }
    let optimised = typed.into_optimized().context("cannot optimise the model")?;
    check_tensor_bytes(&optimised)?;
    Ok(optimised)
}

/// The most memory the tensors of one run of a plan may hold at once: the guard's limit for a
/// single allocation, so that no tensor of a run that passes this check can be refused.
const MAX_TENSOR_BYTES: u64 = guard::MAX_ALLOCATION_BYTES;

/// Refuses a plan whose tensors would hold more than [`MAX_TENSOR_BYTES`] at once: a model file
/// can ask for any size (an input of 100000 x 100000 pixels, a Resize by 1000), and allocating
/// it would exhaust memory rather than fail. Tensors whose shape depends on the data are not
/// counted.
fn check_tensor_bytes(model: &TypedModel) -> Result<()> {
    let (peak, at) = peak_tensor_bytes(model)?;
    ensure!(
        peak <= MAX_TENSOR_BYTES,
        "one run would hold {:.1} GiB of tensors at once (at `{at}`), over the limit of {}",
        peak as f64 / f64::from(1 << 30),
        Size(MAX_TENSOR_BYTES)
    );
    Ok(())
}

/// The most bytes the node outputs of `model` hold at once when it runs in evaluation order,
/// each output freed after its last reader as tract's plan does, and the node at that point.
fn peak_tensor_bytes(model: &TypedModel) -> Result<(u64, &str)> {
    let order = model.eval_order()?;
    let mut last_read: HashMap<usize, usize> = HashMap::new();
    for (step, &id) in order.iter().enumerate() {
        last_read.insert(id, step);
        for input in &model.node(id).inputs {
            last_read.insert(input.node, step);
        }
    }
    for output in &model.outputs {
        last_read.insert(output.node, order.len());
    }
    let mut freed: HashMap<usize, u64> = HashMap::new();
    let (mut live, mut peak, mut at) = (0u64, 0u64, "");
    for (step, &id) in order.iter().enumerate() {
        let node = model.node(id);
        let bytes = node.outputs.iter().map(|o| fact_bytes(&o.fact)).fold(0, u64::saturating_add);
        live = live.saturating_add(bytes);
        if live > peak {
            (peak, at) = (live, &node.name);
        }
        let last = last_read.get(&id).copied().unwrap_or(step);
        let later = freed.entry(last).or_default();
        *later = later.saturating_add(bytes);
        live = live.saturating_sub(freed.remove(&step).unwrap_or(0));
    }
    Ok((peak, at))
}

/// The bytes of a tensor of `fact`'s type and shape; 0 when the shape is not known.
fn fact_bytes(fact: &TypedFact) -> u64 {
    let Some(shape) = fact.shape.as_concrete() else { return 0 };
    let size = fact.datum_type.size_of() as u64;
    shape.iter().try_fold(size, |acc, &d| acc.checked_mul(d as u64)).unwrap_or(u64::MAX)
}

/// A plan that returns the values of chosen tensors inside the network for one image: what a
/// layer receives and gives, for the experiments.
#[derive(Debug)]
pub struct Probe {
    plan: Arc<TypedSimplePlan>,
    input: InputSpec,
}

impl Probe {
    /// Prepares the model in `bytes` to return the tensors named `tensors`, in that order.
    pub fn new(bytes: &[u8], tensors: &[&str]) -> Result<Probe> {
        guard::catch_load(|| Probe::prepare(bytes, tensors))
    }

    fn prepare(bytes: &[u8], tensors: &[&str]) -> Result<Probe> {
        let mut model = onnx().model_for_proto_model(&read_proto(bytes)?)?;
        let input = input_spec(&model)?;
        let fact = f32::fact([1, 3, input.height as usize, input.width as usize]);
        model.set_input_fact(0, fact.into())?;
        model.select_outputs_by_name(tensors)?;
        let kernels =
            Kernels::from_env().map_err(|problem| anyhow::anyhow!("{ISA_ENV} {problem}"))?;
        let plan = optimise(model, kernels)?;
        let plan = plan.into_runnable()?;
        Ok(Probe { plan, input })
    }

    /// The probed tensors for one `3 x H x W` image.
    pub fn run(&self, image: &Array3<f32>) -> Result<Vec<ArrayD<f32>>> {
        let (h, w) = (self.input.height as usize, self.input.width as usize);
        ensure!(
            image.shape() == [3, h, w],
            "image tensor {:?}, expected [3, {h}, {w}]",
            image.shape()
        );
        let input = image.clone().insert_axis(tract_ndarray::Axis(0));
        let outputs = self.plan.run(tvec!(Tensor::from(input).into_tvalue()))?;
        outputs.iter().map(|t| Ok(t.to_plain_array_view::<f32>()?.to_owned())).collect()
    }
}

/// Parses an ONNX file's bytes, with an error that says what is wrong with a file that is
/// empty, not ONNX or cut short, whose graph is too large to optimise in reasonable time, or
/// that uses an operator image classifiers do not.
pub fn read_proto(bytes: &[u8]) -> Result<ModelProto> {
    ensure!(!bytes.is_empty(), "empty file");
    // Decoded from the bytes as they lie: tract's own reader copies them into a buffer first.
    let proto = ModelProto::decode(bytes).context("not an ONNX model, or a truncated one")?;
    graph_size::check(&proto)?;
    allowlist::check(&proto)?;
    Ok(proto)
}

/// Rewrites constant Reshape shapes that start with 1 (the batch pinned to one, as in the
/// model zoo's GoogLeNet `[1, 1024]`) to start with 0: copy the batch from the input.
pub(crate) fn free_batch(proto: &mut ModelProto) {
    let Some(graph) = proto.graph.as_mut() else { return };
    let shapes: Vec<String> = graph
        .node
        .iter()
        .filter(|node| node.op_type == "Reshape")
        .filter_map(|node| node.input.get(1).cloned())
        .collect();
    for tensor in graph.initializer.iter_mut().filter(|t| shapes.contains(&t.name)) {
        pin_batch_to_input(tensor);
    }
    for node in graph.node.iter_mut().filter(|n| n.op_type == "Constant") {
        if node.output.iter().any(|o| shapes.contains(o)) {
            node.attribute.iter_mut().filter_map(|a| a.t.as_mut()).for_each(pin_batch_to_input);
        }
    }
}

/// Replaces a leading 1 in an int64 shape tensor by 0.
fn pin_batch_to_input(tensor: &mut TensorProto) {
    const INT64: i32 = 7;
    if tensor.data_type != INT64 {
        return;
    }
    if let Some(first @ 1) = tensor.int64_data.first_mut() {
        *first = 0;
    } else if let Some(first) = tensor.raw_data.get_mut(..8) {
        if *first == 1i64.to_le_bytes() {
            first.copy_from_slice(&0i64.to_le_bytes());
        }
    }
}

/// Reads the image input's name and size, which must be `[N, 3, H, W]` with H and W known.
fn input_spec(model: &InferenceModel) -> Result<InputSpec> {
    let outlet = *model.inputs.first().context("the model has no input")?;
    let name = model.node(outlet.node).name.clone();
    let fact = model.input_fact(0)?;
    let dims: Option<Vec<Option<usize>>> = (!fact.shape.is_open())
        .then(|| fact.shape.dims().map(|d| d.concretize().and_then(|d| d.as_usize())).collect());
    let shape = || format!("{:?}", fact.shape);
    match dims.as_deref() {
        Some([_, Some(3), Some(h @ 1..), Some(w @ 1..)]) => Ok(InputSpec {
            name,
            height: u32::try_from(*h).context("input height out of range")?,
            width: u32::try_from(*w).context("input width out of range")?,
        }),
        Some([_, Some(3), Some(_), Some(_)]) => {
            bail!("input `{name}` has shape {}: an image is at least 1x1", shape())
        }
        Some([_, _, _, _]) => {
            bail!("input `{name}` has shape {}: expected [N,3,H,W] with H and W fixed", shape())
        }
        _ => bail!("input `{name}` has shape {}: expected an image input [N,3,H,W]", shape()),
    }
}

/// Whether the first graph output is produced by a Softmax node.
fn output_kind(proto: &ModelProto) -> Result<OutputKind> {
    let graph = proto.graph.as_ref().context("the ONNX file holds no graph")?;
    let output = graph.output.first().context("the model has no output")?;
    let producer = graph.node.iter().find(|node| node.output.contains(&output.name));
    Ok(match producer {
        Some(node) if node.op_type == "Softmax" => OutputKind::Probabilities,
        _ => OutputKind::Logits,
    })
}

/// The number of values the output holds per image.
fn class_count(model: &TypedModel, batch_size: usize) -> Result<usize> {
    let fact = model.output_fact(0)?;
    let shape = fact.shape.as_concrete().context("the output shape is not fixed")?;
    let classes = shape.iter().product::<usize>() / batch_size;
    ensure!(
        classes > 0 && shape.first() == Some(&batch_size),
        "the output {shape:?} does not hold one row per image of a batch of {batch_size}"
    );
    Ok(classes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::math;

    #[test]
    fn garbage_is_not_an_onnx_model() {
        let err = Model::from_bytes(b"this is not a protobuf", 1).unwrap_err();
        assert!(format!("{err:#}").contains("not an ONNX model"), "{err:#}");
    }

    /// `x` (1000 floats) through `steps` of additions of two earlier outputs, by name.
    fn additions(steps: &[(&str, &str, &str)]) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1000])).unwrap();
        let mut outlets = HashMap::from([("x", x)]);
        for &(name, a, b) in steps {
            let inputs = [outlets[a], outlets[b]];
            let wire = model.wire_node(name, math::add(), &inputs).unwrap()[0];
            outlets.insert(name, wire);
        }
        let last = steps.last().map_or("x", |step| step.0);
        model.select_output_outlets(&[outlets[last]]).unwrap();
        model
    }

    #[test]
    fn a_tensor_is_counted_until_its_last_reader_has_run() {
        let chain = additions(&[("a", "x", "x"), ("b", "a", "a"), ("c", "b", "b")]);
        assert_eq!(peak_tensor_bytes(&chain).unwrap(), (8000, "a"));
        let branches = additions(&[("a", "x", "x"), ("b", "x", "x"), ("c", "a", "b")]);
        assert_eq!(peak_tensor_bytes(&branches).unwrap(), (12000, "b"));
    }

    #[test]
    fn empty_bytes_are_an_empty_file() {
        let err = Model::from_bytes(b"", 1).unwrap_err();
        assert_eq!(format!("{err:#}"), "empty file");
    }
}
