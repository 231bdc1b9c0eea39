//! What the project's own tract operators ([`super::lrn`], [`super::maxpool`], [`super::conv`],
//! [`super::winograd`]) share.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use tract_onnx::prelude::{Tensor, TractError, TractResult};

/// Floats in a 64-byte cache line.
pub const LINE_FLOATS: usize = 16;

thread_local! {
    /// The float buffers [`Scratch`] gave back on this thread, for the next operators to reuse.
    static SPARE_FLOATS: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    /// The same for buffers of words (the int8 convolution's quantised input).
    static SPARE_WORDS: RefCell<Vec<Vec<u32>>> = const { RefCell::new(Vec::new()) };
}

/// A value a [`Scratch`] buffer holds: f32, or u32 words.
pub trait Element: Copy + Default + 'static {
    /// What a new buffer holds in the unit tests: a value an operator reading it unwritten
    /// would show (NaN for floats).
    #[cfg(test)]
    const UNWRITTEN: Self;

    /// Runs `f` on this thread's buffers given back.
    fn spare<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> R;
}

impl Element for f32 {
    #[cfg(test)]
    const UNWRITTEN: f32 = f32::NAN;

    fn spare<R>(f: impl FnOnce(&mut Vec<Vec<f32>>) -> R) -> R {
        SPARE_FLOATS.with(|spare| f(&mut spare.borrow_mut()))
    }
}

impl Element for u32 {
    #[cfg(test)]
    const UNWRITTEN: u32 = 0xdead_beef;

    fn spare<R>(f: impl FnOnce(&mut Vec<Vec<u32>>) -> R) -> R {
        SPARE_WORDS.with(|spare| f(&mut spare.borrow_mut()))
    }
}

/// An operator's working buffer, taken from the ones earlier operators on this thread gave
/// back, so that a network's run neither allocates nor zeroes its buffers again and again
/// (zeroing them took about 3% of a run). It starts on a cache line, as the products' panels
/// must: a 512-bit load that straddles two lines costs two, and the product ran about 7%
/// slower on panels a quarter line off. It holds what its last user left: an operator writes
/// each value before reading it. In the unit tests it starts as [`Element::UNWRITTEN`], so that
/// a value read unwritten shows in the comparisons with tract's operators.
pub struct Scratch<T: Element = f32> {
    values: Vec<T>,
    /// Where the buffer starts in `values`: the first value on a cache line's boundary.
    start: usize,
    len: usize,
}

impl<T: Element> Scratch<T> {
    /// A buffer of `len` values, or an error where the library's guard would refuse it: a
    /// refused `vec!` aborts the process, where a refused tensor of tract's is an error.
    pub fn new(len: usize) -> TractResult<Scratch<T>> {
        within_limit(len)?;
        let mut values = T::spare(Vec::pop).unwrap_or_default();
        let room = len.saturating_add(LINE_FLOATS - 1);
        if values.len() < room {
            values.resize(room, T::default());
        }
        let start = values.as_ptr().align_offset(4 * LINE_FLOATS).min(LINE_FLOATS - 1);
        #[cfg(test)]
        values[start..][..len].fill(T::UNWRITTEN);
        Ok(Scratch { values, start, len })
    }
}

impl<T: Element> Deref for Scratch<T> {
    type Target = [T];

    #[allow(
        clippy::indexing_slicing,
        reason = "`Scratch::new` makes `values` at least `start + len` long"
    )]
    fn deref(&self) -> &[T] {
        &self.values[self.start..][..self.len]
    }
}

impl<T: Element> DerefMut for Scratch<T> {
    #[allow(
        clippy::indexing_slicing,
        reason = "`Scratch::new` makes `values` at least `start + len` long"
    )]
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.values[self.start..][..self.len]
    }
}

impl<T: Element> Drop for Scratch<T> {
    fn drop(&mut self) {
        let values = std::mem::take(&mut self.values);
        T::spare(|spare| spare.push(values));
    }
}

