//! One JSON document for the whole run: `{"results": [record, ...]}`, written at the end.

use std::io::{self, Write};

use googlenet::LayerShape;
use serde::Serialize;

use super::{Record, RecordWriter};

/// The document's schema, which `googlenet serve` answers too.
#[derive(Debug, Serialize)]
pub struct Document<'a> {
    /// Every record, in input order.
    pub results: &'a [Record],
    /// The layers' output shapes, with `classify --shapes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shapes: Option<&'a [LayerShape]>,
}

/// Collects records and writes them as one pretty-printed document when finished.
pub struct JsonWriter<W> {
    out: W,
    records: Vec<Record>,
    shapes: Option<Vec<LayerShape>>,
}

impl<W: Write> JsonWriter<W> {
    /// A JSON writer over `out`.
    pub fn new(out: W) -> JsonWriter<W> {
        JsonWriter { out, records: Vec::new(), shapes: None }
    }
}

impl<W: Write> RecordWriter for JsonWriter<W> {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        self.records.push(record.clone());
        Ok(())
    }

    fn shapes(&mut self, shapes: &[LayerShape]) -> io::Result<()> {
        self.shapes = Some(shapes.to_vec());
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        let document = Document { results: &self.records, shapes: self.shapes.as_deref() };
        serde_json::to_writer_pretty(&mut self.out, &document)?;
        writeln!(self.out)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::written;

    #[test]
    fn the_document_holds_every_record_in_order() {
        let mut out = Vec::new();
        written(|out| Box::new(JsonWriter::new(out)), &mut out);
        let document: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let results = document["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["predictions"][0]["probability"], 0.5);
        assert_eq!(results[1]["error"], "cannot decode: bad");
    }
}
