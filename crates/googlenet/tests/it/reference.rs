//! Paths into `../shared/` beside the repository root and the reference tensors there, for
//! the library's integration tests and (through `#[path]`) the binary's.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tract_onnx::prelude::tract_ndarray::Array3;

/// The repository's root, canonical (a browser's driver takes only canonical paths).
pub fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or_else(|| panic!("no workspace root above {}", manifest.display()));
    root.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", root.display()))
}

/// `../shared/` beside the repository root.
pub fn shared() -> PathBuf {
    root().join("../shared")
}

/// The shared BVLC GoogLeNet.
pub fn shared_model() -> PathBuf {
    shared().join("models/googlenet-bvlc.onnx")
}

/// The shared labelled ImageNet photos, sorted by name.
pub fn samples() -> Vec<PathBuf> {
    let dir = shared().join("data/imagenet-samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

/// A committed sample photo.
pub fn asset(name: &str) -> PathBuf {
    root().join("assets").join(name)
}

/// Reads a raw little-endian float32 file.
pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// The reference stems: `<stem>.input.f32` with its `<stem>.output.f32`.
pub fn reference_stems() -> Vec<PathBuf> {
    let dir = shared().join("data/reference");
    let mut stems: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| p.to_str()?.strip_suffix(".input.f32").map(PathBuf::from))
        .collect();
    stems.sort();
    assert_eq!(stems.len(), 4, "four reference tensors in {}", dir.display());
    stems
}

pub fn with_suffix(stem: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", stem.display()))
}

/// The input tensor of a reference stem.
pub fn reference_input(stem: &Path) -> Array3<f32> {
    Array3::from_shape_vec((3, 224, 224), read_f32(&with_suffix(stem, ".input.f32"))).unwrap()
}
