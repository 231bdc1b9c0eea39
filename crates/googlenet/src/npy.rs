//! NumPy's `.npy` format, for feature matrices: an `N x D` array of little-endian `float32` in
//! C order, its [`header`] for a writer that streams rows, and [`read`] to read one back whole.
//!
//! The format (numpy.lib.format): the magic `\x93NUMPY`, the version (1.0), the header's length
//! as a little-endian `u16`, and the header, a Python dict literal padded with spaces to a
//! multiple of 64 bytes with the magic and ending in `\n`; then the data.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use crate::files::{read_at_most, Size};

/// The magic string that starts every `.npy` file.
const MAGIC: &[u8] = b"\x93NUMPY";

/// The length of the header [`header`] writes, magic included: room for any two 20-digit
/// dimensions, so that the final shape can be written over the first one in place.
pub const HEADER_BYTES: usize = 128;

/// The largest `.npy` file read: 16 GiB, four million 1024-value rows.
pub(crate) const MAX_NPY_BYTES: u64 = 16 << 30;

/// The header of an `rows x width` array of little-endian float32 in C order, padded to
/// [`HEADER_BYTES`]: a writer streaming rows writes it first with a shape of 0 x 0, and over
/// that once it knows the shape.
pub fn header(rows: u64, width: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {width}), }}");
    let len = HEADER_BYTES - MAGIC.len() - 4;
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&[1, 0]);
    header.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_le_bytes());
    header.extend_from_slice(format!("{dict:<width$}\n", width = len - 1).as_bytes());
    header
}

/// The text file that names the rows of the array at `path`: `feats.npy` → `feats.paths.txt`.
pub fn names_path(path: &Path) -> PathBuf {
    path.with_extension("paths.txt")
}

/// An `N x D` float32 array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Rows.
    pub rows: usize,
    /// Values per row.
    pub width: usize,
    /// The values, row after row.
    pub data: Vec<f32>,
}

impl Matrix {
    /// Row `index`.
    pub fn row(&self, index: usize) -> &[f32] {
        self.data.get(index * self.width..(index + 1) * self.width).unwrap_or_default()
    }
}

/// Reads a 2-D little-endian float32 array in C order, as `numpy.save` and `googlenet embed`
/// write it.
pub fn read(path: &Path) -> crate::Result<Matrix> {
    read_file(path).map_err(|err| crate::Error::file(&err))
}

/// [`read`], failing with the causes.
fn read_file(path: &Path) -> Result<Matrix> {
    let name = path.display();
    let bytes = read_at_most(path, MAX_NPY_BYTES)
        .with_context(|| format!("cannot read {name}"))?
        .with_context(|| format!("{name} is over {}", Size(MAX_NPY_BYTES)))?;
    parse(&bytes).with_context(|| format!("{name} is not an array that `googlenet embed` writes"))
}

/// [`read`] for the bytes of a file.
fn parse(bytes: &[u8]) -> Result<Matrix> {
    ensure!(bytes.starts_with(MAGIC), "no .npy magic");
    let (len_bytes, start) = match bytes.get(MAGIC.len()) {
        Some(1) => (2, MAGIC.len() + 4),
        Some(2 | 3) => (4, MAGIC.len() + 6),
        _ => bail!("an unknown .npy version"),
    };
    let len = bytes
        .get(MAGIC.len() + 2..MAGIC.len() + 2 + len_bytes)
        .map(|b| b.iter().rev().fold(0usize, |n, &byte| n << 8 | usize::from(byte)))
        .context("cut short")?;
    let header = bytes.get(start..start + len).context("cut short")?;
    let header = std::str::from_utf8(header).context("a header that is not text")?;
    let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
    ensure!(compact.contains("'descr':'<f4'"), "not float32: {}", header.trim());
    ensure!(compact.contains("'fortran_order':False"), "not in C order");
    let shape = compact
        .split("'shape':(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .context("no shape")?;
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>().context("a shape that is not whole numbers"))
        .collect::<Result<_>>()?;
    let &[rows, width] = dims.as_slice() else { bail!("shape ({shape}), not 2-D") };
    let data = bytes.get(start + len..).unwrap_or_default();
    let expected = rows.checked_mul(width).and_then(|n| n.checked_mul(4));
    ensure!(expected == Some(data.len()), "shape ({shape}) but {} bytes of data", data.len());
    let data = data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap_or_default()));
    Ok(Matrix { rows, width, data: data.collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_a_multiple_of_64_and_end_in_a_newline() {
        let header = header(u64::MAX, usize::MAX);
        assert_eq!(header.len(), HEADER_BYTES);
        assert_eq!(header.last(), Some(&b'\n'));
        assert!(String::from_utf8_lossy(&header).contains("'shape': (18446744073709551615, "));
    }

    #[test]
    fn arrays_are_parsed_from_their_header_and_data() {
        let mut bytes = header(3, 2);
        let values = [1.0f32, -2.5, 0.0, 3.25, 1e-8, 7.0];
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        assert_eq!(parse(&bytes).unwrap(), Matrix { rows: 3, width: 2, data: values.to_vec() });
        bytes.pop();
        assert!(parse(&bytes).unwrap_err().to_string().contains("but 23 bytes"));
        assert!(parse(b"\x93NUMPY\x01\x00\xff\xff{").is_err());
        assert!(parse(b"PK\x03\x04").unwrap_err().to_string().contains("magic"));
    }
}
