//! JSON Lines: one compact record per line, flushed as written, so that a killed run keeps every
//! finished line. With `--shapes`, the first line is `{"shapes": [...]}` instead, before any
//! record.

use std::io::{self, Write};

use googlenet::LayerShape;
use serde::Serialize;

use super::{Record, RecordWriter};

/// Writes each record as one line of JSON.
pub struct JsonlWriter<W> {
    out: W,
    /// Whether `out` starts empty: the shapes' line is written only at the start of a file.
    fresh: bool,
}

impl<W: Write> JsonlWriter<W> {
    /// A JSON Lines writer over `out`, which starts empty when `fresh`.
    pub fn new(out: W, fresh: bool) -> JsonlWriter<W> {
        JsonlWriter { out, fresh }
    }

    /// Writes `value` as one line and flushes it.
    fn line(&mut self, value: &impl Serialize) -> io::Result<()> {
        let mut line = serde_json::to_vec(value)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.out.flush()
    }
}

/// The line that holds the run's layer shapes.
#[derive(Serialize)]
struct Shapes<'a> {
    shapes: &'a [LayerShape],
}

impl<W: Write> RecordWriter for JsonlWriter<W> {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        self.line(record)
    }

    fn shapes(&mut self, shapes: &[LayerShape]) -> io::Result<()> {
        match self.fresh {
            true => self.line(&Shapes { shapes }),
            false => Ok(()),
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::written;

    #[test]
    fn one_complete_line_per_record() {
        let mut out = Vec::new();
        written(|out| Box::new(JsonlWriter::new(out, true)), &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(r#"{"path":"a.jpg","predictions":[{"rank":1,"index":285,"#));
        assert_eq!(lines[1], r#"{"path":"b.jpg","error":"cannot decode: bad"}"#);
    }

    #[test]
    fn shapes_come_first_on_a_line_of_their_own_once() {
        let shape =
            LayerShape { name: "conv1".into(), op: "Conv".into(), shape: vec![64, 112, 112] };
        let mut out = Vec::new();
        let mut writer = JsonlWriter::new(&mut out, true);
        writer.shapes(std::slice::from_ref(&shape)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"shapes\":[{\"name\":\"conv1\",\"op\":\"Conv\",\"shape\":[64,112,112]}]}\n"
        );
        let mut appended = Vec::new();
        JsonlWriter::new(&mut appended, false).shapes(&[shape]).unwrap();
        assert!(appended.is_empty(), "a resumed file has its shapes already");
    }
}
