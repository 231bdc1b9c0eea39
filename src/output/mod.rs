//! Result records and the formats they are written in. Results go to stdout (or a file);
//! diagnostics go to stderr through [`diagnostic`].

mod csv;
pub mod json;
mod jsonl;
mod progress;
pub mod resume;
mod table;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::classify::Prediction;

pub use csv::CsvWriter;
pub use json::JsonWriter;
pub use jsonl::JsonlWriter;
pub use progress::Progress;
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
    /// The image's features (`embed`).
    Embedding(Vec<f32>),
    /// A one-line reason the image was not classified.
    Error(String),
}

impl Record {
    /// A record for `path`.
    pub fn new(path: &Path, outcome: Outcome) -> Record {
        Record { path: path_text(path), outcome }
    }
}

/// A path as records write it (and `--resume` reads it back): non-UTF-8 bytes become U+FFFD.
pub fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

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
    /// Completes the output.
    fn finish(&mut self) -> io::Result<()>;
}

/// A writer of `format` over `out`; `fresh` says whether `out` starts empty (a CSV header is
/// written only then).
fn writer<'a>(format: Format, out: Box<dyn Write + 'a>, fresh: bool) -> Box<dyn RecordWriter + 'a> {
    match format {
        Format::Table => Box::new(TableWriter::new(out)),
        Format::Jsonl => Box::new(JsonlWriter::new(out)),
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

/// A temporary file in the folder of `path`, to be renamed onto it once complete.
/// Its mode is that of a new file (0666 less the umask), not the owner-only mode of temporary
/// files.
pub(crate) fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    builder
        .prefix(".googlenet-output-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that `path` is never
/// seen half-written.
pub fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut temp = temp_beside(path)?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    temp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The longest error line written; decoders can quote whole header fields (the fuzzer found a
/// TIFF whose error listed thousands of bits-per-sample values).
const MAX_ERROR_CHARS: usize = 300;

/// What stands for the middle of an error line that was too long.
const ELISION: &str = " ... ";

/// An error and its causes on one line: `outer: inner: root cause`. A cause whose text its
/// outer error already quotes (as the image decoders' errors do) is not repeated. A line
/// longer than 300 characters loses causes from its middle, not its ends: the outer context
/// names the file, and the root cause, last, says what was wrong with it.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        if !parts.last().is_some_and(|outer| outer.contains(&text)) {
            parts.push(text);
        }
    }
    join_within(&parts, MAX_ERROR_CHARS)
}

/// `parts` joined with `: ` in at most `max` characters. If they are too long, the first and
/// the last part stay, with as many of their neighbours as fit, taken from each end in turn,
/// and an elision between; if even the first and last are too long, the joined line loses
/// its middle characters.
fn join_within(parts: &[String], max: usize) -> String {
    let fits = |line: &String| line.chars().count() <= max;
    let whole = parts.join(": ");
    if fits(&whole) {
        return whole;
    }
    let (mut head, mut tail) = (1, 1);
    let mut line = around(parts, head, tail);
    if parts.len() < 3 || !fits(&line) {
        return elide_middle(&whole, max);
    }
    while head + tail < parts.len() {
        let (more_head, more_tail) = if head == tail { (head + 1, tail) } else { (head, tail + 1) };
        let longer = around(parts, more_head, more_tail);
        if !fits(&longer) {
            break;
        }
        (head, tail, line) = (more_head, more_tail, longer);
    }
    line
}

/// The first `head` and the last `tail` of `parts`, each run joined with `: `, and an elision
/// between the runs.
fn around(parts: &[String], head: usize, tail: usize) -> String {
    let run = |run: Vec<&str>| run.join(": ");
    let first = run(parts.iter().take(head).map(String::as_str).collect());
    let last = run(parts.iter().skip(parts.len() - tail).map(String::as_str).collect());
    format!("{first}{ELISION}{last}")
}

/// `line` if it has at most `max` characters; otherwise its start and its end, at most `max`
/// characters in all with the elision between them.
fn elide_middle(line: &str, max: usize) -> String {
    let count = line.chars().count();
    if count <= max {
        return line.to_owned();
    }
    let kept = max.saturating_sub(ELISION.len());
    let head: String = line.chars().take(kept - kept / 2).collect();
    let tail: String = line.chars().skip(count - kept / 2).collect();
    format!("{}{ELISION}{}", head.trim_end(), tail.trim_start())
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

    #[test]
    fn one_line_joins_causes_once_each() {
        let root = anyhow::anyhow!("CRC error\nin IHDR");
        let quoting = root.context("Format error: CRC error in IHDR");
        assert_eq!(
            one_line(&quoting.context("cannot decode")),
            "cannot decode: Format error: CRC error in IHDR"
        );
        let plain = anyhow::anyhow!("No such file").context("cannot read");
        assert_eq!(one_line(&plain), "cannot read: No such file");
        let long = anyhow::anyhow!("bits per sample {:?}", [8u8; 2000]);
        let line = one_line(&long.context("cannot decode x.tif"));
        assert!(line.chars().count() <= MAX_ERROR_CHARS, "{line}");
        assert!(line.starts_with("cannot decode x.tif: bits per sample [8, 8"), "{line}");
        assert!(line.contains(" ... "), "{line}");
        assert!(line.ends_with("8, 8]"), "{line}");
    }

    #[test]
    fn long_lines_lose_middle_causes_first() {
        let parts: Vec<String> = [
            "cannot load model m.onnx",
            "Failed analyse for node #66 \"a3\" Ceil",
            "Infering facts",
            &format!("Applying rule {}", "inputs[0].rank + ".repeat(30)),
            "Unifying shapes 1,6 and 1,4",
            "Impossible to unify 6 with 4.",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            join_within(&parts, MAX_ERROR_CHARS),
            "cannot load model m.onnx: Failed analyse for node #66 \"a3\" Ceil: Infering facts \
             ... Unifying shapes 1,6 and 1,4: Impossible to unify 6 with 4."
        );
        assert_eq!(
            join_within(&parts, 70),
            "cannot load model m.onnx ... Impossible to unify 6 with 4."
        );
        assert_eq!(join_within(&parts, 40), "cannot load model ... o unify 6 with 4.");
        assert_eq!(join_within(&parts[..2], 500), parts[..2].join(": "));
    }

    #[test]
    fn long_single_causes_lose_middle_characters() {
        assert_eq!(elide_middle("short", 10), "short");
        assert_eq!(elide_middle("0123456789abcdef", 11), "012 ... def");
        assert_eq!(elide_middle("éééééééé", 7), "é ... é");
    }

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
