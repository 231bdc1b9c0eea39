//! The batch pipeline: discovered inputs are decoded, preprocessed and classified on worker
//! threads sharing one optimised plan, and their records handed on in input order as soon as
//! every earlier one is done.
//!
//! [`run_ordered`] is a few scoped threads and a reorder map rather than rayon: rayon's
//! parallel iterators either collect every result before handing one on (`collect`) or hand
//! them on out of order (`for_each`), and the stream in input order, holding one chunk per
//! worker, is what keeps memory flat over a million photos and every finished record in a
//! killed run's output. Where every result is wanted at once (`explain`'s patch positions, the
//! channel-use sums), rayon does the work.

pub mod discover;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use anyhow::{bail, Context, Result};
use tract_onnx::prelude::tract_ndarray::Array3;

use crate::classify::top_k;
use crate::crops::{self, Crops};
use crate::download::Downloader;
use crate::labels::Labels;
use crate::model::Model;
use crate::output::{self, Outcome, Record};
use crate::preprocess::Preprocess;
use crate::similarity::normalise;
pub use discover::{Input, Walk};

/// A model with its preprocessing, and the means to read its inputs: inputs in, output rows
/// out.
#[derive(Debug)]
pub struct Runner {
    /// The network.
    pub model: Model,
    /// How images become its input.
    pub preprocess: Preprocess,
    /// The client for inputs named by URL.
    pub downloader: Downloader,
    /// How many crops of each image are run, their outputs averaged.
    pub crops: Crops,
}

impl Runner {
    /// The bytes of one input: its file, standard input, its download or its upload.
    pub fn bytes(&self, input: &Input) -> Result<Vec<u8>> {
        Ok(match input {
            Input::Image(path) => self.preprocess.read(path)?,
            Input::Stdin => self.preprocess.read_stdin()?,
            Input::Url(url) => {
                self.downloader.get(url, self.preprocess.byte_limit()).context("cannot download")?
            }
            Input::Upload { bytes, .. } => bytes.to_vec(),
            Input::Broken { reason, .. } => bail!("{reason}"),
        })
    }

    /// The input tensor of one input.
    pub fn tensor(&self, input: &Input) -> Result<Array3<f32>> {
        Ok(self.preprocess.tensor(&self.bytes(input)?)?)
    }

    /// Runs up to one batch of inputs: each one's output row ([`Model::run`], averaged over
    /// its crops), or its error on one line. The crops of all the inputs go through the model
    /// in batches of its batch size.
    pub fn run(&self, inputs: &[Input]) -> Vec<RowResult> {
        let mut images = Vec::new();
        let mut rows: Vec<Result<usize, String>> = Vec::with_capacity(inputs.len());
        for input in inputs {
            match self
                .bytes(input)
                .and_then(|b| Ok(crops::images(&self.preprocess, &b, self.crops)?))
            {
                Ok(crops) => {
                    rows.push(Ok(crops.len()));
                    images.extend(crops);
                }
                Err(err) => rows.push(Err(output::one_line(&err))),
            }
        }
        // A chunk whose every input failed before inference costs no run of the network.
        let mut outputs = Vec::with_capacity(images.len());
        for batch in images.chunks(self.model.batch_size) {
            let tensors: Vec<Array3<f32>> =
                batch.iter().map(|i| self.preprocess.normalise(i)).collect();
            match self.model.run(&tensors).context("inference failed") {
                Ok(batch) => outputs.extend(batch.into_iter().map(Ok)),
                Err(err) => outputs.extend(vec![Err(output::one_line(&err)); tensors.len()]),
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
    let mut sum = rows.next().unwrap_or_else(|| Err("no result".into()))?;
    for row in rows {
        sum.iter_mut().zip(row?).for_each(|(total, value)| *total += value);
    }
    if count > 1.0 {
        sum.iter_mut().for_each(|value| *value /= count);
    }
    Ok(sum)
}

/// A [`Runner`] with the labels of its classes: inputs in, records out.
#[derive(Debug)]
pub struct Classifier {
    /// The model, preprocessing and input readers.
    pub runner: Runner,
    /// Names of its classes.
    pub labels: Labels,
    /// How many classes each record keeps.
    pub top_k: usize,
}

impl Classifier {
    /// Classifies up to one batch of inputs; each gets its predictions or its own error.
    pub fn classify(&self, inputs: &[Input]) -> Vec<Record> {
        self.records(inputs, self.runner.run(inputs), self.top_k)
    }

    /// The records of `inputs` from their output rows ([`Runner::run`]), each keeping its `k`
    /// most probable classes.
    pub fn records(&self, inputs: &[Input], rows: Vec<RowResult>, k: usize) -> Vec<Record> {
        records(inputs, rows, |p| Outcome::Predictions(top_k(&p, k, &self.labels)))
    }
}

/// One input's output row, or why it has none, on one line.
pub type RowResult = Result<Vec<f32>, String>;

/// The records of `inputs` from their feature rows ([`Runner::run`] of a features model), each
/// scaled to unit length with `normalize`.
pub fn embedding_records(inputs: &[Input], rows: Vec<RowResult>, normalize: bool) -> Vec<Record> {
    records(inputs, rows, |mut values| {
        if normalize {
            normalise(&mut values);
        }
        Outcome::Embedding(values)
    })
}

/// Each input's record: `outcome` of its row, or its error.
fn records(
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
/// order, so results arrive nearly in order; each worker holds one chunk's tensors at a time
/// and only the (small) results wait to be sunk. A `sink` error stops the workers and is
/// returned.
pub fn run_ordered<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    chunk: usize,
    work: impl Fn(&[T]) -> Vec<R> + Sync,
    mut sink: impl FnMut(R) -> Result<()>,
) -> Result<()> {
    let chunks: Vec<&[T]> = items.chunks(chunk.max(1)).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (sender, receiver) = mpsc::sync_channel::<(usize, Vec<R>)>(2 * threads);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, chunks.len().max(1)) {
            let sender = sender.clone();
            let (chunks, next, stop, work) = (&chunks, &next, &stop, &work);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(chunk) = chunks.get(index) else { break };
                    if sender.send((index, work(chunk))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        let result = sink_in_order(receiver, &mut sink);
        stop.store(true, Ordering::Relaxed);
        result
    })
}

fn sink_in_order<R>(
    receiver: mpsc::Receiver<(usize, Vec<R>)>,
    sink: &mut impl FnMut(R) -> Result<()>,
) -> Result<()> {
    let mut waiting: BTreeMap<usize, Vec<R>> = BTreeMap::new();
    let mut due = 0;
    for (index, results) in receiver {
        waiting.insert(index, results);
        while let Some(results) = waiting.remove(&due) {
            results.into_iter().try_for_each(&mut *sink)?;
            due += 1;
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
                    Ok(())
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
        assert!(done.load(Ordering::Relaxed) < 1000);
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
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(calls, 0);
    }
}