/// An operator's output: an f32 tensor of `shape` that `fill` writes whole, handed to tract as
/// it is (an `ndarray` array would be copied into a tensor), or an error where
/// [`Scratch::new`] gives one.
///
/// The tensor is not zeroed first (zeroing took about 3% of a network's run), so `fill` must
/// write every value before anything reads it: see [`blank`] for how that is checked.
pub fn output(
    shape: &[usize],
    fill: impl FnOnce(&mut [f32]) -> TractResult<()>,
) -> TractResult<Tensor> {
    let mut tensor = blank(shape)?;
    let mut view = tensor.to_plain_array_view_mut::<f32>()?;
    let values =
        view.as_slice_mut().ok_or_else(|| TractError::msg("a new tensor is contiguous"))?;
    fill(values)?;
    check_written([&*values])?;
    Ok(tensor)
}

/// [`output`] for a convolution that writes its `channels` channels of planes of `plane`
/// values at `part` of a tensor of `shape`: of `handed`, the tensor an earlier branch made and
/// handed on (which must have `shape`), or of a new one.
pub fn output_onto(
    shape: &[usize],
    handed: Option<Tensor>,
    (part, channels, plane): (Part, usize, usize),
    fill: impl FnOnce(&mut [f32]) -> TractResult<()>,
) -> TractResult<Tensor> {
    let mut tensor = match handed {
        Some(tensor) => {
            if tensor.shape() != shape {
                return Err(TractError::msg(format!(
                    "a tensor of {:?} handed on to write a part of {shape:?}",
                    tensor.shape()
                )));
            }
            tensor
        }
        None => blank(shape)?,
    };
    let mut view = tensor.to_plain_array_view_mut::<f32>()?;
    let values =
        view.as_slice_mut().ok_or_else(|| TractError::msg("a new tensor is contiguous"))?;
    fill(values)?;
    check_written(part.images(values, channels, plane).map(|image| &*image))?;
    Ok(tensor)
}

/// The bits of the values of a new output in the unit tests and with the `poison` feature: a
/// quiet NaN whose payload no arithmetic on the operators' finite inputs makes.
#[cfg(any(test, feature = "poison"))]
const POISON: u32 = 0x7fc0_dead;

/// A new f32 tensor of `shape`, its values unwritten.
///
/// Its memory is not initialised: every operator writes each value of its output (or of its
/// part of a joined output) before the tensor is handed on, and nothing reads a value before
/// it is written. That is the invariant soundness rests on, not the f32 bit patterns. It is
/// checked wherever the check is compiled in (the unit tests, and builds with the `poison`
/// feature, which the library's tests turn on): the values start as [`POISON`], and
/// [`check_written`] fails the operator that leaves any of them in its region.
fn blank(shape: &[usize]) -> TractResult<Tensor> {
    within_limit(shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).unwrap_or(usize::MAX))?;
    // SAFETY: `Tensor::uninitialized` asks only for a plain datum type, which f32 is. The
    // values are left unread until written: each operator writes its whole region before
    // the tensor leaves it (checked by `check_written` where it is compiled in).
    #[allow(unused_mut, reason = "only the poisoned builds write the values here")]
    let mut tensor = unsafe { Tensor::uninitialized::<f32>(shape)? };
    #[cfg(any(test, feature = "poison"))]
    tensor.fill_t(f32::from_bits(POISON))?;
    Ok(tensor)
}

/// An error naming how many values of `regions` an operator left unwritten, where the check is
/// compiled in (see [`blank`]); elsewhere nothing.
#[allow(unused_variables, reason = "the regions are read only where the check is compiled in")]
fn check_written<'a>(regions: impl IntoIterator<Item = &'a [f32]>) -> TractResult<()> {
    #[cfg(any(test, feature = "poison"))]
    {
        let unwritten: usize = regions
            .into_iter()
            .map(|region| region.iter().filter(|v| v.to_bits() == POISON).count())
            .sum();
        if unwritten > 0 {
            return Err(TractError::msg(format!(
                "an operator left {unwritten} values of its output unwritten"
            )));
        }
    }
    Ok(())
}

/// Where a convolution writes its output: its channels of the tensor it hands on, each image's
/// `of` channels from channel `first`. A convolution alone owns the whole tensor; the
/// branches of an Inception module write their parts of one tensor in turn, each handing it on
/// to the next, as the Concat of their outputs (which [`super::join`] takes out) would have
/// laid them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Part {
    /// The channels of the whole tensor.
    pub of: usize,
    /// The first of the operator's own channels in it.
    pub first: usize,
}

impl Part {
    /// The whole tensor of `channels` channels.
    pub fn whole(channels: usize) -> Part {
        Part { of: channels, first: 0 }
    }

