//! Dynamic batching: requests wait in one bounded queue; a worker thread takes the oldest, adds
//! the requests already waiting, or arriving within a few milliseconds, up to a batch of
//! images, and runs them through the shared plan together, a batch at a time. A full queue
//! refuses at once. A request that gave up (timed out, or its client gone) is not run past the
//! batch under way, nor is anything once the workers are stopped.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::convert::Infallible;

use tokio::sync::oneshot;

use googlenet::similarity::normalise;
use googlenet::{Cancel, Classifier, Embedder, Input, Outcome, Record};

/// What a request wants of its images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Their `top_k` most probable classes.
    Classify {
        /// How many classes each record keeps.
        top_k: usize,
    },
    /// Their features, scaled to unit length with `normalize`.
    Embed {
        /// Scale each embedding to unit length.
        normalize: bool,
    },
}

/// One request's images, what it wants of them, and where its records go.
#[derive(Debug)]
pub struct Job {
    /// The images, in the request's order.
    pub inputs: Vec<Input>,
    /// What to compute.
    pub task: Task,
    /// Where the records go, one per input in order; dropped by a request that gave up.
    pub reply: oneshot::Sender<Vec<Record>>,
}

/// The networks the workers run.
#[derive(Debug)]
pub struct Engines {
    /// The classifier.
    pub classifier: Classifier,
    /// The features model, or why the classifier's features could not be found.
    pub features: Result<Embedder, String>,
}

/// The queue was full (or closed): the job was not queued.
#[derive(Debug)]
pub struct QueueFull;

/// The sending end of the queue, shared by the request handlers.
#[derive(Debug, Clone)]
pub struct Queue {
    sender: SyncSender<Job>,
}

impl Queue {
    /// Queues `job`, or refuses it at once when the queue holds its limit.
    pub fn submit(&self, job: Job) -> Result<(), QueueFull> {
        self.sender.try_send(job).map_err(|_| QueueFull)
    }
}

/// How the workers take their work.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Worker threads.
    pub threads: usize,
    /// The most images one run takes.
    pub images: usize,
    /// How long a worker waits for more requests to fill a batch.
    pub wait: Duration,
    /// Requests that may wait at once.
    pub capacity: usize,
}

/// The worker threads; they end once every [`Queue`] is dropped and the queue is empty.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<JoinHandle<()>>,
    stop: Cancel,
}

impl Workers {
    /// Starts `batching.threads` workers on `engines` and returns the queue that feeds them.
    pub fn start(engines: Arc<Engines>, batching: Batching) -> (Queue, Workers) {
        let (sender, receiver) = mpsc::sync_channel(batching.capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let stop = Cancel::new();
        let handles = (0..batching.threads.max(1))
            .map(|_| {
                let (receiver, engines) = (Arc::clone(&receiver), Arc::clone(&engines));
                let stop = stop.clone();
                std::thread::spawn(move || work(&receiver, &engines, batching, &stop))
            })
            .collect();
        (Queue { sender }, Workers { handles, stop })
    }

    /// Stops the workers after the batch each is running: what is left of their requests, and
    /// of the queue, is not run.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Waits for the workers to finish what is queued (or, once stopped, their batches).
    pub fn join(self) {
        for handle in self.handles {
            // A worker's panic has already been reported by the panic hook.
            let _ = handle.join();
        }
    }
}

/// One worker: batches of jobs until the queue closes.
fn work(receiver: &Mutex<Receiver<Job>>, engines: &Engines, batching: Batching, stop: &Cancel) {
    loop {
        let jobs = {
            let receiver = receiver.lock().unwrap_or_else(PoisonError::into_inner);
            let Ok(first) = receiver.recv() else { return };
            gather(&receiver, first, |job| job.inputs.len(), batching.images, batching.wait)
        };
        let (classify, embed): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .filter(|job| !job.reply.is_closed() && !stop.is_cancelled())
            .partition(|job| matches!(job.task, Task::Classify { .. }));
        let run = Run { images: batching.images, stop };
        // One batch may mix requests for different numbers of classes: it keeps the most any
        // of them wants, and each request's records are cut to its own.
        let most = classify.iter().map(|job| job.task.top_k()).max().unwrap_or(1);
        run.jobs(classify, |inputs| {
            collected(|sink| engines.classifier.classify_each_top(inputs, most, sink))
        });
        // Without a features model the handlers queue no embedding jobs.
        if let Ok(features) = &engines.features {
            run.jobs(embed, |inputs| collected(|sink| features.embed_each(inputs, false, sink)));
        }
    }
}

/// The records a run hands its sink, in order.
fn collected(
    run: impl FnOnce(&mut dyn FnMut(Record) -> Result<(), Infallible>) -> Result<(), Infallible>,
) -> Vec<Record> {
    let mut records = Vec::new();
    let _ = run(&mut |record| {
        records.push(record);
        Ok(())
    });
    records
}

impl Task {
    /// How many classes the task keeps (none for features).
    fn top_k(self) -> usize {
        match self {
            Task::Classify { top_k } => top_k,
            Task::Embed { .. } => 0,
        }
    }

