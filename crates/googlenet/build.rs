//! Embeds a default ONNX model into the library when one is available at build time.
//!
//! The first of these that exists is embedded: the file named by `GOOGLENET_EMBED_MODEL`,
//! `models/googlenet.onnx`, `../shared/models/googlenet-bvlc.onnx` (the last two from the
//! repository root). With none, the library is built without an embedded model and resolves
//! one at run time (`--model`, `GOOGLENET_MODEL`, or the cache written by `googlenet
//! fetch-model`).

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(embedded_model)");
    println!("cargo::rerun-if-env-changed=GOOGLENET_EMBED_MODEL");
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let model = match env::var_os("GOOGLENET_EMBED_MODEL") {
        Some(named) => {
            let named = PathBuf::from(named);
            assert!(named.is_file(), "GOOGLENET_EMBED_MODEL names {named:?}, which is not a file");
            Some(named)
        }
        None => [
            manifest_dir.join("../../models/googlenet.onnx"),
            manifest_dir.join("../../../shared/models/googlenet-bvlc.onnx"),
        ]
        .into_iter()
        .inspect(|candidate| watch(candidate))
        .find(|candidate| candidate.is_file()),
    };
    if let Some(model) = model {
        let model = model.canonicalize().expect("an existing file has a canonical path");
        println!("cargo::rerun-if-changed={}", model.display());
        println!("cargo::rustc-cfg=embedded_model");
        println!("cargo::rustc-env=GOOGLENET_EMBEDDED_MODEL={}", model.display());
    }
}

/// Reruns this script when `candidate` appears or changes, without watching missing paths
/// (cargo treats a missing path as always changed).
fn watch(candidate: &Path) {
    let existing = if candidate.exists() { Some(candidate) } else { candidate.parent() };
    if let Some(path) = existing.filter(|path| path.exists()) {
        println!("cargo::rerun-if-changed={}", path.display());
    }
}
