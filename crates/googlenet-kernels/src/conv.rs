//! A 2-D convolution for tract as matrix products with this project's kernel ([`super::gemm`]).
//!
//! tract lowers a convolution to its own packed matrix product over a lazily gathered im2col
//! matrix; on this project's machine that reaches about 35-40 G multiply-adds/s per core. Here
//! the weights are packed once, when the operator is built, as the kernel reads them; the
//! image's patches are gathered, one band of output pixels (a whole number of the kernel's
//! 32-pixel column panels, across row ends) at a time, straight into those panels, and one
//! product per band writes the band's output, bias included. A ReLU that is the convolution's
//! only reader is folded into the product's last store.

#![allow(
    clippy::indexing_slicing,
    reason = "the input's shape is checked against the weights first; every range comes from \
              `Axis::taps`, which keeps it inside both the input and the output of that axis"
)]

use std::ops::Range;
use std::sync::Arc;

use tract_onnx::prelude::tract_ndarray::ArrayViewD;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use tract_onnx::tract_core::ops::math::Max;
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};

use super::bf16::Bf16Weights;
use super::gemm::{self, Bf16Unit, Kernel, PackedWeights, Right, PANEL};
use super::glue::{output_onto, Part, Scratch};
use super::int8::QuantWeights;
use super::lrn::FastLrn;
use super::maxpool::FastMaxPool;
use super::window::{Axis, Tap};
use super::winograd::{self, Block, WinogradConv};
use super::words;

/// How much of the patches is gathered at a time: a band of output pixels whose patches stay in
/// the L2 cache while the matrix product reads them.
const PATCH_BYTES: usize = 512 * 1024;

/// A float NCHW convolution with constant weights and bias, one group, no dilation, computed
/// in f32 or at int8.
#[derive(Debug, Clone)]
pub struct FastConv {
    spec: PoolSpec,
    kernel: Kernel,
    /// The weights and bias, packed for the product.
    product: Product,
    /// Whether negative outputs are stored as zero (a ReLU folded in).
    pub relu: bool,
    /// Where the output goes in the tensor handed on.
    pub part: Part,
}

