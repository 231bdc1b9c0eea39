//! The library's one error type: each variant a kind of failure that a caller may handle in
//! its own way, each message one line that names the setting or the input it concerns.

use serde::{Serialize, Serializer};

/// What went wrong. A record's error ([`crate::Outcome::Error`]) is one of the per-input kinds
/// ([`Error::Image`], [`Error::Download`], or [`Error::Model`] when the network failed on it);
/// loading and settings fail with the others. Messages are one line, at most about 300
/// characters, and name settings by their builder names (`top_k`, `labels`, `max_pixels`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An image could not be read, decoded or preprocessed.
    #[error("{0}")]
    Image(String),
    /// An image named by URL could not be downloaded.
    #[error("{0}")]
    Download(String),
    /// The model could not be found, read or loaded, or cannot do what was asked of it.
    #[error("{0}")]
    Model(String),
    /// A setting is out of range, or does not fit the model.
    #[error("{setting} {problem}")]
    Setting {
        /// The setting's name as the builder spells it, such as `top_k`.
        setting: &'static str,
        /// What is wrong with it, worded to follow the name ("must be at least 1").
        problem: String,
    },
    /// A file other than an image (a label list, a list of paths, a features file) could not
    /// be read or written.
    #[error("{0}")]
    File(String),
    /// The work was stopped by its [`crate::Cancel`].
    #[error("cancelled")]
    Cancelled,
}

/// A result whose error is the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Setting`] for `setting`.
    pub(crate) fn setting(setting: &'static str, problem: impl Into<String>) -> Error {
        Error::Setting { setting, problem: problem.into() }
    }

    /// An [`Error::Image`] with `err`'s causes on one line.
    pub(crate) fn image(err: &anyhow::Error) -> Error {
        Error::Image(one_line(err.as_ref()))
    }

    /// An [`Error::Model`] with `err`'s causes on one line.
    pub(crate) fn model(err: &anyhow::Error) -> Error {
        Error::Model(one_line(err.as_ref()))
    }

    /// An [`Error::File`] with `err`'s causes on one line.
    pub(crate) fn file(err: &anyhow::Error) -> Error {
        Error::File(one_line(err.as_ref()))
    }
}

/// As its message: a record's `error` field.
impl Serialize for Error {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The longest error message kept, in characters.
const MAX_ERROR_CHARS: usize = 300;

/// What stands for the causes left out of a long message.
const ELISION: &str = " ... ";

/// An error and its causes ([`std::error::Error::source`]) on one line, as every record's error
/// is worded: `outer: inner: root cause`, white space folded. A cause whose text its outer
/// error already quotes (as the image decoders' errors do) is not repeated. A line longer than
/// 300 characters loses causes from its middle, not its ends: the outer context names the
/// file, and the root cause, last, says what was wrong with it.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let causes = std::iter::successors(Some(err), |cause| cause.source());
    for cause in causes {
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
            one_line(quoting.context("cannot decode").as_ref()),
            "cannot decode: Format error: CRC error in IHDR"
        );
        let plain = anyhow::anyhow!("No such file").context("cannot read");
        assert_eq!(one_line(plain.as_ref()), "cannot read: No such file");
        let long = anyhow::anyhow!("bits per sample {:?}", [8u8; 2000]);
        let line = one_line(long.context("cannot decode x.tif").as_ref());
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
    fn settings_are_named_as_the_builder_names_them() {
        let err = Error::setting("top_k", "must be at least 1");
        assert_eq!(err.to_string(), "top_k must be at least 1");
        assert_eq!(serde_json::to_value(&err).unwrap(), "top_k must be at least 1");
    }
}
