//! `googlenet similar`: the photos most like each query, or the groups of near-duplicates, by
//! the cosine similarity of their features.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use googlenet::inputs::Walk;
use googlenet::npy::{self, Matrix};
use googlenet::similarity::{groups, most_similar, normalise};
use googlenet::{Embedder, Input};

use super::{announce, loaded, progress, status, summarise, Status};
use crate::cli::{RunArgs, SimilarArgs, SimilarFormat};
use crate::output::{diagnostic, Outcome, Record};

/// One query's look-alikes, or why it has none.
#[derive(Debug, Serialize)]
struct Lookalikes {
    /// The query as given.
    path: String,
    #[serde(flatten)]
    found: Found,
}

/// What a query found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Found {
    /// The most similar photos, most similar first.
    Similar(Vec<Match>),
    /// A one-line reason the query could not be embedded.
    Error(String),
}

/// One look-alike.
#[derive(Debug, Serialize)]
struct Match {
    rank: usize,
    path: String,
    similarity: f32,
}

/// One group of near-duplicates.
#[derive(Debug, Serialize)]
struct Group {
    paths: Vec<String>,
}

pub(super) fn similar(args: &SimilarArgs, verbose: bool) -> Result<Status> {
    let embedder = loaded(args.runner.builder(0).build_embedder(None))?;
    announce(&embedder.describe(), embedder.note(), verbose);
    let format = args.format.unwrap_or_else(|| match std::io::stdout().is_terminal() {
        true => SimilarFormat::Table,
        false => SimilarFormat::Jsonl,
    });
    let run = &args.runner.run;
    if let Some(place) = &args.duplicates {
        let (matrix, names, failed) = library(&embedder, run, place)?;
        let groups: Vec<Group> = groups(&matrix, args.threshold)
            .into_iter()
            .map(|rows| Group {
                paths: rows.iter().filter_map(|&r| names.get(r).cloned()).collect(),
            })
            .collect();
        if !run.quiet {
            let (count, photos) = (groups.len(), names.len());
            let noun = if count == 1 { "group" } else { "groups" };
            diagnostic(&format!("{count} {noun} of near-duplicates among {photos} photos"));
        }
        write(&groups, format, "groups", group_text)?;
        return Ok(status(failed));
    }
    let place = args.library.as_deref().context("--in DIR|NPY says where to look")?;
    let (matrix, names, library_failed) = library(&embedder, run, place)?;
    let queries = Walk::new(true, &[], &[])?.discover(&args.queries);
    let (records, failed) = embed(&embedder, run, &queries)?;
    let started = Instant::now();
    let found: Vec<Lookalikes> = records
        .into_iter()
        .map(|record| {
            let found = match record.outcome {
                Outcome::Embedding(query) => {
                    let same = |row: usize| names.get(row) == Some(&record.path);
                    let best = most_similar(&matrix, &query, usize::from(args.top), same);
                    Found::Similar(
                        best.into_iter()
                            .enumerate()
                            .map(|(rank, (row, similarity))| Match {
                                rank: rank + 1,
                                path: names.get(row).cloned().unwrap_or_default(),
                                similarity,
                            })
                            .collect(),
                    )
                }
                Outcome::Error(reason) => Found::Error(reason.to_string()),
                Outcome::Predictions(_) => Found::Error("no features".into()),
            };
            Lookalikes { path: record.path, found }
        })
        .collect();
    if verbose {
        let (rows, queries) = (matrix.rows, found.len());
        let seconds = started.elapsed().as_secs_f64();
        diagnostic(&format!("ranked {rows} photos for {queries} queries in {seconds:.3} s"));
    }
    write(&found, format, "results", lookalikes_text)?;
    Ok(status(failed + library_failed))
}

/// The unit-length features of the photos at `place`, a folder embedded now or a `.npy` array
/// with its `.paths.txt`; the name of each row; and how many photos of the folder failed.
fn library(
    embedder: &Embedder,
    run: &RunArgs,
    place: &Path,
) -> Result<(Matrix, Vec<String>, usize)> {
    let name = place.display();
    if place.is_dir() {
        let inputs = Walk::new(true, &[], &[])?.discover(&[place.to_owned()]);
        ensure!(!inputs.is_empty(), "no images found in {name}");
        let (records, failed) = embed(embedder, run, &inputs)?;
        let mut matrix = Matrix { rows: 0, width: embedder.width(), data: Vec::new() };
        let mut names = Vec::new();
        for record in records {
            if let Outcome::Embedding(values) = record.outcome {
                matrix.data.extend(values);
                matrix.rows += 1;
                names.push(record.path);
            }
        }
        return Ok((matrix, names, failed));
    }
    let mut matrix = npy::read(place)?;
    let names_file = npy::names_path(place);
    let names = std::fs::read_to_string(&names_file)
        .with_context(|| format!("cannot read the row names of {name}"))?;
    let names: Vec<String> = names.lines().map(str::to_owned).collect();
    ensure!(
        names.len() == matrix.rows,
        "{name} has {} rows but {} names {}",
        matrix.rows,
        names_file.display(),
        names.len()
    );
    let features = embedder.width();
    ensure!(
        matrix.width == features,
        "{name} holds rows of {} values, but the model's features have {features}: embed them \
         with the same model",
        matrix.width
    );
    matrix.data.chunks_exact_mut(features.max(1)).for_each(normalise);
    Ok((matrix, names, 0))
}

/// The unit-length features of `inputs`, one record each, and how many failed.
fn embed(embedder: &Embedder, run: &RunArgs, inputs: &[Input]) -> Result<(Vec<Record>, usize)> {
    let mut records = Vec::with_capacity(inputs.len());
    let mut progress = progress(inputs, run.quiet, "embedded");
    let result = embedder.embed_each(inputs, true, |record| {
        progress.sink(record, |record| records.push(record));
        Ok(())
    });
    let failed = summarise(progress, result)?;
    Ok((records, failed))
}

/// Writes `items` to stdout: as text, one JSON object per line, or one document `{key: items}`.
fn write<T: Serialize>(
    items: &[T],
    format: SimilarFormat,
    key: &str,
    text: fn(&T) -> String,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        SimilarFormat::Table => items.iter().try_for_each(|item| write!(out, "{}", text(item)))?,
        SimilarFormat::Jsonl => items.iter().try_for_each(|item| {
            serde_json::to_writer(&mut out, item)?;
            writeln!(out).map_err(anyhow::Error::from)
        })?,
        SimilarFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &serde_json::json!({ key: items }))?;
            writeln!(out)?;
        }
    }
    out.flush().context("cannot write to stdout")
}

/// A query and its look-alikes, aligned, with a blank line after.
fn lookalikes_text(item: &Lookalikes) -> String {
    let body = match &item.found {
        Found::Similar(matches) => matches
            .iter()
            .map(|m| format!("  {:>3}  {:.3}  {}\n", m.rank, m.similarity, m.path))
            .collect(),
        Found::Error(reason) => format!("  error: {reason}\n"),
    };
    format!("{}\n{body}\n", item.path)
}

/// A group of near-duplicates, with a blank line after.
fn group_text(group: &Group) -> String {
    let paths: String = group.paths.iter().map(|p| format!("  {p}\n")).collect();
    format!("{} photos:\n{paths}\n", group.paths.len())
}