/// The same operator: the same geometry and the same packed weights, the same allocation
/// rather than equal values. tract compares each node a patch adds with every node of the
/// model of its type, and value by value the weights took about 8 ms of a load.
impl PartialEq for FastConv {
    fn eq(&self, other: &FastConv) -> bool {
        let same = match (&self.product, &other.product) {
            (Product::F32(a), Product::F32(b)) => Arc::ptr_eq(a, b),
            (Product::Int8(a), Product::Int8(b)) => Arc::ptr_eq(a, b),
            (Product::Bf16(a), Product::Bf16(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        self.spec == other.spec
            && self.kernel == other.kernel
            && same
            && self.relu == other.relu
            && self.part == other.part
    }
}

impl Eq for FastConv {}

/// The product a [`FastConv`] runs, with its packed weights.
#[derive(Debug, Clone)]
enum Product {
    /// `out_channels x (in_channels * kh * kw)`, the OIHW kernel flattened, packed with the
    /// bias.
    F32(Arc<PackedWeights>),
    /// The same quantised to signed bytes ([`super::int8`]).
    Int8(Arc<QuantWeights>),
    /// The same rounded to bf16 ([`super::bf16`]).
    Bf16(Arc<Bf16Weights>),
}

/// The numbers the convolutions multiply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// f32 throughout.
    F32,
    /// Signed bytes of weights by unsigned 7-bit codes of the input, for every convolution
    /// whose input is never negative (one that follows a ReLU) but the 3x3 layers that
    /// Winograd's transform runs in 4x4 output blocks; the others (those, and the first layer,
    /// whose input is signed) in f32.
    Int8,
    /// bf16 weights by bf16 inputs with f32 sums, for every convolution but the 3x3 layers
    /// that Winograd's transform runs in 4x4 output blocks, which stay f32.
    Bf16,
}

/// The constants of a plain convolution: its weights (OIHW), one bias per output channel, and
/// the weights' shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Plain {
    /// `out x in x kh x kw` f32, as the model holds them: read where they lie when packed, not
    /// copied first (a copy of a network's weights, its pages faulted in, took about 5 ms of
    /// a load).
    pub weights: Arc<Tensor>,
    /// One per output channel.
    pub bias: Vec<f32>,
    /// `[out, in, kh, kw]`.
    pub shape: [usize; 4],
}

/// Replaces every tract `Conv` that [`FastConv`] computes with it, or with [`WinogradConv`]
/// where that suits the window and the input, with the ReLU after it folded in, running
/// `kernel`; at a lower precision, the convolutions its [`Precision`] names run at it. Returns
/// how many.
pub fn replace_conv(
    model: &mut TypedModel,
    kernel: Kernel,
    precision: Precision,
) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(conv) = node.op_as::<Conv>() else { continue };
        let Some(plain) = Plain::of(model, node, conv)? else { continue };
        let relu = relu_after(model, node)?;
        let spec = conv.pool_spec.clone();
        // At int8, a 3x3 layer stays on Winograd's f32 product where that takes 4x4 output
        // blocks (4x fewer multiplications than the direct product); with 2x2 blocks (2.25x
        // fewer) the int8 product is faster. bf16 follows the same rule but on AMX, whose
        // direct product beats Winograd's everywhere (docs/precision.md).
        let winograd = winograd_block(model, node, &spec)?;
        let tiles = precision == Precision::Bf16 && kernel.bf16_unit() == Bf16Unit::Tiles;
        let direct = tiles || winograd != Some(Block::Four);
        let at = match precision {
            Precision::Int8 if direct && never_negative(model, node.inputs[0]) => Precision::Int8,
            Precision::Bf16 if direct => Precision::Bf16,
            _ => Precision::F32,
        };
        let op: Box<dyn TypedOp> = match winograd {
            Some(block) if at == Precision::F32 => {
                let mut winograd = WinogradConv::new(spec, kernel, &plain, block)?;
                winograd.relu = relu.is_some();
                Box::new(winograd)
            }
            _ => {
                let mut fast = FastConv::new(spec, kernel, &plain, at)?;
                fast.relu = relu.is_some();
                Box::new(fast)
            }
        };
        let mut patch = TypedModelPatch::default();
        let input = patch.tap_model(model, node.inputs[0])?;
        let output = patch.wire_node(&node.name, op, &[input])?;
        patch.shunt_outside(model, OutletId::new(relu.unwrap_or(id), 0), output[0])?;
        patch.obliterate(id)?;
        if let Some(relu) = relu {
            patch.obliterate(relu)?;
        }
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// The output blocks [`WinogradConv`] computes `spec` in, if `node`'s input has a known size
/// over which it computes it.
fn winograd_block(
    model: &TypedModel,
    node: &TypedNode,
    spec: &PoolSpec,
) -> TractResult<Option<Block>> {
    let shape = &model.outlet_fact(node.inputs[0])?.shape;
    let dims = shape.as_concrete().and_then(|d| Some((*d.first()?, *d.get(2)?, *d.get(3)?)));
    Ok(dims
        .filter(|&(_, height, width)| winograd::suits(spec, height, width))
        .map(|(images, height, width)| Block::for_input(images, height, width)))
}

/// The node after `conv` when it is a ReLU (tract's `max(x, 0)` with a zero constant of no
/// larger shape) and the only reader of the convolution, which is not a model output.
fn relu_after(model: &TypedModel, conv: &TypedNode) -> TractResult<Option<usize>> {
    let outlet = OutletId::new(conv.id, 0);
    let Some([reader]) = conv.outputs.first().map(|o| &o.successors[..]) else { return Ok(None) };
    let node = model.node(reader.node);
    let is_max = node.op_as::<TypedBinOp>().is_some_and(|bin| bin.0.is::<Max>() && bin.1.is_none());
    let [first, second] = node.inputs[..] else { return Ok(None) };
    let other = if first == outlet { second } else { first };
    if !is_max || model.outputs.contains(&outlet) || other == outlet {
        return Ok(None);
    }
    let Some(zero) = constant(model, other)? else { return Ok(None) };
    let same_shape =
        model.outlet_fact(OutletId::new(node.id, 0))?.shape == model.outlet_fact(outlet)?.shape;
    let zero = zero.datum_type() == f32::datum_type()
        && zero.to_plain_array_view::<f32>()?.iter().all(|&v| v == 0.0);
    Ok((same_shape && zero).then_some(node.id))
}

/// Whether `outlet` holds no negative value: it is a ReLU's output, or a max-pool's, LRN's or
/// Concat's of such outputs.
fn never_negative(model: &TypedModel, outlet: OutletId) -> bool {
    let node = model.node(outlet.node);
    if let Some(conv) = node.op_as::<FastConv>() {
        return conv.relu;
    }
    if let Some(conv) = node.op_as::<WinogradConv>() {
        return conv.relu;
    }
    let is_relu = node.op_as::<TypedBinOp>().is_some_and(|bin| bin.0.is::<Max>())
        && node.inputs.iter().any(|&input| {
            constant(model, input).ok().flatten().is_some_and(|zero| {
                zero.to_plain_array_view::<f32>().is_ok_and(|v| v.iter().all(|&v| v == 0.0))
            })
        });
    let passes_on = node.op_is::<FastMaxPool>()
        || node.op_is::<FastLrn>()
        || node.op_is::<tract_onnx::tract_core::ops::array::TypedConcat>()
        || node.op_is::<tract_onnx::tract_core::ops::cnn::MaxPool>();
    is_relu || (passes_on && node.inputs.iter().all(|&input| never_negative(model, input)))
}

/// The value of `outlet` when it is a constant, or a cast of one (the ONNX importer casts the
/// bias; the graph is not folded yet when the operators are replaced).
fn constant(model: &TypedModel, outlet: OutletId) -> TractResult<Option<Arc<Tensor>>> {
    if let Some(value) = &model.outlet_fact(outlet)?.konst {
        return Ok(Some(value.clone()));
    }
    let node = model.node(outlet.node);
    let Some(cast) = node.op_as::<Cast>() else { return Ok(None) };
    let [input] = node.inputs[..] else { return Ok(None) };
    let Some(value) = &model.outlet_fact(input)?.konst else { return Ok(None) };
    Ok(Some(value.cast_to_dt(cast.to)?.into_owned().into_arc_tensor()))
}

impl Plain {
    /// The weights, `out x in x kh x kw`, row-major.
    pub fn weights(&self) -> TractResult<&[f32]> {
        self.weights.try_as_plain_ram()?.as_slice::<f32>()
    }

