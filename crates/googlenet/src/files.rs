//! Reading whole files no larger than the caller can use: a huge file named by mistake, or a
//! device such as `/dev/zero`, would otherwise fill the memory before anything could refuse it.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// A size in bytes as messages word it: in GiB when a whole number of them, else to the nearest
/// MiB from 1 MiB up, to the nearest KiB from 1 KiB up, and in bytes below that (`64 MiB`,
/// `1324 MiB`, `2 GiB`, `512 KiB`, `1000 bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nearest = |shift: u32| self.0.saturating_add(1 << (shift - 1)) >> shift;
        let (kib, mib) = (nearest(10), nearest(20));
        match self.0 {
            bytes if bytes < 1 << 10 => write!(f, "{bytes} bytes"),
            bytes if bytes < 1 << 20 => write!(f, "{kib} KiB"),
            _ if mib >= 1024 && mib.is_multiple_of(1024) => write!(f, "{} GiB", mib / 1024),
            _ => write!(f, "{mib} MiB"),
        }
    }
}

/// The bytes of the file at `path`, or `None` when it holds more than `limit` bytes: refused
/// by its size when it is a regular file, and never read past `limit` otherwise (a pipe, a
/// device).
pub fn read_at_most(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let file = File::open(path)?;
    let metadata = file.metadata()?;
    let size = if metadata.is_file() { metadata.len() } else { 0 };
    if size > limit {
        return Ok(None);
    }
    read_up_to(file, limit, size)
}

/// All that `reader` gives, or `None` once it gives more than `limit` bytes; `expected` bytes
/// are reserved up front.
pub fn read_up_to(reader: impl Read, limit: u64, expected: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::with_capacity(usize::try_from(expected.min(limit)).unwrap_or(0));
    reader.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_gib_mib_kib_or_bytes() {
        assert_eq!(Size(64 << 20).to_string(), "64 MiB");
        assert_eq!(Size((1 << 30) + (300 << 20)).to_string(), "1324 MiB");
        assert_eq!(Size(i32::MAX as u64).to_string(), "2 GiB");
        assert_eq!(Size(4 << 30).to_string(), "4 GiB");
        assert_eq!(Size(1 << 20).to_string(), "1 MiB");
        assert_eq!(Size(1 << 10).to_string(), "1 KiB");
        assert_eq!(Size(1000).to_string(), "1000 bytes");
        assert_eq!(Size(0).to_string(), "0 bytes");
    }

    #[test]
    fn files_over_the_limit_are_refused_by_size_or_after_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        File::create(&path).unwrap().set_len(1 << 30).unwrap();
        assert!(read_at_most(&path, (1 << 30) - 1).unwrap().is_none(), "refused by its size");
        assert!(read_at_most(Path::new("/dev/zero"), 1000).unwrap().is_none(), "read 1001 bytes");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_at_most(&path, 5).unwrap().unwrap(), b"12345");
        assert!(read_at_most(&path, 4).unwrap().is_none());
        assert!(read_at_most(dir.path(), 5).is_err(), "a directory cannot be read");
    }
}
