//! JSON Lines: one compact record per line, flushed as written, so that a killed run keeps every
//! finished line.

use std::io::{self, Write};

use super::{Record, RecordWriter};

/// Writes each record as one line of JSON.
pub struct JsonlWriter<W> {
    out: W,
}

impl<W: Write> JsonlWriter<W> {
    /// A JSON Lines writer over `out`.
    pub fn new(out: W) -> JsonlWriter<W> {
        JsonlWriter { out }
    }
}

impl<W: Write> RecordWriter for JsonlWriter<W> {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.out.flush()
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
        written(|out| Box::new(JsonlWriter::new(out)), &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(r#"{"path":"a.jpg","predictions":[{"rank":1,"index":285,"#));
        assert_eq!(lines[1], r#"{"path":"b.jpg","error":"cannot decode: bad"}"#);
    }
}