    /// The constants of `conv` at `node`, when its data is f32 NCHW with two spatial axes, its
    /// kernel (OIHW) and bias are constants, it has one group and no dilation.
    fn of(model: &TypedModel, node: &TypedNode, conv: &Conv) -> TractResult<Option<Plain>> {
        let spec = &conv.pool_spec;
        let plain = conv.q_params.is_none()
            && conv.group == 1
            && conv.kernel_fmt == KernelFormat::OIHW
            && spec.data_format == DataFormat::NCHW
            && spec.kernel_shape.len() == 2
            && spec.dilations().iter().all(|&d| d == 1)
            && spec.strides().iter().all(|&s| s >= 1)
            && !matches!(spec.padding, PaddingSpec::SameLower | PaddingSpec::SameUpper)
            && node.inputs.len() == 3;
        if !plain || model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type() {
            return Ok(None);
        }
        let (Some(weights), Some(bias)) =
            (constant(model, node.inputs[1])?, constant(model, node.inputs[2])?)
        else {
            return Ok(None);
        };
        if weights.datum_type() != f32::datum_type() || bias.datum_type() != f32::datum_type() {
            return Ok(None);
        }
        let &[out_channels, in_channels, kh, kw] = weights.shape() else { return Ok(None) };
        if [kh, kw] != spec.kernel_shape[..]
            || in_channels != spec.input_channels
            || out_channels != spec.output_channels
        {
            return Ok(None);
        }
        let bias = match *bias.try_as_plain_ram()?.as_slice::<f32>()? {
            [one] => vec![one; out_channels],
            ref all if all.len() == out_channels => all.to_vec(),
            _ => return Ok(None),
        };
        Ok(Some(Plain { weights, bias, shape: [out_channels, in_channels, kh, kw] }))
    }
}

impl FastConv {
    /// The operator for `spec` with `plain`'s weights and bias, packed for the product at
    /// `precision`: as they are, quantised ([`super::int8`]: its input must never be
    /// negative) or rounded to bf16 ([`super::bf16`]).
    pub fn new(
        spec: PoolSpec,
        kernel: Kernel,
        plain: &Plain,
        precision: Precision,
    ) -> TractResult<FastConv> {
        let [out, inputs, kh, kw] = plain.shape;
        let (weights, bias) = (plain.weights()?, &plain.bias);
        let product = match precision {
            Precision::F32 => {
                Product::F32(Arc::new(PackedWeights::new(weights, bias, out, inputs * kh * kw)))
            }
            Precision::Int8 => {
                Product::Int8(Arc::new(QuantWeights::new(weights, bias, plain.shape)))
            }
            Precision::Bf16 => {
                Product::Bf16(Arc::new(Bf16Weights::new(weights, bias, plain.shape, kernel)))
            }
        };
        Ok(FastConv { spec, kernel, product, relu: false, part: Part::whole(out) })
    }

    /// The precision it runs at.
    #[cfg(test)]
    fn precision(&self) -> Precision {
        match self.product {
            Product::F32(_) => Precision::F32,
            Product::Int8(_) => Precision::Int8,
            Product::Bf16(_) => Precision::Bf16,
        }
    }

    /// Its output channels.
    pub fn channels(&self) -> usize {
        self.spec.output_channels
    }

    /// Convolves `input` (N, C, H, W) into its part of `handed`, or of a new tensor.
    pub fn write(&self, input: &ArrayViewD<f32>, handed: Option<Tensor>) -> TractResult<Tensor> {
        match &self.product {
            Product::F32(weights) => self.convolve(weights, input, handed, PATCH_BYTES),
            Product::Int8(weights) => self.convolve_words(&**weights, input, handed),
            Product::Bf16(weights) => self.convolve_words(&**weights, input, handed),
        }
    }

    /// [`FastConv::write`] at a precision whose input is packed into words ([`words`]).
    fn convolve_words<P: words::Packing>(
        &self,
        weights: &P,
        input: &ArrayViewD<f32>,
        handed: Option<Tensor>,
    ) -> TractResult<Tensor> {
        let output = (self.relu, self.part);
        words::convolve(&self.spec, self.kernel, weights, output, input, handed)
    }

