//! A fast 2-D max-pool for tract, wired in place of its general operator.
//!
//! tract's `OptMaxPool` walks every output through a generic n-dimensional patch iterator; in
//! GoogLeNet its thirteen pools cost about as much as all the 1x1 convolutions. Here the pool
//! is separable: first down the columns of each channel plane (whole lines at a time), then
//! along the rows of the result (strided rows split into phases first), the taps of the window
//! one pass over contiguous runs (three taps at a time) that the compiler vectorises: where the
//! phases are as long as the output rows, over the whole plane at once. Padding is never
//! materialised: a tap only touches the outputs whose source lies inside the input, which is
//! what ONNX's `-inf` padding means.

#![allow(
    clippy::indexing_slicing,
    reason = "the rank is checked first; every range comes from `Axis::taps`, which keeps it \
              inside both the input and the output of that axis"
)]

use std::ops::Range;

use tract_onnx::prelude::tract_ndarray::ArrayViewD;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{MaxPool, PaddingSpec, PoolSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};

use super::glue::{output, Scratch};
use super::window::{Axis, Tap};

/// Max-pooling over the last two axes of a float NCHW tensor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FastMaxPool {
    spec: PoolSpec,
}

/// Replaces every tract `MaxPool` that [`FastMaxPool`] computes (f32, NCHW, two spatial axes,
/// no dilation, no index output, non-zero strides and kernel) with it. Returns how many.
pub fn replace_max_pool(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(pool) = node.op_as::<MaxPool>() else { continue };
        let fact = model.outlet_fact(node.inputs[0])?;
        if fact.datum_type != f32::datum_type() || !supported(pool) {
            continue;
        }
        let fast = FastMaxPool { spec: pool.pool_spec.clone() };
        model.node_mut(id).op = Box::new(fast);
        replaced += 1;
    }
    Ok(replaced)
}

fn supported(pool: &MaxPool) -> bool {
    let spec = &pool.pool_spec;
    pool.with_index_outputs.is_none()
        && spec.data_format == DataFormat::NCHW
        && spec.kernel_shape.len() == 2
        && spec.dilations().iter().all(|&d| d == 1)
        && spec.strides().iter().all(|&s| s >= 1)
        && spec.kernel_shape.iter().all(|&k| k >= 1)
        && !matches!(spec.padding, PaddingSpec::SameLower | PaddingSpec::SameUpper)
}

impl FastMaxPool {
    /// Pools `input` (N, C, H, W) into a new array: down the columns of each plane first (whole
    /// lines at a time), then along the rows of the result.
    pub fn apply(&self, input: &ArrayViewD<f32>) -> TractResult<Tensor> {
        ensure!(input.ndim() == 4, "max-pool expects an NCHW tensor");
        let input = input.as_standard_layout();
        let shape = input.shape();
        let [rows, columns] = Axis::both(&self.spec, shape[2], shape[3]);
        ensure!(
            !input.is_empty() && rows.output * columns.output > 0,
            "max-pool of an empty tensor ({shape:?} to {} x {})",
            rows.output,
            columns.output
        );
        let data = input.as_slice().context("a standard-layout array is contiguous")?;
        let (row_taps, column_taps) = (rows.taps(), columns.taps());
        let (plane_in, plane_out) = (rows.input * columns.input, rows.output * columns.output);
        // Planes are pooled a group at a time, in buffers that stay in the L1/L2 cache: a
        // group's column passes first, then its row passes.
        let group = (GROUP_FLOATS / plane_in).max(1);
        let mut down = Scratch::new(group * rows.output * columns.input)?;
        // Along the lines, a group is pooled whole when its lines split into phases as long as
        // its output lines (always with stride 1 and as many outputs as inputs, and for
        // GoogLeNet's strided pools); otherwise line by line.
        let flat = columns.phase_len() == columns.output;
        let mut phases = Scratch::new(match (flat, columns.stride) {
            (true, 1) => 0,
            (true, _) => columns.stride * group * rows.output * columns.output,
            (false, _) => columns.phased_len(),
        })?;
        let edges = Edges::new(&columns, &column_taps);
        let row_edges = Edges::new(&rows, &row_taps);
        let out_shape = [shape[0], shape[1], rows.output, columns.output];
        output(&out_shape, |output| {
            let groups = data.chunks(group * plane_in).zip(output.chunks_mut(group * plane_out));
            for (planes, out) in groups {
                let down = &mut down[..planes.len() / plane_in * rows.output * columns.input];
                pool_columns(&rows, &row_taps, &row_edges, planes, down, columns.input);
                if flat {
                    pool_plane(&columns, &column_taps, &edges, down, out, &mut phases);
                    continue;
                }
                let lines = down.chunks_exact(columns.input);
                for (line, out) in lines.zip(out.chunks_exact_mut(columns.output)) {
                    pool_line(&columns, &column_taps, line, out, &mut phases);
                }
            }
            Ok(())
        })
    }
}

