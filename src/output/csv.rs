//! CSV: a header, then one row per image and rank; an image that failed has one row with its
//! error and empty prediction fields. Fields are quoted as RFC 4180 says.

use std::io::{self, Write};

use super::{Outcome, Record, RecordWriter};

/// The header row.
pub const HEADER: &str = "path,rank,index,synset,name,probability,error";

/// Writes records as CSV rows, flushed per image.
pub struct CsvWriter<W> {
    out: W,
    header: bool,
}

impl<W: Write> CsvWriter<W> {
    /// A CSV writer over `out`; `header` says whether to start with the header row.
    pub fn new(out: W, header: bool) -> CsvWriter<W> {
        CsvWriter { out, header }
    }
}

impl<W: Write> RecordWriter for CsvWriter<W> {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        if std::mem::take(&mut self.header) {
            writeln!(self.out, "{HEADER}")?;
        }
        let path = field(&record.path);
        match &record.outcome {
            Outcome::Predictions(predictions) => {
                for p in predictions {
                    let synset = p.synset.as_deref().unwrap_or("");
                    let (rank, index, name) = (p.rank, p.index, field(&p.name));
                    writeln!(self.out, "{path},{rank},{index},{synset},{name},{},", p.probability)?;
                }
            }
            Outcome::Error(reason) => {
                writeln!(self.out, "{path},,,,,,{}", field(&reason.to_string()))?
            }
            // `embed` offers no CSV: its rows are features, not ranks.
            Outcome::Embedding(_) => {}
        }
        self.out.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.header) {
            writeln!(self.out, "{HEADER}")?;
        }
        self.out.flush()
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::written;

    #[test]
    fn rows_per_rank_and_quoted_errors() {
        let mut out = Vec::new();
        written(|out| Box::new(CsvWriter::new(out, true)), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "path,rank,index,synset,name,probability,error\n\
             a.jpg,1,285,n00000001,Egyptian cat,0.5,\n\
             a.jpg,2,281,n00000002,tabby,0.25,\n\
             b.jpg,,,,,,cannot decode: bad\n"
        );
    }

    #[test]
    fn fields_are_quoted_when_needed() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