    /// [`FastConv::write`], gathering at most `patch_bytes` of patches at a time (at least one
    /// panel's worth).
    fn convolve(
        &self,
        weights: &PackedWeights,
        input: &ArrayViewD<f32>,
        handed: Option<Tensor>,
        patch_bytes: usize,
    ) -> TractResult<Tensor> {
        let shape = input.shape();
        let ([rows, columns], pixels) = geometry(&self.spec, shape)?;
        let input = input.as_standard_layout();
        let data = input.as_slice().context("a standard-layout array is contiguous")?;
        let depth = weights.depth();
        let taps = [rows.taps(), columns.taps()];
        let padded = [(&rows, &taps[0]), (&columns, &taps[1])]
            .iter()
            .any(|(axis, taps)| taps.iter().any(|tap| tap.outputs != (0..axis.output)));
        // A 1x1 convolution of stride 1 reads its input planes as they stand (they are `B`,
        // row-major), in whole panels; only the pixels past them are gathered.
        let pointwise = self.spec.kernel_shape[..] == [1, 1]
            && rows.stride == 1
            && columns.stride == 1
            && !padded
            && pixels == shape[2] * shape[3];
        let direct = if pointwise { pixels / PANEL * PANEL } else { 0 };
        // Long output lines are convolved a line at a time from the padded input, not gathered.
        let runs =
            (!pointwise && columns.output >= RUN_COLUMNS).then(|| Padded::new(&rows, &columns));
        // Whole panels per band, so that only the image's last panel can be part-empty.
        let panel_bytes = (4 * depth * PANEL).max(1);
        let band_pixels = (patch_bytes / panel_bytes).max(1) * PANEL;
        let mut panels = Scratch::new(match &runs {
            Some(padded) => padded.len(shape[1]),
            None => gemm::panels_len(depth, band_pixels.min(pixels - direct)),
        })?;
        let mut phased = Scratch::new(if columns.stride > 1 && runs.is_none() {
            shape[1] * rows.input * columns.phased_len()
        } else {
            0
        })?;
        let first_line = runs.as_ref().map(|padded| padded.offsets(shape[1], &self.spec));
        let mut offsets = vec![0; depth];
        let window = [&taps[0][..], &taps[1][..]];
        let out_shape = [shape[0], self.part.of, rows.output, columns.output];
        let region = (self.part, weights.rows(), pixels);
        output_onto(&out_shape, handed, region, |output| {
            let images = data.chunks_exact(shape[1] * shape[2] * shape[3]);
            for (image, out) in images.zip(self.part.images(output, weights.rows(), pixels)) {
                if let (Some(padded), Some(first)) = (&runs, &first_line) {
                    padded.fill(image, [&rows, &columns], &mut panels);
                    let below = rows.stride * padded.line();
                    for y in 0..rows.output {
                        for (offset, &first) in offsets.iter_mut().zip(first) {
                            *offset = first + y * below;
                        }
                        let (b, width) = (Right::Runs(&panels, &offsets), columns.output);
                        let c = &mut out[y * width..];
                        gemm::multiply(self.kernel, weights, b, width, c, pixels, self.relu);
                    }
                    continue;
                }
                let lines = if columns.stride == 1 {
                    image
                } else {
                    let split = phased.chunks_exact_mut(columns.phased_len());
                    for (line, out) in image.chunks_exact(columns.input).zip(split) {
                        columns.split(line, out);
                    }
                    &phased
                };
                if direct > 0 {
                    let b = Right::Rows(image, pixels);
                    gemm::multiply(self.kernel, weights, b, direct, out, pixels, self.relu);
                }
                for start in (direct..pixels).step_by(band_pixels) {
                    let band = start..(start + band_pixels).min(pixels);
                    let width = band.len();
                    let panels = &mut panels[..gemm::panels_len(depth, width)];
                    if padded {
                        panels.fill(0.0);
                    }
                    gather(lines, [&rows, &columns], window, band.clone(), depth, panels);
                    let c = &mut out[band.start..];
                    let b = Right::Panels(panels);
                    gemm::multiply(self.kernel, weights, b, width, c, pixels, self.relu);
                }
            }
            Ok(())
        })
    }
}

/// The axes of `spec`'s window over an input of `shape` (N, C, H, W) and the output pixels
/// per image, or an error where the input is not of that rank and those channels, or is empty.
pub fn geometry(spec: &PoolSpec, shape: &[usize]) -> TractResult<([Axis; 2], usize)> {
    ensure!(
        shape.len() == 4 && shape[1] == spec.input_channels,
        "convolution expects N x {} x H x W, got {shape:?}",
        spec.input_channels
    );
    let [rows, columns] = Axis::both(spec, shape[2], shape[3]);
    let pixels = rows.output * columns.output;
    ensure!(
        shape.iter().all(|&d| d > 0) && pixels > 0,
        "convolution of an empty tensor ({shape:?} to {} x {})",
        rows.output,
        columns.output
    );
    Ok(([rows, columns], pixels))
}

/// Output lines of at least this many pixels are convolved a line at a time from the padded
/// input ([`Padded`]) rather than from gathered patches: at least three of the product's panels,
/// as only the last panel of each line can be part-empty (conv1's 112 pixels).
const RUN_COLUMNS: usize = 3 * PANEL;

/// An image padded with zeros as far as a window reads, each padded line split into phases by
/// the column stride (like [`Axis::split`]), so that every tap of the window reads one
/// contiguous run for a whole line of output pixels: a product's `B` as [`Right::Runs`],
/// without gathering the patches.
struct Padded {
    /// Padded lines per plane.
    lines: usize,
    /// Values per phase of a padded line.
    phase: usize,
    /// The column stride: phases per line.
    stride: usize,
}

impl Padded {
    /// The padding of a window along `rows` and `columns`, each with at least one output.
    fn new(rows: &Axis, columns: &Axis) -> Padded {
        let (lines, width) = (rows.reach(), columns.reach());
        Padded { lines, phase: width.div_ceil(columns.stride), stride: columns.stride }
    }