/// How many input floats a group of planes holds at most (one plane if it is larger).
const GROUP_FLOATS: usize = 1 << 14;

/// The outputs of a line that some tap of the window does not reach (near the line's ends,
/// where the window meets the padding), each with where the taps that do reach it read: an
/// output `x` is the max of `line[source]` over its sources.
struct Edges(Vec<(usize, Vec<usize>)>);

impl Edges {
    fn new(axis: &Axis, taps: &[Tap]) -> Edges {
        let everywhere = everywhere(taps, axis.output);
        let outputs = (0..everywhere.start.min(axis.output))
            .chain(everywhere.end.max(everywhere.start)..axis.output);
        let sources = |x: usize| -> Vec<usize> {
            let reaching = taps.iter().filter(|tap| tap.outputs.contains(&x));
            reaching.map(|tap| source(tap, axis.stride, x)).collect()
        };
        Edges(outputs.map(|x| (x, sources(x))).collect())
    }
}

/// The outputs (of `outputs`) that every tap of the window reaches, but for the taps that fall
/// in the padding for every output.
fn everywhere(taps: &[Tap], outputs: usize) -> Range<usize> {
    let reached = taps.iter().filter(|tap| !tap.outputs.is_empty());
    reached
        .fold(0..outputs, |all, tap| all.start.max(tap.outputs.start)..all.end.min(tap.outputs.end))
}

/// Pools one line of values along `axis` through its `taps`. With a stride above 1 the line is
/// first split into phases (in `phases`), so that every tap reads a contiguous run.
fn pool_line(axis: &Axis, taps: &[Tap], line: &[f32], out: &mut [f32], phases: &mut [f32]) {
    let values = if axis.stride == 1 {
        line
    } else {
        axis.split(line, phases);
        &*phases
    };
    out.fill(f32::NEG_INFINITY);
    for tap in taps {
        let out = &mut out[tap.outputs.clone()];
        max_into(out, &values[axis.phased_start(tap)..][..out.len()]);
    }
}

