//! The batch pipeline: discovered inputs are decoded, preprocessed and classified on worker
//! threads sharing one optimised plan, and their records handed on in input order as soon as
//! every earlier one is done.
//!
//! [`run_ordered`] is a few scoped threads and a reorder map rather than rayon: rayon's
//! parallel iterators either collect every result before handing one on (`collect`) or hand
//! them on out of order (`for_each`), and the stream in input order, holding one chunk per
//! worker and a bounded window of finished results, is what keeps memory flat over a million
//! photos and every finished record in a killed run's output. Where every result is wanted at once (`explain`'s patch positions, the
//! channel-use sums), rayon does the work.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Condvar, Mutex, PoisonError};

use anyhow::Context;
use tract_onnx::prelude::tract_ndarray::Array3;

use crate::classify::top_k;
use crate::crops::{self, Crops};
use crate::download::Downloader;
use crate::error::{one_line, Error, Result};
use crate::inputs::Input;
use crate::labels::Labels;
use crate::model::Model;
use crate::preprocess::{Photo, Preprocess, PreprocessError};
use crate::record::{Outcome, Record};
use crate::similarity::normalise;

/// A model with its preprocessing, and the means to read its inputs: inputs in, output rows
/// out.
#[derive(Debug)]
pub(crate) struct Runner {
    /// The network.
    pub(crate) model: Model,
    /// How images become its input.
    pub(crate) preprocess: Preprocess,
    /// The client for inputs named by URL.
    pub(crate) downloader: Downloader,
    /// How many crops of each image are run, their outputs averaged.
    pub(crate) crops: Crops,
}

impl Runner {
    /// The network.
    pub(crate) fn model(&self) -> &Model {
        &self.model
    }

    /// How images become the network's input.
    pub(crate) fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    /// The bytes of one input: its file, standard input, its download or its upload.
    pub(crate) fn bytes(&self, input: &Input) -> Result<Vec<u8>> {
        let image = |err: PreprocessError| Error::image(&err.into());
        match input {
            Input::Image(path) => self.preprocess.read(path).map_err(image),
            Input::Stdin => self.preprocess.read_stdin().map_err(image),
            Input::Url { url, .. } => {
                self.downloader.get(url, self.preprocess.byte_limit()).map_err(|err| {
                    Error::Download(one_line(
                        anyhow::Error::from(err).context("cannot download").as_ref(),
                    ))
                })
            }
            Input::Upload { bytes, .. } => Ok(bytes.to_vec()),
            Input::Pixels { name, .. } => {
                Err(Error::Image(format!("{name} is pixels, not an image file")))
            }
            Input::Broken { reason, .. } => Err(Error::Image(reason.clone())),
        }
    }

    /// The input images of one input, each crop at the input size, not yet normalised.
    fn images(&self, input: &Input) -> Result<Vec<image::RgbImage>> {
        let bytes;
        let photo = match input {
            Input::Pixels { image, .. } => Photo::Pixels(image),
            _ => {
                bytes = self.bytes(input)?;
                Photo::File(&bytes)
            }
        };
        crops::images(&self.preprocess, photo, self.crops).map_err(|err| Error::image(&err.into()))
    }

    /// The input tensor of one input.
    pub(crate) fn tensor(&self, input: &Input) -> Result<Array3<f32>> {
        let bytes = match input {
            Input::Pixels { image, .. } => return Ok(self.preprocess.normalise(image)),
            _ => self.bytes(input)?,
        };
        self.preprocess.tensor(&bytes).map_err(|err| Error::image(&err.into()))
    }

