//! `googlenet fetch-model`: download or copy a model into the user cache, verified by size and
//! SHA-256, written through a temporary file in the same folder and renamed into place, so the
//! cache never holds a half-written model.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use googlenet::{redact_url as redact, Downloader};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// The ONNX model zoo's GoogLeNet (BVLC, opset 12).
pub const ZOO_URL: &str = "https://github.com/onnx/models/raw/main/validated/vision/classification/inception_and_googlenet/googlenet/model/googlenet-12.onnx";
/// Size in bytes of [`ZOO_URL`].
pub const ZOO_SIZE: u64 = 28_021_836;
/// SHA-256 of [`ZOO_URL`].
pub const ZOO_SHA256: &str = "c99c507058eaf41de8723408fdda7db8325cb57f0a89f2ee07a716d6e963e14e";
/// The largest download accepted when the expected size is not known.
pub const MAX_DOWNLOAD: u64 = 2 << 30;

/// What the installed file must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
}

impl Expected {
    /// The model zoo's googlenet-12.onnx.
    pub fn zoo() -> Expected {
        Expected { sha256: ZOO_SHA256.to_owned(), size: Some(ZOO_SIZE) }
    }

    /// A file known by its SHA-256 only.
    pub fn sha256(hex: &str) -> Result<Expected> {
        let hex = hex.trim().to_ascii_lowercase();
        ensure!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "`{hex}` is not a SHA-256 (64 hex digits)"
        );
        Ok(Expected { sha256: hex, size: None })
    }

    /// Whether the file at `path` is already the expected one.
    pub fn matches_file(&self, path: &Path) -> bool {
        let Ok(mut file) = File::open(path) else { return false };
        let mut hasher = Sha256::new();
        io::copy(&mut file, &mut hasher).is_ok() && hex(&hasher.finalize()) == self.sha256
    }
}

/// Downloads `url` with `downloader` (and so its timeouts) into `dest`, showing progress on
/// stderr when it is a terminal.
pub fn download(
    downloader: &Downloader,
    url: &str,
    expected: &Expected,
    dest: &Path,
) -> Result<()> {
    let limit = expected.size.unwrap_or(MAX_DOWNLOAD);
    let shown = redact(url);
    let (body, announced) =
        downloader.open(url, limit).with_context(|| format!("cannot download {shown}"))?;
    if let (Some(announced), Some(size)) = (announced, expected.size) {
        ensure!(announced == size, "{shown} announces {announced} bytes, expected {size}");
    }
    install(body, announced.or(expected.size), expected, dest)
        .with_context(|| format!("cannot download {shown}"))
}

/// Copies the local file `from` into `dest`, verified the same way as a download.
pub fn copy(from: &Path, expected: &Expected, dest: &Path) -> Result<()> {
    let file = File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let len = file.metadata().ok().map(|m| m.len());
    install(file, len, expected, dest).with_context(|| format!("cannot install {}", from.display()))
}

/// Streams `reader` into a temporary file beside `dest`, checks it, and renames it into place.
/// On any failure the temporary file is removed and `dest` is left as it was.
fn install(
    mut reader: impl Read,
    len: Option<u64>,
    expected: &Expected,
    dest: &Path,
) -> Result<()> {
    let dir = dest.parent().context("the destination has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".googlenet-download-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let progress = progress_bar(len);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    let mut written: u64 = 0;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context(format!("transfer failed after {written} bytes")),
        };
        let chunk = buffer.get(..n).context("the reader claimed more bytes than it was given")?;
        hasher.update(chunk);
        temp.write_all(chunk).context("cannot write the temporary file")?;
        written += n as u64;
        progress.set_position(written);
    }
    progress.finish_and_clear();
    if let Some(size) = expected.size {
        ensure!(written == size, "got {written} bytes, expected {size}");
    }
    let actual = hex(&hasher.finalize());
    if actual != expected.sha256 {
        bail!("SHA-256 mismatch: got {actual}, expected {}", expected.sha256);
    }
    temp.as_file().sync_all().context("cannot flush the temporary file")?;
    temp.persist(dest).with_context(|| format!("cannot rename into {}", dest.display()))?;
    Ok(())
}

fn progress_bar(len: Option<u64>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(len, indicatif::ProgressDrawTarget::stderr());
    let template = "{bytes:>10} / {total_bytes} [{bar:30}] {bytes_per_sec} ETA {eta}";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha_of(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    #[test]
    fn sha256_expectations_are_validated() {
        assert!(Expected::sha256("abc").is_err());
        let upper = "C99C507058EAF41DE8723408FDDA7DB8325CB57F0A89F2EE07A716D6E963E14E";
        assert_eq!(Expected::sha256(upper).unwrap().sha256, ZOO_SHA256);
    }

    #[test]
    fn install_verifies_and_renames() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/model.onnx");
        let expected = Expected { sha256: sha_of(b"model"), size: Some(5) };
        install(&b"model"[..], Some(5), &expected, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"model");
        assert!(expected.matches_file(&dest));
    }

    #[test]
    fn failed_installs_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("model.onnx");
        let short = Expected { sha256: sha_of(b"model"), size: Some(6) };
        assert!(install(&b"model"[..], None, &short, &dest).is_err());
        let wrong = Expected { sha256: sha_of(b"other"), size: None };
        let err = install(&b"model"[..], None, &wrong, &dest).unwrap_err();
        assert!(err.to_string().contains("SHA-256 mismatch"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
