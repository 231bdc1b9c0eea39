//! Files written whole: through a temporary file beside the destination and a rename, so that
//! no output is ever seen half-written, the `.npy` arrays of `embed` among them.

use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use googlenet::npy;

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

/// Writes an `N x D` float32 array one row at a time, with the name of each row in a text file
/// beside it (`feats.npy` and `feats.paths.txt`). Both are written to temporary files that
/// [`NpyWriter::finish`] renames into place, so neither is ever seen half-written.
pub struct NpyWriter {
    data: BufWriter<tempfile::NamedTempFile>,
    names: BufWriter<tempfile::NamedTempFile>,
    path: PathBuf,
    rows: u64,
    width: Option<usize>,
}

impl NpyWriter {
    /// A writer of the array `path`, and of its row names in [`npy::names_path`]`(path)`.
    pub fn create(path: &Path) -> Result<NpyWriter> {
        let temp = || temp_beside(path);
        let mut data = BufWriter::new(temp()?);
        data.write_all(&npy::header(0, 0))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(NpyWriter {
            data,
            names: BufWriter::new(temp()?),
            path: path.to_owned(),
            rows: 0,
            width: None,
        })
    }

    /// Appends one row and its name, which must not hold a line break. Every row must have
    /// the first one's length.
    pub fn row(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let width = *self.width.get_or_insert(values.len());
        ensure!(values.len() == width, "a row of {} values in an array of {width}", values.len());
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.data
            .write_all(&bytes)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        writeln!(self.names, "{name}")
            .with_context(|| format!("cannot write {}", npy::names_path(&self.path).display()))?;
        self.rows += 1;
        Ok(())
    }

    /// Writes the final shape into the header and renames both files into place.
    pub fn finish(self) -> Result<()> {
        let name = self.path.display();
        let mut data = self.data.into_inner().map_err(|e| e.into_error())?;
        data.seek(SeekFrom::Start(0))?;
        data.write_all(&npy::header(self.rows, self.width.unwrap_or(0)))?;
        data.as_file().sync_all().with_context(|| format!("cannot write {name}"))?;
        let names = self.names.into_inner().map_err(|e| e.into_error())?;
        names.persist(npy::names_path(&self.path)).context("cannot write the row names")?;
        data.persist(&self.path).with_context(|| format!("cannot write {name}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use googlenet::npy::{read, Matrix};

    #[test]
    fn arrays_are_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feats.npy");
        let matrix = Matrix { rows: 3, width: 2, data: vec![1.0, -2.5, 0.0, 3.25, 1e-8, 7.0] };
        let names: Vec<String> = ["a.jpg", "b c.png", "https://x/y.jpg"].map(String::from).into();
        let mut writer = NpyWriter::create(&path).unwrap();
        for (index, name) in names.iter().enumerate() {
            writer.row(name, matrix.row(index)).unwrap();
        }
        writer.finish().unwrap();
        assert_eq!(read(&path).unwrap(), matrix);
        let listed = std::fs::read_to_string(npy::names_path(&path)).unwrap();
        assert_eq!(listed.lines().collect::<Vec<_>>(), names);
    }

    #[test]
    fn rows_of_another_length_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = NpyWriter::create(&dir.path().join("x.npy")).unwrap();
        writer.row("a", &[1.0, 2.0]).unwrap();
        assert!(writer.row("b", &[1.0]).is_err());
    }
}