/// Pools every line of a group of planes along `axis` at once, for lines whose phases are as
/// long as the output lines (see [`Axis::split`]): the lines are split into phases phase by
/// phase over the group (into `phased`; with stride 1 the lines are their only phase), so that
/// the taps are one flat pass ([`max_of`]) over the whole group, reading across line ends.
/// Then the few outputs near each line's ends that some tap does not reach (`edges`) are
/// computed again from the taps that do, which undoes what came across; every output that all
/// the taps reach lies in the flat pass, so every output is written.
fn pool_plane(
    axis: &Axis,
    taps: &[Tap],
    edges: &Edges,
    lines: &[f32],
    out: &mut [f32],
    phased: &mut [f32],
) {
    let (width, stride, len) = (axis.output, axis.stride, out.len());
    let phased: &[f32] = if stride == 1 {
        lines
    } else {
        for (index, line) in lines.chunks_exact(axis.input).enumerate() {
            axis.split_apart(line, &mut phased[index * width..], len);
        }
        phased
    };
    // Output `i` of the group reads `i + skip - start` of the tap's phase: the outputs from
    // `start - skip` to `len + start - skip` have a value to read.
    let runs = || {
        let reached = taps.iter().filter(|tap| !tap.outputs.is_empty());
        reached.map(|tap| {
            (&phased[tap.source % stride * len..][..len], tap.source / stride, tap.outputs.start)
        })
    };
    let from = runs().map(|(_, skip, start)| start.saturating_sub(skip)).max().unwrap_or(0);
    let to = runs().map(|(_, skip, start)| (len + start).saturating_sub(skip)).min();
    let to = to.unwrap_or(len).min(len);
    if from < to {
        let sources = runs().map(|(phase, skip, start)| &phase[from + skip - start..][..to - from]);
        max_of(&mut out[from..to], sources);
    }
    // Edge by edge, down the lines: each edge's sources are looked up once, and the common
    // edge of two sources is unrolled rather than a loop over them.
    let lines = lines.chunks_exact(axis.input);
    for (x, sources) in &edges.0 {
        let rows = lines.clone().zip(out.chunks_exact_mut(width));
        let low = f32::NEG_INFINITY;
        match sources[..] {
            [a, b] => rows.for_each(|(line, out)| out[*x] = larger(larger(low, line[a]), line[b])),
            _ => rows.for_each(|(line, out)| {
                out[*x] = sources.iter().fold(low, |m, &i| larger(m, line[i]));
            }),
        }
    }
}

/// Pools a group of planes (`rows.input` lines of `width` values each) down their columns
/// through `taps` into `out` (`rows.output` lines a plane). With stride 1 and as many output
/// lines as input lines, the group is pooled as one tall plane, in one pass over every line,
/// and then the lines near each plane's top and bottom (`edges`), which read across into the
/// next plane there, again edge by edge, down the planes; otherwise plane by plane.
fn pool_columns(
    rows: &Axis,
    taps: &[Tap],
    edges: &Edges,
    planes: &[f32],
    out: &mut [f32],
    width: usize,
) {
    let (plane_in, plane_out) = (rows.input * width, rows.output * width);
    if rows.stride > 1 || rows.output != rows.input {
        for (plane, out) in planes.chunks_exact(plane_in).zip(out.chunks_exact_mut(plane_out)) {
            pool_lines(taps, rows.stride, plane, out, width);
        }
        return;
    }
    let tall = Axis { input: planes.len() / width, output: out.len() / width, ..*rows };
    pool_lines(&tall.taps(), 1, planes, out, width);
    for (o, sources) in &edges.0 {
        for (plane, out) in planes.chunks_exact(plane_in).zip(out.chunks_exact_mut(plane_out)) {
            let out = &mut out[o * width..][..width];
            let lines = sources.iter().map(|&line| &plane[line * width..][..width]);
            max_of(out, lines);
        }
    }
}

/// Pools whole lines of `width` values through `taps`: output line `o` is the element-wise max
/// of the input lines in its window, one pass ([`max_of`]) per output line, or with stride 1
/// one over all the lines that every tap reaches.
fn pool_lines(taps: &[Tap], stride: usize, lines: &[f32], out: &mut [f32], width: usize) {
    let outputs = out.len() / width;
    let flat = if stride == 1 { everywhere(taps, outputs) } else { 0..0 };
    if !flat.is_empty() {
        let reached = taps.iter().filter(|tap| !tap.outputs.is_empty());
        let size = flat.len() * width;
        let sources = reached.map(|tap| &lines[source(tap, stride, flat.start) * width..][..size]);
        max_of(&mut out[flat.start * width..][..size], sources);
    }
    for o in (0..outputs).filter(|o| !flat.contains(o)) {
        let reaching = taps.iter().filter(|tap| tap.outputs.contains(&o));
        let sources = reaching.map(|tap| &lines[source(tap, stride, o) * width..][..width]);
        max_of(&mut out[o * width..][..width], sources);
    }
}

