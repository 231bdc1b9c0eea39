//! Result records and the formats they are written in. Results go to stdout (or a file);
//! diagnostics go to stderr through [`diagnostic`].

mod json;
mod table;

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use crate::classify::Prediction;

pub use json::JsonWriter;
pub use table::TableWriter;

/// The result of one input image: its predictions, or why it has none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// The image path as given (lossily converted when not UTF-8).
    pub path: String,
    /// Predictions or error.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What became of an image.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The top-k classes, most probable first.
    Predictions(Vec<Prediction>),
    /// A one-line reason the image was not classified.
    Error(String),
}

impl Record {
    /// A record for `path`.
    pub fn new(path: &Path, outcome: Outcome) -> Record {
        Record { path: path.to_string_lossy().into_owned(), outcome }
    }
}

/// Output formats of `classify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    Table,
    /// One JSON document: `{"results": [...]}`.
    Json,
}

/// Writes records in one format.
pub trait RecordWriter {
    /// Writes (or keeps, for whole-document formats) one record.
    fn record(&mut self, record: &Record) -> io::Result<()>;
    /// Completes the output.
    fn finish(&mut self) -> io::Result<()>;
}

/// A writer of `format` over `out`.
pub fn writer<'a>(format: Format, out: Box<dyn Write + 'a>) -> Box<dyn RecordWriter + 'a> {
    match format {
        Format::Table => Box::new(TableWriter::new(out)),
        Format::Json => Box::new(JsonWriter::new(out)),
    }
}

/// An error and its causes on one line: `outer: inner: root cause`.
pub fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Prints a one-line diagnostic on stderr, prefixed with the program name.
pub fn diagnostic(message: &str) {
    eprintln!("googlenet: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Record::new(Path::new("b.jpg"), Outcome::Error("cannot decode: bad".into())),
        ]
    }

    #[test]
    fn records_serialise_flat() {
        let records = sample_records();
        let ok = serde_json::to_value(&records[0]).unwrap();
        assert_eq!(ok["path"], "a.jpg");
        assert_eq!(ok["predictions"][1]["name"], "tabby");
        assert_eq!(ok["predictions"][0]["index"], 285);
        let bad = serde_json::to_value(&records[1]).unwrap();
        assert_eq!(bad, serde_json::json!({"path": "b.jpg", "error": "cannot decode: bad"}));
    }
}
