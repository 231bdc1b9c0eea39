//! `googlenet embed`: each image's features, as JSON Lines or a NumPy array.

use anyhow::{ensure, Context, Result};

use googlenet::{Error, Record};

use super::{announce, loaded, pending_inputs, progress, status, summarise, Status};
use crate::cli::{EmbedArgs, EmbedFormat};
use crate::output::{Format, NpyWriter, Outcome, Output};

pub(super) fn embed(args: &EmbedArgs, verbose: bool) -> Result<Status> {
    let npy_named = args.output.as_deref().and_then(|p| p.extension()).is_some_and(|e| e == "npy");
    let format =
        args.format.unwrap_or(if npy_named { EmbedFormat::Npy } else { EmbedFormat::Jsonl });
    ensure!(!args.resume || format == EmbedFormat::Jsonl, "--resume needs --format jsonl");
    let resume = args.output.as_deref().filter(|_| args.resume);
    let inputs = pending_inputs(&args.inputs, resume)?;
    let builder = args.runner.builder(inputs.len());
    let embedder = loaded(builder.build_embedder(args.layer.as_deref()))?;
    announce(&embedder.describe(), embedder.note(), verbose);
    let mut progress = progress(&inputs, args.runner.run.quiet, "embedded");
    let failed = match format {
        EmbedFormat::Jsonl => {
            let mut output = match &args.output {
                Some(path) => Output::file(Format::Jsonl, path, args.resume)?,
                None => Output::stdout(Format::Jsonl),
            };
            let result = embedder.embed_each(&inputs, args.normalize, |record| {
                progress.sink(record, |record| output.record(&record))
            });
            summarise(progress, result.and_then(|()| output.finish()))?
        }
        EmbedFormat::Npy => {
            let path = args.output.as_deref().context("--format npy needs --output FILE.npy")?;
            let mut npy = NpyWriter::create(path)?;
            let result = embedder.embed_each(&inputs, args.normalize, |record| {
                progress.sink(listable(record), |record| match &record.outcome {
                    Outcome::Embedding(values) => npy.row(&record.path, values),
                    _ => Ok(()),
                })
            });
            summarise(progress, result.and_then(|()| npy.finish()))?
        }
    };
    Ok(status(failed))
}

/// `record`, or an error in place of its features where its path has a line break: it could
/// not be listed one per line beside the array.
fn listable(mut record: Record) -> Record {
    if record.path.contains(['\n', '\r']) && matches!(record.outcome, Outcome::Embedding(_)) {
        record.outcome = Outcome::Error(Error::Image(
            "a name with a line break cannot be listed in the .paths.txt file".into(),
        ));
    }
    record
}