    /// `record` as this task wants it: its predictions cut to its `top_k`, or its features
    /// scaled to unit length where it asks for that.
    fn shape(self, mut record: Record) -> Record {
        match (self, &mut record.outcome) {
            (Task::Classify { top_k }, Outcome::Predictions(predictions)) => {
                predictions.truncate(top_k);
            }
            (Task::Embed { normalize: true }, Outcome::Embedding(values)) => normalise(values),
            _ => {}
        }
        record
    }
}

/// How a worker runs its jobs: `images` at a time, until `stop`.
struct Run<'a> {
    images: usize,
    stop: &'a Cancel,
}

impl Run<'_> {
    /// Runs the images of `jobs` together through `run`, a batch at a time, and answers each
    /// job with its own records, shaped as its task wants ([`Task::shape`]). Before each batch
    /// the jobs that gave up are dropped; once the workers are stopped, none is run further.
    fn jobs(&self, jobs: Vec<Job>, run: impl Fn(&[Input]) -> Vec<Record>) {
        // Each job with the records of its images so far.
        let mut pending: Vec<(Job, Vec<Record>)> =
            jobs.into_iter().map(|job| (job, Vec::new())).collect();
        loop {
            pending.retain(|(job, _)| !job.reply.is_closed() && !self.stop.is_cancelled());
            let batch: Vec<(usize, Input)> = pending
                .iter()
                .enumerate()
                .flat_map(|(at, (job, rows))| {
                    job.inputs.iter().skip(rows.len()).map(move |input| (at, input.clone()))
                })
                .take(self.images.max(1))
                .collect();
            if batch.is_empty() {
                break;
            }
            let inputs: Vec<Input> = batch.iter().map(|(_, input)| input.clone()).collect();
            for ((at, _), record) in batch.iter().zip(run(&inputs)) {
                if let Some((job, records)) = pending.get_mut(*at) {
                    records.push(job.task.shape(record));
                }
            }
        }
        for (job, answer) in pending {
            // A request that gave up meanwhile has dropped its receiver: nothing to answer.
            let _ = job.reply.send(answer);
        }
    }
}

/// `first`, then what else `receiver` holds or receives within `wait`, until the items' `size`
/// reaches `limit`.
fn gather<T>(
    receiver: &Receiver<T>,
    first: T,
    size: impl Fn(&T) -> usize,
    limit: usize,
    wait: Duration,
) -> Vec<T> {
    let deadline = Instant::now() + wait;
    let mut total = size(&first);
    let mut items = vec![first];
    while total < limit {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(item) => {
                total += size(&item);
                items.push(item);
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_what_waits_up_to_the_limit() {
        let (sender, receiver) = mpsc::sync_channel(10);
        for size in [2, 3, 1, 4] {
            sender.send(size).unwrap();
        }
        let first = receiver.recv().unwrap();
        let batch = gather(&receiver, first, |&n| n, 6, Duration::from_millis(1));
        assert_eq!(batch, vec![2, 3, 1]);
        // The rest stays queued for the next batch.
        assert_eq!(receiver.recv().unwrap(), 4);
    }

    #[test]
    fn a_batch_short_of_its_limit_waits_out_its_wait() {
        let (sender, receiver) = mpsc::sync_channel::<usize>(10);
        let started = Instant::now();
        let batch = gather(&receiver, 1, |&n| n, 8, Duration::from_millis(20));
        assert_eq!(batch, vec![1]);
        assert!(started.elapsed() >= Duration::from_millis(20));
        drop(sender);
    }

    #[test]
    fn a_full_batch_does_not_wait() {
        let (_sender, receiver) = mpsc::sync_channel::<usize>(1);
        let batch = gather(&receiver, 4, |&n| n, 4, Duration::from_secs(3600));
        assert_eq!(batch, vec![4]);
    }
}