    /// The operator's own `channels` planes of `plane` values in each image of `tensor`.
    #[allow(
        clippy::indexing_slicing,
        reason = "`output_onto` gives a tensor of `of` channels, and `join` makes parts that lie \
                  inside it"
    )]
    pub fn images(
        self,
        tensor: &mut [f32],
        channels: usize,
        plane: usize,
    ) -> impl Iterator<Item = &mut [f32]> {
        let start = self.first * plane;
        let end = start + channels * plane;
        tensor.chunks_exact_mut(self.of * plane).map(move |image| &mut image[start..end])
    }

    /// Which plane of the tensor holds the operator's channel `channel` of image `image`.
    pub fn plane(self, image: usize, channel: usize) -> usize {
        image * self.of + self.first + channel
    }
}

/// The largest buffer or output tensor an operator makes, 4 GiB: a malformed model's shapes
/// become an error here rather than an allocation the system cannot make.
const MAX_BUFFER_BYTES: u64 = 4 << 30;

fn within_limit(len: usize) -> TractResult<()> {
    let bytes = (len as u64).saturating_mul(4);
    if bytes > MAX_BUFFER_BYTES {
        return Err(TractError::msg(format!(
            "the model needs a buffer of {} MiB, over the limit of {} GiB",
            bytes.div_ceil(1 << 20),
            MAX_BUFFER_BYTES >> 30
        )));
    }
    Ok(())
}

/// Implements tract's `EvalOp` for an operator of one f32 input whose
/// `apply(&self, &ArrayViewD<f32>) -> TractResult<Tensor>` computes its one output.
macro_rules! eval_with_apply {
    ($op:ty) => {
        impl EvalOp for $op {
            op_out_of_plan!();

            fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
                let input = args_1!(inputs);
                let view = input.to_plain_array_view::<f32>()?;
                Ok(tvec!(self.apply(&view)?.into_tvalue()))
            }
        }
    };
}

/// Implements tract's `Op` for a windowed operator (a pooling or a convolution), named for its
/// type and described by its geometry, its `spec: PoolSpec`.
macro_rules! windowed_op_name {
    ($op:ident) => {
        impl Op for $op {
            fn name(&self) -> StaticName {
                stringify!($op).into()
            }

            fn info(&self) -> TractResult<Vec<String>> {
                Ok(self.spec.info())
            }

            op_as_typed_op!();
        }
    };
}

/// Implements tract's `Op`, `EvalOp` and `TypedOp` for a windowed pooling: one f32 input
/// computed by `apply`, its geometry and output shape given by its `spec: PoolSpec`.
macro_rules! windowed_op {
    ($op:ident) => {
        windowed_op_name!($op);

        eval_with_apply!($op);

        impl TypedOp for $op {
            as_op!();

            fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
                self.spec.output_facts(inputs)
            }
        }
    };
}

/// Implements tract's `Op`, `EvalOp` and `TypedOp` for a convolution that writes its [`Part`]
/// (its `part`) of the tensor it hands on: of a new tensor given one input, or in place of the
/// tensor given as its second input, through
/// `write(&self, &ArrayViewD<f32>, Option<Tensor>) -> TractResult<Tensor>`; its geometry is its
/// `spec: PoolSpec`.
macro_rules! convolution_op {
    ($op:ident) => {
        windowed_op_name!($op);

        impl EvalOp for $op {
            op_out_of_plan!();

            fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
                let mut inputs = inputs.into_iter();
                let input = inputs.next().context("a convolution has an input")?;
                // The last reader of the tensor handed on holds it alone: no copy is made.
                let handed = inputs.next().map(IntoTensor::into_tensor);
                let view = input.to_plain_array_view::<f32>()?;
                Ok(tvec!(self.write(&view, handed)?.into_tvalue()))
            }
        }

        impl TypedOp for $op {
            as_op!();

            fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
                let mut facts = self.spec.output_facts(inputs)?;
                for fact in &mut facts {
                    fact.shape.set(1, self.part.of.into());
                }
                Ok(facts)
            }
        }
    };
}