    /// Floats per padded line.
    fn line(&self) -> usize {
        self.phase.saturating_mul(self.stride)
    }

    /// Floats for `channels` padded planes, and a panel past them: the product reads whole
    /// panels, the lanes past a line's end from whatever follows it. `usize::MAX` (a buffer
    /// [`Scratch::new`] refuses) where a hostile geometry would overflow.
    fn len(&self, channels: usize) -> usize {
        let planes = channels.checked_mul(self.lines).and_then(|n| n.checked_mul(self.line()));
        planes.and_then(|n| n.checked_add(PANEL)).unwrap_or(usize::MAX)
    }

    /// Where each tap of `spec`'s window (in the weights' order: channel, row, column) reads
    /// its run for the first line of output pixels; each next line is `rows.stride` padded
    /// lines further on.
    fn offsets(&self, channels: usize, spec: &PoolSpec) -> Vec<usize> {
        let [kh, kw] = [spec.kernel_shape[0], spec.kernel_shape[1]];
        let plane = self.lines * self.line();
        let taps = (0..channels)
            .flat_map(|c| (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (c, ky, kx))));
        taps.map(|(c, ky, kx)| {
            c * plane + ky * self.line() + kx % self.stride * self.phase + kx / self.stride
        })
        .collect()
    }

    /// Writes `image` (`C x H x W`) padded and split into `out` (at least [`Padded::len`]):
    /// each line copied into a padded line, then split into phases ([`Axis::split`]).
    fn fill(&self, image: &[f32], [rows, columns]: [&Axis; 2], out: &mut [f32]) {
        out.fill(0.0);
        let (line_len, plane) = (self.line(), self.lines * self.line());
        // The padded line, and the axis it is: its padding is never written, so it stays zero.
        let mut wide = vec![0f32; line_len];
        let padded = Axis { input: line_len, ..*columns };
        let inside = columns.input.min(line_len.saturating_sub(columns.pad_before));
        for (channel, values) in image.chunks_exact(rows.input * columns.input).enumerate() {
            for (y, line) in values.chunks_exact(columns.input).enumerate() {
                let row = y + rows.pad_before;
                if row >= self.lines {
                    break;
                }
                wide[columns.pad_before.min(line_len)..][..inside].copy_from_slice(&line[..inside]);
                padded.split(&wide, &mut out[channel * plane + row * line_len..][..line_len]);
            }
        }
    }
}

/// Gathers the patches of one `C x H x W` image for the output pixels `band` (row-major) into
/// the column panels of the matrix product ([`gemm::panel_index`]): step `(c, ky, kx)` of
/// column `p` (the band's `p`-th output pixel) is the input value that tap reads for that
/// pixel. Values in the padding are not written (the caller zeroes the panels when there is
/// padding). `lines` is the image, its lines split into phases when the column stride is
/// above 1.
fn gather(
    lines: &[f32],
    axes: [&Axis; 2],
    taps: [&[Tap]; 2],
    band: Range<usize>,
    depth: usize,
    panels: &mut [f32],
) {
    let [rows, columns] = axes;
    let [row_taps, column_taps] = taps;
    let (line_len, out_width) = (columns.phased_len(), columns.output);
    // The output rows the band touches, the first and last perhaps in part.
    let band_rows = band.start / out_width..band.end.div_ceil(out_width);
    let mut step = 0;
    for plane in lines.chunks_exact(rows.input * line_len) {
        for row_tap in row_taps {
            let ys =
                row_tap.outputs.start.max(band_rows.start)..row_tap.outputs.end.min(band_rows.end);
            for column_tap in column_taps {
                let start = columns.phased_start(column_tap);
                // A tap that reads whole lines, one after the other, for whole output lines
                // (a 1x1 convolution, the middle column of a padded one) is one run.
                let whole_lines = start == 0
                    && column_tap.outputs == (0..out_width)
                    && line_len == out_width
                    && rows.stride == 1;
                if whole_lines {
                    let pixels =
                        (ys.start * out_width).max(band.start)..(ys.end * out_width).min(band.end);
                    if !pixels.is_empty() {
                        let from = row_tap.source * line_len + pixels.start
                            - row_tap.outputs.start * out_width;
                        let run = &plane[from..][..pixels.len()];
                        scatter(run, depth, step, pixels.start - band.start, panels);
                    }
                } else {
                    for y in ys.clone() {
                        // The tap's outputs on line `y`, cut to the band.
                        let line_start = y * out_width;
                        let xs = column_tap.outputs.start.max(band.start.saturating_sub(line_start))
                            ..column_tap.outputs.end.min(band.end - line_start);
                        if xs.is_empty() {
                            continue;
                        }
                        let source = row_tap.source + (y - row_tap.outputs.start) * rows.stride;
                        let skip = xs.start - column_tap.outputs.start;
                        let run = &plane[source * line_len + start + skip..][..xs.len()];
                        scatter(run, depth, step, line_start + xs.start - band.start, panels);
                    }
                }
                step += 1;
            }
        }
    }
}

