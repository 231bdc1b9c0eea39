//! Aligned text for people: the image path, then one line per ranked class.

use std::io::{self, Write};

use googlenet::LayerShape;

use super::{Outcome, Record, RecordWriter};

/// Writes each classified image as a block, and the run's layer shapes (if given) at the end;
/// errors are left to the diagnostics on stderr.
pub struct TableWriter<W> {
    out: W,
    shapes: Vec<LayerShape>,
}

impl<W: Write> TableWriter<W> {
    /// A table writer over `out`.
    pub fn new(out: W) -> TableWriter<W> {
        TableWriter { out, shapes: Vec::new() }
    }
}

impl<W: Write> RecordWriter for TableWriter<W> {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        let Outcome::Predictions(predictions) = &record.outcome else { return Ok(()) };
        writeln!(self.out, "{}", record.path)?;
        for p in predictions {
            let synset = p.synset.as_deref().unwrap_or("-");
            let percent = p.probability * 100.0;
            writeln!(self.out, "  {:>2}  {percent:>6.2}%  {synset:<9}  {}", p.rank, p.name)?;
        }
        self.out.flush()
    }

    fn shapes(&mut self, shapes: &[LayerShape]) -> io::Result<()> {
        self.shapes = shapes.to_vec();
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if !self.shapes.is_empty() {
            let shapes = &self.shapes;
            let width = shapes.iter().map(|layer| layer.name.chars().count()).max().unwrap_or(0);
            writeln!(self.out, "layer output shapes (per image)")?;
            for layer in shapes {
                let shape: Vec<String> = layer.shape.iter().map(usize::to_string).collect();
                writeln!(
                    self.out,
                    "  {:<width$}  {:<12}  {}",
                    layer.name,
                    layer.op,
                    shape.join("x")
                )?;
            }
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::written;

    #[test]
    fn blocks_are_aligned_and_errors_skipped() {
        let mut out = Vec::new();
        written(|out| Box::new(TableWriter::new(out)), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "a.jpg\n   1   50.00%  n00000001  Egyptian cat\n   2   25.00%  n00000002  tabby\n"
        );
    }
}