/// A reproducible tensor of values in -100..100, for the operators' tests.
#[cfg(test)]
pub fn random(
    shape: &[usize],
    seed: u32,
) -> tract_onnx::prelude::tract_ndarray::Array<f32, tract_onnx::prelude::tract_ndarray::IxDyn> {
    use tract_onnx::prelude::tract_ndarray::{Array, IxDyn};
    let mut state = seed;
    Array::from_shape_fn(IxDyn(shape), |_| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as f32 / (1u32 << 24) as f32 * 200.0 - 100.0
    })
}

/// Optimises `model` (one f32 input) and runs it on `input`; returns its first output.
#[cfg(test)]
pub fn run(
    model: tract_onnx::prelude::TypedModel,
    input: &tract_onnx::prelude::tract_ndarray::ArrayD<f32>,
) -> tract_onnx::prelude::Tensor {
    use tract_onnx::prelude::*;
    let plan = model.into_optimized().unwrap().into_runnable().unwrap();
    let mut outputs = plan.run(tvec!(Tensor::from(input.clone()).into_tvalue())).unwrap();
    outputs.remove(0).into_tensor()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_over_the_allocation_limit_are_errors() {
        assert_eq!(Scratch::<f32>::new(3).unwrap().len(), 3);
        let over = usize::try_from(MAX_BUFFER_BYTES / 4 + (1 << 18)).unwrap();
        assert_eq!(
            Scratch::<f32>::new(over).err().unwrap().to_string(),
            "the model needs a buffer of 4097 MiB, over the limit of 4 GiB"
        );
    }

    #[test]
    fn scratch_buffers_start_on_a_cache_line() {
        for len in [1, 17, 1000, 100_000] {
            let buffer = Scratch::<f32>::new(len).unwrap();
            assert_eq!((buffer.as_ptr() as usize % 64, buffer.len()), (0, len));
        }
    }

    #[test]
    fn scratch_buffers_given_back_are_taken_again_on_the_same_thread() {
        let first = Scratch::<f32>::new(1000).unwrap();
        let at = first.as_ptr();
        drop(first);
        let again = Scratch::<f32>::new(10).unwrap();
        assert_eq!((again.as_ptr(), again.len()), (at, 10));
        assert!(again.iter().all(|v| v.is_nan()), "buffers are NaN in tests");
        let beside = Scratch::<f32>::new(10).unwrap();
        assert_ne!(beside.as_ptr(), at, "a buffer in use is not handed out twice");
    }

    #[test]
    fn outputs_are_filled_in_place_and_bounded_like_buffers() {
        let tensor = output(&[2, 3], |values| {
            values.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
            Ok(())
        })
        .unwrap();
        assert_eq!(tensor.shape(), [2, 3]);
        let values = tensor.to_plain_array_view::<f32>().unwrap();
        assert_eq!(values.iter().copied().collect::<Vec<_>>(), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let half = output(&[2], |values| {
            values[0] = 1.0;
            Ok(())
        });
        assert_eq!(
            half.unwrap_err().to_string(),
            "an operator left 1 values of its output unwritten"
        );
        let over = usize::try_from(MAX_BUFFER_BYTES / 4 / 1024 + 1).unwrap();
        let refused = output(&[1024, over], |_| Ok(())).unwrap_err().to_string();
        assert!(refused.contains("over the limit of 4 GiB"), "{refused}");
        let overflowing = output(&[usize::MAX, 2], |_| Ok(())).unwrap_err().to_string();
        assert!(overflowing.contains("over the limit"), "{overflowing}");
    }

    #[test]
    fn a_part_is_checked_in_its_own_channels_only() {
        let (first, second) = (Part { of: 3, first: 0 }, Part { of: 3, first: 1 });
        let write = |part: Part, channels: usize| {
            move |values: &mut [f32]| {
                part.images(values, channels, 2).for_each(|image| image.fill(1.0));
                Ok(())
            }
        };
        let made = output_onto(&[2, 3, 1, 2], None, (first, 1, 2), write(first, 1)).unwrap();
        let whole =
            output_onto(&[2, 3, 1, 2], Some(made), (second, 2, 2), write(second, 2)).unwrap();
        assert!(whole.to_plain_array_view::<f32>().unwrap().iter().all(|v| *v == 1.0));
        let short = output_onto(&[2, 3, 1, 2], None, (second, 2, 2), write(second, 1));
        assert_eq!(
            short.unwrap_err().to_string(),
            "an operator left 4 values of its output unwritten"
        );
    }
}