/// Writes `run` into step `step` of the panels from column `column` on, split where it crosses
/// from one panel into the next. A whole panel's width is copied as a fixed-size block (vector
/// moves) rather than through `memcpy`, whose set-up costs more than such a short copy.
fn scatter(run: &[f32], depth: usize, step: usize, column: usize, panels: &mut [f32]) {
    let mut rest = run;
    let mut column = column;
    while !rest.is_empty() {
        let count = (PANEL - column % PANEL).min(rest.len());
        let (now, later) = rest.split_at(count);
        let at = gemm::panel_index(depth, step, column);
        if count == PANEL {
            panels[at..at + PANEL].copy_from_slice(&now[..PANEL]);
        } else {
            panels[at..at + count].copy_from_slice(now);
        }
        rest = later;
        column += count;
    }
}

convolution_op!(FastConv);

#[cfg(test)]
pub(crate) mod tests {
    use super::super::glue::{self, random};
    use super::*;
    use tract_onnx::prelude::tract_ndarray::ArrayD;
    use tract_onnx::tract_core::ops::math::max;

    /// The fastest kernel this CPU runs: every CPU the tests run on has one.
    pub fn fastest() -> Kernel {
        Kernel::detect().expect("a CPU with AVX2 and FMA")
    }

    /// A model of one convolution whose bias is cast from a constant, and with `relu` a ReLU
    /// after it, as the ONNX importer wires them; with `fast`, after `replace_conv`.
    fn convolution(
        spec: &PoolSpec,
        input: &[usize],
        bias: &[usize],
        relu: bool,
        fast: bool,
    ) -> TypedModel {
        let mut model = TypedModel::default();
        let source = model.add_source("x", f32::fact(input)).unwrap();
        let [kh, kw] = spec.kernel_shape[..] else { panic!("2-D") };
        let shape = [spec.output_channels, spec.input_channels, kh, kw];
        let kernel = model.add_const("kernel", random(&shape, 7)).unwrap();
        let bias = model.add_const("bias", random(bias, 8)).unwrap();
        let bias = model.wire_node("cast", Cast { to: f32::datum_type() }, &[bias]).unwrap()[0];
        let conv = Conv::new(spec.clone(), KernelFormat::OIHW, 1, None);
        let mut output = model.wire_node("conv", conv, &[source, kernel, bias]).unwrap();
        if relu {
            let zero = model.add_const("zero", tensor4(&[[[[0f32]]]])).unwrap();
            output = model.wire_node("relu", max(), &[output[0], zero]).unwrap();
        }
        model.select_output_outlets(&output).unwrap();
        if fast {
            assert_eq!(replace_conv(&mut model, fastest(), Precision::F32).unwrap(), 1);
            let maxes = model.nodes().iter().filter(|n| n.op_as::<TypedBinOp>().is_some());
            assert_eq!(maxes.count(), 0, "the ReLU is folded in");
        }
        model
    }

