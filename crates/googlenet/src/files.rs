//! Reading whole files no larger than the caller can use: a huge file named by mistake, or a
//! device such as `/dev/zero`, would otherwise fill the memory before anything could refuse it.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

pub use googlenet_kernels::Size;

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
