//! What a run gives back for each input: a [`Record`] of its predictions, its features, or
//! the one-line reason it has none; and writing files whole, so that none is seen half-written.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::classify::Prediction;

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

/// A temporary file in the folder of `path`, to be renamed onto it once complete.
/// Its mode is that of a new file (0666 less the umask), not the owner-only mode of temporary
/// files.
pub fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
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

    #[test]
    fn records_serialise_flat() {
        let prediction = Prediction {
            rank: 1,
            index: 285,
            synset: Some("n02124075".into()),
            name: "Egyptian cat".into(),
            probability: 0.5,
        };
        let ok = Record::new(Path::new("a.jpg"), Outcome::Predictions(vec![prediction]));
        let ok = serde_json::to_value(&ok).unwrap();
        assert_eq!(ok["path"], "a.jpg");
        assert_eq!(ok["predictions"][0]["name"], "Egyptian cat");
        assert_eq!(ok["predictions"][0]["index"], 285);
        let bad = Record::new(Path::new("b.jpg"), Outcome::Error("cannot decode: bad".into()));
        let bad = serde_json::to_value(&bad).unwrap();
        assert_eq!(bad, serde_json::json!({"path": "b.jpg", "error": "cannot decode: bad"}));
    }
}