    #[test]
    fn matches_tract_convolution_on_random_tensors() {
        let explicit =
            |b: [usize; 2], a: [usize; 2]| PaddingSpec::Explicit(b[..].into(), a[..].into());
        let spec = |k: [usize; 2], s: [usize; 2], padding, i, o| {
            PoolSpec::new(DataFormat::NCHW, k[..].into(), padding, None, Some(s[..].into()), i, o)
        };
        let cases = [
            // conv1, an Inception 3x3 and 5x5, 1x1s (pointwise: planes read as they stand, the
            // pixels past whole panels gathered; depth across two blocks), then odd geometries
            // and a scalar bias
            (spec([7, 7], [2, 2], explicit([3, 3], [3, 3]), 3, 8), [1, 3, 30, 30], &[8][..]),
            (spec([3, 3], [1, 1], explicit([1, 1], [1, 1]), 6, 5), [2, 6, 9, 9], &[5]),
            (spec([5, 5], [1, 1], explicit([2, 2], [2, 2]), 4, 3), [1, 4, 7, 7], &[3]),
            (spec([1, 1], [1, 1], PaddingSpec::Valid, 16, 4), [2, 16, 7, 11], &[4]),
            (spec([1, 1], [1, 1], PaddingSpec::Valid, 300, 9), [1, 300, 6, 6], &[9]),
            (spec([1, 1], [1, 1], PaddingSpec::Valid, 16, 4), [2, 16, 5, 6], &[4]),
            (spec([2, 3], [3, 2], explicit([0, 2], [1, 0]), 2, 3), [1, 2, 8, 11], &[]),
            (spec([1, 1], [2, 2], PaddingSpec::Valid, 3, 2), [1, 3, 5, 5], &[2]),
            (spec([1, 1], [1, 1], explicit([0, 0], [1, 2]), 3, 2), [1, 3, 4, 5], &[2]),
            // output lines of 96 pixels and more, convolved from the padded input (the 3x3 by
            // Winograd's F(2x2, 3x3): too few tiles for F(4x4, 3x3), whose error on values of
            // this size `matches_the_direct_convolution` bounds)
            (spec([7, 7], [2, 2], explicit([3, 3], [3, 3]), 3, 8), [1, 3, 12, 224], &[8]),
            (spec([3, 3], [1, 1], explicit([1, 1], [1, 1]), 2, 3), [1, 2, 3, 100], &[3]),
            (spec([2, 3], [3, 2], explicit([0, 2], [1, 0]), 2, 3), [1, 2, 8, 201], &[]),
        ];
        for ((seed, (spec, shape, bias)), relu) in
            cases.into_iter().enumerate().flat_map(|case| [(case.clone(), false), (case, true)])
        {
            let input: ArrayD<f32> = random(&shape, seed as u32);
            let expected = glue::run(convolution(&spec, &shape, bias, relu, false), &input);
            let fast = glue::run(convolution(&spec, &shape, bias, relu, true), &input);
            assert_eq!(fast.shape(), expected.shape(), "{spec:?}");
            let fast = fast.to_plain_array_view::<f32>().unwrap();
            let expected = expected.to_plain_array_view::<f32>().unwrap();
            for (a, b) in fast.iter().zip(expected.iter()) {
                assert!((a - b).abs() <= 1e-4 * b.abs().max(100.0), "{spec:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn lower_precisions_take_every_convolution_they_can_run_but_winograd_s_4x4_blocks() {
        // A 1x1 after a ReLU, then one after that (its input: the first one's folded ReLU),
        // then a 3x3 (on 28x28, one image: Winograd's 4x4 blocks, kept in f32; on 7x7, its 2x2
        // ones, quantised); and a 1x1 of the signed input, which bf16 runs and int8 does not.
        // bf16 on AMX runs the 3x3 directly on both.
        let runs = Kernel::available().into_iter().flat_map(|kernel| {
            [Precision::Int8, Precision::Bf16].map(|precision| (kernel, precision))
        });
        for (kernel, precision) in runs {
            let tiles = precision == Precision::Bf16 && kernel.bf16_unit() == Bf16Unit::Tiles;
            for (size, three_direct) in [(28, tiles), (7, true)] {
                let model = layer_choice_graph(size, kernel, precision);
                let at = |name: &str| {
                    let node = model.nodes().iter().find(|n| n.name == name).unwrap();
                    node.op_as::<FastConv>().map(FastConv::precision)
                };
                let signed = if precision == Precision::Bf16 { precision } else { Precision::F32 };
                assert_eq!([at("first"), at("second")], [Some(precision); 2]);
                assert_eq!(at("signed"), Some(signed), "{precision:?}");
                let third = three_direct.then_some(precision);
                assert_eq!(at("third"), third, "{kernel:?} {precision:?} {size}x{size}");
                let winograd = model.nodes().iter().any(|n| n.op_as::<WinogradConv>().is_some());
                assert_eq!(winograd, !three_direct);
            }
        }
    }

    /// The graph of the layer choice's test on a `size x size` input, replaced on `kernel` at
    /// `precision`.
    fn layer_choice_graph(size: usize, kernel: Kernel, precision: Precision) -> TypedModel {
        let pointwise =
            PoolSpec::new(DataFormat::NCHW, tvec![1, 1], PaddingSpec::Valid, None, None, 4, 4);
        let three = PoolSpec::new(
            DataFormat::NCHW,
            tvec![3, 3],
            PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]),
            None,
            None,
            4,
            4,
        );
        let mut model = TypedModel::default();
        let source = model.add_source("x", f32::fact([1, 4, size, size])).unwrap();
        let zero = model.add_const("zero", tensor4(&[[[[0f32]]]])).unwrap();
        let relu = model.wire_node("relu", max(), &[source, zero]).unwrap()[0];
        let mut wire = |name: &str, spec: &PoolSpec, input: OutletId, seed: u32| {
            let [kh, kw] = spec.kernel_shape[..] else { panic!("2-D") };
            let weights =
                model.add_const(format!("{name}.w"), random(&[4, 4, kh, kw], seed)).unwrap();
            let bias = model.add_const(format!("{name}.b"), random(&[4], seed + 1)).unwrap();
            let conv = Conv::new(spec.clone(), KernelFormat::OIHW, 1, None);
            let out = model.wire_node(name, conv, &[input, weights, bias]).unwrap()[0];
            model.wire_node(format!("{name}.relu"), max(), &[out, zero]).unwrap()[0]
        };
        let first = wire("first", &pointwise, relu, 1);
        let second = wire("second", &pointwise, first, 3);
        let third = wire("third", &three, second, 5);
        let signed = wire("signed", &pointwise, source, 7);
        model.select_output_outlets(&[third, signed]).unwrap();
        assert_eq!(replace_conv(&mut model, kernel, precision).unwrap(), 4);
        model
    }

    #[test]
    fn a_relu_is_folded_in_only_when_it_is_the_convolution_s_only_reader() {
        let spec =
            PoolSpec::new(DataFormat::NCHW, tvec![3, 3], PaddingSpec::Valid, None, None, 2, 3);
        let mut model = convolution(&spec, &[1, 2, 6, 6], &[3], true, false);
        let relu = model.output_outlets().unwrap()[0];
        let conv = model.node(relu.node).inputs[0];
        model.select_output_outlets(&[conv, relu]).unwrap();
        assert_eq!(replace_conv(&mut model, fastest(), Precision::F32).unwrap(), 1);
        let fast = model.nodes().iter().find_map(|n| n.op_as::<FastConv>()).unwrap();
        assert!(!fast.relu);
        assert!(model.nodes().iter().any(|n| n.op_as::<TypedBinOp>().is_some()));
    }

    #[test]
    fn gathering_the_patches_in_bands_changes_nothing() {
        // Lines of 15 and 12 outputs, so that bands of whole panels end inside a line; the
        // second geometry reads whole lines (1x1 and the middle column of 3x3) as one run.
        let explicit = PaddingSpec::Explicit(tvec![3, 2], tvec![1, 3]);
        let same = PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]);
        let geometries = [
            (
                PoolSpec::new(
                    DataFormat::NCHW,
                    tvec![5, 3],
                    explicit,
                    None,
                    Some(tvec![2, 1]),
                    3,
                    4,
                ),
                45,
            ),
            (PoolSpec::new(DataFormat::NCHW, tvec![3, 3], same, None, None, 3, 4), 27),
            (PoolSpec::new(DataFormat::NCHW, tvec![1, 1], PaddingSpec::Valid, None, None, 3, 4), 3),
        ];
        let Some(kernel) = Kernel::detect() else { return };
        for (spec, depth) in geometries {
            let [kh, kw] = spec.kernel_shape[..] else { panic!("2-D") };
            let shape = [4, 3, kh, kw];
            let weights = Tensor::from(random(&shape, 7)).into_arc_tensor();
            let plain = Plain { weights, bias: vec![0.5; 4], shape };
            let conv = FastConv::new(spec.clone(), kernel, &plain, Precision::F32).unwrap();
            let input: ArrayD<f32> = random(&[2, 3, 17, 12], 3);
            let Product::F32(weights) = &conv.product else { panic!("f32") };
            let whole = conv.convolve(weights, &input.view(), None, usize::MAX).unwrap();
            for bytes in [1, 4 * depth * PANEL * 2, 4 * depth * PANEL * 3] {
                let banded = conv.convolve(weights, &input.view(), None, bytes).unwrap();
                assert_eq!(banded, whole, "{spec:?}, {bytes} bytes");
            }
        }
    }

    #[test]
    fn an_empty_tensor_is_an_error_not_a_panic() {
        let padding = PaddingSpec::Valid;
        let spec = PoolSpec::new(DataFormat::NCHW, tvec![3, 3], padding, None, None, 3, 2);
        let model = convolution(&spec, &[1, 3, 5, 5], &[2], false, true);
        let conv = model.nodes().iter().find_map(|n| n.op_as::<FastConv>()).unwrap();
        for shape in [[1, 3, 0, 5], [1, 3, 2, 5]] {
            let input = ArrayD::<f32>::zeros(&shape[..]);
            assert!(conv.write(&input.view(), None).is_err(), "{shape:?}");
        }
    }

    #[test]
    fn grouped_dilated_or_unknown_weight_convolutions_are_left_to_tract() {
        let plain =
            PoolSpec::new(DataFormat::NCHW, tvec![3, 3], PaddingSpec::Valid, None, None, 2, 2);
        let dilated = PoolSpec { dilations: Some(tvec![2, 2]), ..plain.clone() };
        let cases = [
            (dilated, 1, [2, 2, 3, 3], true),
            (plain.clone(), 2, [2, 1, 3, 3], true),
            (plain, 1, [2, 2, 3, 3], false),
        ];
        for (spec, group, kernel_shape, constant) in cases {
            let mut model = TypedModel::default();
            let source = model.add_source("x", f32::fact([1, 2, 9, 9])).unwrap();
            let kernel = if constant {
                model.add_const("kernel", random(&kernel_shape, 1)).unwrap()
            } else {
                model.add_source("kernel", f32::fact(kernel_shape)).unwrap()
            };
            let bias = model.add_const("bias", random(&[2], 2)).unwrap();
            let conv = Conv::new(spec.clone(), KernelFormat::OIHW, group, None);
            let output = model.wire_node("conv", conv, &[source, kernel, bias]).unwrap();
            model.select_output_outlets(&output).unwrap();
            assert_eq!(
                replace_conv(&mut model, fastest(), Precision::F32).unwrap(),
                0,
                "{spec:?}, group {group}, constant {constant}"
            );
        }
    }
}