    /// Runs up to one batch of inputs: each one's output row ([`Model::run`], averaged over
    /// its crops), or its error on one line. The crops of all the inputs go through the model
    /// in batches of its batch size.
    pub(crate) fn run(&self, inputs: &[Input]) -> Vec<RowResult> {
        let mut images = Vec::new();
        let mut rows: Vec<Result<usize>> = Vec::with_capacity(inputs.len());
        for input in inputs {
            match self.images(input) {
                Ok(crops) => {
                    rows.push(Ok(crops.len()));
                    images.extend(crops);
                }
                Err(err) => rows.push(Err(err)),
            }
        }
        // A chunk whose every input failed before inference costs no run of the network.
        let mut outputs = Vec::with_capacity(images.len());
        for batch in images.chunks(self.model.batch_size) {
            let tensors: Vec<Array3<f32>> =
                batch.iter().map(|i| self.preprocess.normalise(i)).collect();
            match self.model.run(&tensors).context("inference failed") {
                Ok(batch) => outputs.extend(batch.into_iter().map(Ok)),
                Err(err) => outputs.extend(vec![Err(Error::model(&err)); tensors.len()]),
            }
        }
        let mut outputs = outputs.into_iter();
        rows.into_iter()
            .map(|row| {
                let crops: Vec<RowResult> = outputs.by_ref().take(row?).collect();
                mean(crops)
            })
            .collect()
    }
}

/// The mean of the output rows of one input's crops, or the first crop's error.
fn mean(rows: Vec<RowResult>) -> RowResult {
    let count = rows.len() as f32;
    let mut rows = rows.into_iter();
    let mut sum = rows.next().unwrap_or_else(|| Err(Error::Model("no result".into())))?;
    for row in rows {
        sum.iter_mut().zip(row?).for_each(|(total, value)| *total += value);
    }
    if count > 1.0 {
        sum.iter_mut().for_each(|value| *value /= count);
    }
    Ok(sum)
}

/// One input's output row, or why it has none, on one line.
pub(crate) type RowResult = Result<Vec<f32>>;

/// The records of `inputs` from their feature rows ([`Runner::run`] of a features model), each
/// scaled to unit length with `normalize`.
pub(crate) fn embedding_records(
    inputs: &[Input],
    rows: Vec<RowResult>,
    normalize: bool,
) -> Vec<Record> {
    outcomes(inputs, rows, |mut values| {
        if normalize {
            normalise(&mut values);
        }
        Outcome::Embedding(values)
    })
}

/// The records of `inputs` from their class scores ([`Runner::run`]), each keeping its `k`
/// most probable classes.
pub(crate) fn records(
    inputs: &[Input],
    rows: Vec<RowResult>,
    k: usize,
    labels: &Labels,
) -> Vec<Record> {
    outcomes(inputs, rows, |p| Outcome::Predictions(top_k(&p, k, labels)))
}

/// Each input's record: `outcome` of its row, or its error.
fn outcomes(
    inputs: &[Input],
    rows: Vec<RowResult>,
    outcome: impl Fn(Vec<f32>) -> Outcome,
) -> Vec<Record> {
    inputs
        .iter()
        .zip(rows)
        .map(|(input, row)| Record::new(input.path(), row.map_or_else(Outcome::Error, &outcome)))
        .collect()
}

/// Runs `work` over consecutive chunks of `items` on `threads` threads and passes every result
/// to `sink` in item order, each as soon as all before it are done. Workers take chunks in
/// order and never more than `look_ahead` chunks past the oldest one not yet sunk, so a
/// stalled worker holds up a bounded number of finished results, not the whole run. A `sink`
/// error stops the workers and is returned.
pub(crate) fn run_ordered<T: Sync, R: Send, E>(
    items: &[T],
    threads: usize,
    chunk: usize,
    work: impl Fn(&[T]) -> Vec<R> + Sync,
    mut sink: impl FnMut(R) -> Result<(), E>,
) -> Result<(), E> {
    let chunks: Vec<&[T]> = items.chunks(chunk.max(1)).collect();
    if let [only] = chunks.as_slice() {
        return work(only).into_iter().try_for_each(sink);
    }
    let threads = threads.clamp(1, chunks.len().max(1));
    let next = AtomicUsize::new(0);
    let window = Window::new(look_ahead(threads));
    let (sender, receiver) = mpsc::sync_channel::<(usize, Vec<R>)>(2 * threads);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let sender = sender.clone();
            let (chunks, next, window, work) = (&chunks, &next, &window, &work);
            scope.spawn(move || loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(chunk) = chunks.get(index) else { break };
                if !window.wait_for(index) || sender.send((index, work(chunk))).is_err() {
                    break;
                }
            });
        }
        drop(sender);
        let result = sink_in_order(receiver, &window, &mut sink);
        window.stop();
        result
    })
}