/// The input line (or value) that output `o` reads through `tap`.
fn source(tap: &Tap, stride: usize, o: usize) -> usize {
    tap.source + (o - tap.outputs.start) * stride
}

/// `out[i]` = the max of `-inf` and every `source[i]`, taken source by source in order (what
/// [`max_into`] from `-inf` gives), in one pass over `out` for up to three sources.
fn max_of<'a>(out: &mut [f32], sources: impl Iterator<Item = &'a [f32]>) {
    let mut sources = sources.fuse();
    let mut fresh = true;
    loop {
        match [sources.next(), sources.next(), sources.next()] {
            [Some(a), Some(b), Some(c)] => fold_from(fresh, out, [a, b, c]),
            [Some(a), Some(b), None] => return fold_from(fresh, out, [a, b]),
            [Some(a), None, _] => return fold_from(fresh, out, [a]),
            [None, ..] => {
                if fresh {
                    out.fill(f32::NEG_INFINITY);
                }
                return;
            }
        }
        fresh = false;
    }
}

/// [`fold`] from `-inf` when `fresh`, else from what `out` holds.
#[inline(always)]
fn fold_from<const N: usize>(fresh: bool, out: &mut [f32], sources: [&[f32]; N]) {
    if fresh {
        fold::<N, true>(out, sources);
    } else {
        fold::<N, false>(out, sources);
    }
}

/// [`max_of`] for `N` sources, starting from `-inf` (`FRESH`) or from what `out` holds.
#[inline(always)]
fn fold<const N: usize, const FRESH: bool>(out: &mut [f32], sources: [&[f32]; N]) {
    let len = out.len();
    let sources = sources.map(|source| &source[..len]);
    for (i, o) in out.iter_mut().enumerate() {
        let start = if FRESH { f32::NEG_INFINITY } else { *o };
        *o = sources.iter().fold(start, |m, source| larger(m, source[i]));
    }
}

/// `a.max(b)` without its NaN handling, which keeps the loops from vectorising.
#[inline(always)]
fn larger(a: f32, b: f32) -> f32 {
    if b > a {
        b
    } else {
        a
    }
}

fn max_into(out: &mut [f32], x: &[f32]) {
    for (o, &x) in out.iter_mut().zip(x) {
        *o = larger(*o, x);
    }
}

windowed_op!(FastMaxPool);

#[cfg(test)]
mod tests {
    use super::super::glue::{self, random};
    use super::*;
    use tract_onnx::prelude::tract_ndarray::{Array, ArrayD, IxDyn};

    fn spec(kernel: [usize; 2], strides: [usize; 2], padding: PaddingSpec, c: usize) -> PoolSpec {
        PoolSpec::new(
            DataFormat::NCHW,
            kernel[..].into(),
            padding,
            None,
            Some(strides[..].into()),
            c,
            c,
        )
    }

    /// Runs `op` alone in an optimised plan, as it runs inside the network.
    fn run(op: Box<dyn TypedOp>, input: &Array<f32, IxDyn>) -> Tensor {
        let mut model = TypedModel::default();
        let source = model.add_source("x", f32::fact(input.shape())).unwrap();
        let output = model.wire_node("pool", op, &[source]).unwrap();
        model.select_output_outlets(&output).unwrap();
        glue::run(model, input)
    }

