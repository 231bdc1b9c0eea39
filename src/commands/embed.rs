//! `googlenet embed`: each image's features, as JSON Lines or a NumPy array.

use anyhow::{ensure, Context, Result};

use super::{batch_size, load_runner, pending_inputs, run_batch, status, summarise, Head, Status};
use crate::cli::{EmbedArgs, EmbedFormat};
use crate::model::ModelSource;
use crate::npy::NpyWriter;
use crate::output::{Format, Outcome, Output, Record};
use crate::pipeline::{embedding_records, Input, Runner};

pub(super) fn embed(args: &EmbedArgs, verbose: bool) -> Result<Status> {
    let npy_named = args.output.as_deref().and_then(|p| p.extension()).is_some_and(|e| e == "npy");
    let format =
        args.format.unwrap_or(if npy_named { EmbedFormat::Npy } else { EmbedFormat::Jsonl });
    ensure!(!args.resume || format == EmbedFormat::Jsonl, "--resume needs --format jsonl");
    let resume = args.output.as_deref().filter(|_| args.resume);
    let inputs = pending_inputs(&args.inputs, resume)?;
    let source = ModelSource::resolve(args.runner.model.as_deref())?;
    let head = Head::Features(args.layer.as_deref());
    let (run, bytes) = (&args.runner.run, source.bytes()?);
    let batch = batch_size(run, inputs.len());
    let runner = load_runner(&source, &bytes, &args.runner, head, batch, verbose)?;
    let one_per_line = format == EmbedFormat::Npy;
    let work = |chunk: &[Input]| embeddings(&runner, chunk, args.normalize, one_per_line);
    let failed = match format {
        EmbedFormat::Jsonl => {
            let mut output = match &args.output {
                Some(path) => Output::file(Format::Jsonl, path, args.resume)?,
                None => Output::stdout(Format::Jsonl),
            };
            let (progress, result) =
                run_batch(&inputs, run, batch, "embedded", work, |record| output.record(&record));
            summarise(progress, result.and_then(|()| output.finish()))?
        }
        EmbedFormat::Npy => {
            let path = args.output.as_deref().context("--format npy needs --output FILE.npy")?;
            let mut npy = NpyWriter::create(path)?;
            let (progress, result) =
                run_batch(&inputs, run, batch, "embedded", work, |record| match &record.outcome {
                    Outcome::Embedding(values) => npy.row(&record.path, values),
                    _ => Ok(()),
                });
            summarise(progress, result.and_then(|()| npy.finish()))?
        }
    };
    Ok(status(failed))
}

/// The records of one chunk: each input's features, scaled to unit length with `normalize`.
/// With `one_per_line`, a path with a line break is an error: it could not be listed one per
/// line beside the array.
pub(super) fn embeddings(
    runner: &Runner,
    inputs: &[Input],
    normalize: bool,
    one_per_line: bool,
) -> Vec<Record> {
    let mut records = embedding_records(inputs, runner.run(inputs), normalize);
    for record in records.iter_mut().filter(|r| one_per_line && r.path.contains(['\n', '\r'])) {
        if let Outcome::Embedding(_) = record.outcome {
            record.outcome = Outcome::Error(
                "a name with a line break cannot be listed in the .paths.txt file".into(),
            );
        }
    }
    records
}