/// How many chunks past the oldest unsunk one the workers of [`run_ordered`] may start.
fn look_ahead(threads: usize) -> usize {
    4 * threads
}

/// The chunks [`run_ordered`]'s workers may start: those less than `ahead` past the oldest
/// one not yet sunk, until the run stops.
struct Window {
    ahead: usize,
    /// The oldest chunk not yet sunk, and whether the run has stopped.
    state: Mutex<(usize, bool)>,
    moved: Condvar,
}

impl Window {
    fn new(ahead: usize) -> Self {
        Window { ahead, state: Mutex::new((0, false)), moved: Condvar::new() }
    }

    /// Waits until chunk `index` may start; false if the run stopped instead.
    fn wait_for(&self, index: usize) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, stopped) = *self
            .moved
            .wait_while(state, |(due, stopped)| !*stopped && index >= *due + self.ahead)
            .unwrap_or_else(PoisonError::into_inner);
        !stopped
    }

    /// Every chunk before `due` has been sunk.
    fn advance(&self, due: usize) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 = due;
        self.moved.notify_all();
    }

    /// No more chunks may start.
    fn stop(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.moved.notify_all();
    }
}

fn sink_in_order<R, E>(
    receiver: mpsc::Receiver<(usize, Vec<R>)>,
    window: &Window,
    sink: &mut impl FnMut(R) -> Result<(), E>,
) -> Result<(), E> {
    let mut waiting: BTreeMap<usize, Vec<R>> = BTreeMap::new();
    let mut due = 0;
    for (index, results) in receiver {
        waiting.insert(index, results);
        let before = due;
        while let Some(results) = waiting.remove(&due) {
            results.into_iter().try_for_each(&mut *sink)?;
            due += 1;
        }
        if due > before {
            window.advance(due);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_out_in_order_whatever_the_timing() {
        let items: Vec<u64> = (0..50).collect();
        for threads in [1, 2, 7] {
            let mut seen = Vec::new();
            run_ordered(
                &items,
                threads,
                3,
                |chunk| {
                    std::thread::sleep(std::time::Duration::from_millis(chunk[0] % 7));
                    chunk.iter().map(|x| x * 10).collect()
                },
                |r| {
                    seen.push(r);
                    Ok::<(), ()>(())
                },
            )
            .unwrap();
            assert_eq!(seen, items.iter().map(|x| x * 10).collect::<Vec<_>>(), "{threads} threads");
        }
    }

    #[test]
    fn a_sink_error_stops_the_run() {
        let items: Vec<u32> = (0..1000).collect();
        let done = AtomicUsize::new(0);
        let result = run_ordered(
            &items,
            2,
            1,
            |chunk| {
                done.fetch_add(1, Ordering::Relaxed);
                chunk.to_vec()
            },
            |r| if r == 5 { anyhow::bail!("reader went away") } else { Ok(()) },
        );
        assert!(result.is_err());
        // Chunk 5 fails, so no chunk from 5 + the look-ahead on may start.
        assert!(done.load(Ordering::Relaxed) <= 5 + look_ahead(2));
    }

    #[test]
    fn a_stalled_chunk_holds_back_only_the_look_ahead() {
        let items: Vec<u32> = (0..1000).collect();
        let done = AtomicUsize::new(0);
        let seen_by_first = AtomicUsize::new(0);
        run_ordered(
            &items,
            2,
            1,
            |chunk| {
                if chunk[0] == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    seen_by_first.store(done.load(Ordering::SeqCst), Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
                chunk.to_vec()
            },
            |_| Ok::<(), ()>(()),
        )
        .unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 1000);
        assert!(seen_by_first.load(Ordering::SeqCst) < look_ahead(2));
    }

    #[test]
    fn no_items_is_no_work() {
        let mut calls = 0;
        run_ordered(
            &[] as &[u8],
            4,
            8,
            |c| c.to_vec(),
            |_| {
                calls += 1;
                Ok::<(), ()>(())
            },
        )
        .unwrap();
        assert_eq!(calls, 0);
    }
}