    #[test]
    fn matches_tract_max_pool_exactly() {
        let explicit =
            |b: [usize; 2], a: [usize; 2]| PaddingSpec::Explicit(b[..].into(), a[..].into());
        let onnx = |b: [usize; 2], a: [usize; 2], ceil| {
            PaddingSpec::ExplicitOnnxPool(b[..].into(), a[..].into(), ceil)
        };
        let cases = [
            // an Inception module's pool, pool1 and pool2 of the zoo's GoogLeNet
            (spec([3, 3], [1, 1], explicit([1, 1], [1, 1]), 5), [2, 5, 28, 28]),
            // planes pooled in groups of 20 and a last group of 5
            (spec([3, 3], [1, 1], explicit([1, 1], [1, 1]), 45), [1, 45, 28, 28]),
            (spec([3, 3], [2, 2], onnx([0, 0], [0, 0], true), 50), [1, 50, 28, 28]),
            (spec([3, 3], [2, 2], explicit([0, 0], [1, 1]), 3), [1, 3, 112, 112]),
            (spec([3, 3], [2, 2], onnx([0, 0], [0, 0], true), 4), [1, 4, 57, 56]),
            (spec([3, 3], [2, 2], onnx([1, 1], [1, 1], false), 2), [1, 2, 7, 9]),
            (spec([2, 3], [1, 2], PaddingSpec::Valid, 3), [1, 3, 6, 11]),
            (spec([2, 2], [2, 2], PaddingSpec::Valid, 1), [1, 1, 5, 5]),
            (spec([5, 5], [1, 3], explicit([2, 0], [2, 4]), 2), [1, 2, 4, 3]),
            // stride 1 with as many outputs as inputs, padded unevenly; and with fewer
            (spec([3, 3], [1, 1], explicit([0, 2], [2, 0]), 2), [1, 2, 6, 7]),
            (spec([3, 3], [1, 1], PaddingSpec::Valid, 2), [1, 2, 6, 7]),
            (spec([1, 5], [1, 1], explicit([0, 2], [0, 2]), 2), [2, 2, 3, 4]),
            (spec([7, 7], [1, 1], explicit([3, 3], [3, 3]), 2), [1, 2, 12, 12]),
            // stride 2 over an odd width whose last value every tap's output reads
            (spec([3, 1], [2, 2], PaddingSpec::Valid, 2), [1, 2, 7, 9]),
        ];
        for (seed, (spec, shape)) in cases.into_iter().enumerate() {
            let input = random(&shape, seed as u32);
            let expected = run(Box::new(MaxPool::new(spec.clone(), None)), &input);
            let fast = run(Box::new(FastMaxPool { spec: spec.clone() }), &input);
            assert_eq!(fast.shape(), expected.shape(), "{spec:?}");
            let fast = fast.to_plain_array_view::<f32>().unwrap();
            let expected = expected.to_plain_array_view::<f32>().unwrap();
            assert_eq!(fast, expected, "{spec:?}");
        }
    }

    #[test]
    fn an_empty_tensor_is_an_error_not_a_panic() {
        let pool = FastMaxPool { spec: spec([3, 3], [1, 1], PaddingSpec::Valid, 2) };
        for shape in [[1, 2, 0, 5], [1, 2, 2, 5]] {
            let input = ArrayD::<f32>::zeros(&shape[..]);
            assert!(pool.apply(&input.view()).is_err(), "{shape:?}");
        }
    }

    #[test]
    fn only_plain_two_dimensional_pools_are_replaced() {
        let plain = spec([3, 3], [1, 1], PaddingSpec::Valid, 1);
        assert!(supported(&MaxPool::new(plain.clone(), None)));
        assert!(!supported(&MaxPool::new(plain.clone(), Some(i64::datum_type()))));
        let dilated = PoolSpec { dilations: Some(tvec![2, 2]), ..plain.clone() };
        assert!(!supported(&MaxPool::new(dilated, None)));
        let still = PoolSpec { strides: Some(tvec![0, 1]), ..plain.clone() };
        assert!(!supported(&MaxPool::new(still, None)));
        let nhwc = PoolSpec { data_format: DataFormat::NHWC, ..plain };
        assert!(!supported(&MaxPool::new(nhwc, None)));
    }
}
