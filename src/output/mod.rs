//! The formats records are written in. Results go to stdout (or a file); diagnostics go to
//! stderr through [`diagnostic`].

mod csv;
mod files;
pub mod json;
mod jsonl;
mod progress;
pub mod resume;
mod table;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use googlenet::LayerShape;
pub use googlenet::{one_line, Outcome, Record};

pub use csv::CsvWriter;
pub use files::{temp_beside, write_whole, NpyWriter};
pub use json::JsonWriter;
pub use jsonl::JsonlWriter;
pub use progress::Progress;
pub use table::TableWriter;

/// Output formats of `classify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned text for people.
    Table,
    /// One JSON object per image and line, written as each image is done.
    Jsonl,
    /// One row per image and rank, written as each image is done.
    Csv,
    /// One JSON document, `{"results": [...]}`, written at the end.
    Json,
}

impl Format {
    /// Whether records are written as they come (and so survive a killed run).
    pub fn streams(self) -> bool {
        matches!(self, Format::Jsonl | Format::Csv)
    }
}

/// Writes records in one format.
pub trait RecordWriter {
    /// Writes (or keeps, for whole-document formats) one record.
    fn record(&mut self, record: &Record) -> io::Result<()>;
    /// Writes or keeps the layers' output shapes of the run, given before any record: JSON Lines
    /// writes them as their own first line, the table and the JSON document after the records.
    /// CSV has no place for them.
    fn shapes(&mut self, _shapes: &[LayerShape]) -> io::Result<()> {
        Err(io::Error::other("--shapes has no place in CSV: use --format jsonl, json or table"))
    }
    /// Completes the output.
    fn finish(&mut self) -> io::Result<()>;
}

/// A writer of `format` over `out`; `fresh` says whether `out` starts empty (a CSV header is
/// written only then).
fn writer<'a>(format: Format, out: Box<dyn Write + 'a>, fresh: bool) -> Box<dyn RecordWriter + 'a> {
    match format {
        Format::Table => Box::new(TableWriter::new(out)),
        Format::Jsonl => Box::new(JsonlWriter::new(out, fresh)),
        Format::Csv => Box::new(CsvWriter::new(out, fresh)),
        Format::Json => Box::new(JsonWriter::new(out)),
    }
}

/// Where results go: stdout, or a file. Streaming formats write the file in place (appending
/// when resuming); whole-document formats write a temporary file beside it and rename it into
/// place when finished, so the file is never seen half-written. A path that is not a regular
/// file (`/dev/stdout`, a pipe) is written in place whatever the format.
pub struct Output {
    writer: Box<dyn RecordWriter>,
    pending: Option<(tempfile::NamedTempFile, PathBuf)>,
    /// Where the results go, for errors.
    name: String,
}

impl Output {
    /// Results on stdout.
    pub fn stdout(format: Format) -> Output {
        let writer = writer(format, Box::new(io::stdout()), true);
        Output { writer, pending: None, name: "stdout".into() }
    }

    /// Results in `path`; `append` keeps what a streaming format already wrote there.
    pub fn file(format: Format, path: &Path, append: bool) -> Result<Output> {
        let name = path.display().to_string();
        let special = path.metadata().is_ok_and(|m| !m.is_file());
        if format.streams() || special {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(append)
                .write(true)
                .truncate(!append)
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            let fresh = file.metadata().map(|m| m.len() == 0).unwrap_or(true);
            let writer = writer(format, Box::new(file), fresh);
            return Ok(Output { writer, pending: None, name });
        }
        let temp = temp_beside(path)?;
        let file = temp.as_file().try_clone()?;
        let writer = writer(format, Box::new(io::BufWriter::new(file)), true);
        Ok(Output { writer, pending: Some((temp, path.to_owned())), name })
    }

    /// Writes one record.
    pub fn record(&mut self, record: &Record) -> Result<()> {
        let name = &self.name;
        self.writer.record(record).with_context(|| format!("cannot write results to {name}"))
    }

    /// Writes the layers' output shapes of the run, before the records ([`RecordWriter::shapes`]).
    pub fn shapes(&mut self, shapes: &[LayerShape]) -> Result<()> {
        let name = &self.name;
        self.writer.shapes(shapes).with_context(|| format!("cannot write results to {name}"))
    }

    /// Completes the output, renaming a whole-document file into place.
    pub fn finish(&mut self) -> Result<()> {
        let name = &self.name;
        self.writer.finish().with_context(|| format!("cannot write results to {name}"))?;
        if let Some((temp, path)) = self.pending.take() {
            temp.persist(path).with_context(|| format!("cannot write results to {name}"))?;
        }
        Ok(())
    }
}

/// A path as records write it (and `--resume` reads it back): non-UTF-8 bytes become U+FFFD.
pub fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Prints a one-line diagnostic on stderr, prefixed with the program name. If stderr has gone
/// (`googlenet classify ... 2>&1 | head -1`), the line is lost and the run goes on; `eprintln!`
/// would panic.
pub fn diagnostic(message: &str) {
    let _ = writeln!(std::io::stderr(), "googlenet: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use googlenet::{Error, Prediction};

    /// What `writer` makes of the sample records, finished.
    pub(crate) fn written<'a>(
        writer: impl FnOnce(&'a mut Vec<u8>) -> Box<dyn RecordWriter + 'a>,
        out: &'a mut Vec<u8>,
    ) {
        let mut writer = writer(out);
        for record in sample_records() {
            writer.record(&record).unwrap();
        }
        writer.finish().unwrap();
    }

    pub(crate) fn sample_records() -> Vec<Record> {
        let prediction = |rank, index, name: &str, probability| Prediction {
            rank,
            index,
            synset: Some(format!("n0000000{rank}")),
            name: name.into(),
            probability,
        };
        vec![
            Record::new(
                Path::new("a.jpg"),
                Outcome::Predictions(vec![
                    prediction(1, 285, "Egyptian cat", 0.5),
                    prediction(2, 281, "tabby", 0.25),
                ]),
            ),
            Record::new(
                Path::new("b.jpg"),
                Outcome::Error(Error::Image("cannot decode: bad".into())),
            ),
        ]
    }
}
