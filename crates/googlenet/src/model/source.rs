//! Where the model comes from: the first of the file the caller names, `GOOGLENET_MODEL`, the
//! model embedded at build time, and the cache written by `googlenet fetch-model`.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::files::{read_at_most, Size};

/// The environment variable that names a model file.
pub const MODEL_ENV: &str = "GOOGLENET_MODEL";

#[cfg(embedded_model)]
const EMBEDDED: Option<(&str, &[u8])> =
    Some((env!("GOOGLENET_EMBEDDED_MODEL"), include_bytes!(env!("GOOGLENET_EMBEDDED_MODEL"))));
#[cfg(not(embedded_model))]
const EMBEDDED: Option<(&str, &[u8])> = None;

/// The largest file a protocol buffer, and so an ONNX model, can be: 2 GiB less one byte.
const MAX_MODEL_BYTES: u64 = i32::MAX as u64;

/// How the model was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Named by the caller ([`crate::Builder::model`]).
    Given,
    /// The `GOOGLENET_MODEL` environment variable.
    Env,
    /// Embedded in the binary at build time.
    Embedded,
    /// The user cache written by `googlenet fetch-model`.
    Cache,
}

/// A resolved model: its origin and, unless embedded, its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSource {
    /// How it was chosen.
    pub origin: Origin,
    /// The model file, or for an embedded model the file it was built from.
    pub path: PathBuf,
}

impl ModelSource {
    /// Resolves the model: `given`, then `GOOGLENET_MODEL`, then the embedded model, then the
    /// fetch-model cache. Fails with instructions when there is none.
    pub fn resolve(given: Option<&Path>) -> Result<ModelSource> {
        let cache = cache_path();
        resolve_from(
            given,
            std::env::var_os(MODEL_ENV),
            EMBEDDED.map(|(path, _)| path),
            cache.as_deref(),
        )
        .with_context(|| no_model_message(cache.as_deref()))
    }

    /// The model's ONNX bytes.
    pub fn bytes(&self) -> Result<Cow<'static, [u8]>> {
        match (self.origin, EMBEDDED) {
            (Origin::Embedded, Some((_, bytes))) => Ok(Cow::Borrowed(bytes)),
            _ => read_at_most(&self.path, MAX_MODEL_BYTES)
                .with_context(|| format!("cannot read model {}", self.path.display()))?
                .map(Cow::Owned)
                .with_context(|| {
                    format!(
                        "model {} is larger than an ONNX file can be ({})",
                        self.path.display(),
                        Size(MAX_MODEL_BYTES)
                    )
                }),
        }
    }
}

/// The model file that `googlenet fetch-model` writes and resolution reads: `googlenet-12.onnx`
/// in the `googlenet` folder of the user cache (`$XDG_CACHE_HOME` or `~/.cache` on Linux).
pub fn cache_path() -> Option<PathBuf> {
    dirs::cache_dir().map(|dir| dir.join("googlenet").join("googlenet-12.onnx"))
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match self.origin {
            Origin::Given => write!(f, "{path}"),
            Origin::Env => write!(f, "{path} ({MODEL_ENV})"),
            Origin::Embedded => write!(f, "embedded in the binary (built from {path})"),
            Origin::Cache => write!(f, "{path} (fetch-model cache)"),
        }
    }
}

fn resolve_from(
    given: Option<&Path>,
    env: Option<OsString>,
    embedded: Option<&str>,
    cache: Option<&Path>,
) -> Option<ModelSource> {
    let source = |origin, path: PathBuf| ModelSource { origin, path };
    given
        .map(|path| source(Origin::Given, path.to_owned()))
        .or_else(|| env.filter(|v| !v.is_empty()).map(|v| source(Origin::Env, v.into())))
        .or_else(|| embedded.map(|path| source(Origin::Embedded, path.into())))
        .or_else(|| cache.filter(|path| path.is_file()).map(|p| source(Origin::Cache, p.into())))
}

fn no_model_message(cache: Option<&Path>) -> String {
    let cache = cache.map_or_else(|| "the user cache".to_owned(), |p| p.display().to_string());
    format!(
        "no model: this build embeds none and {cache} holds none; `googlenet fetch-model` \
         downloads GoogLeNet there (the ONNX model zoo's googlenet-12.onnx), or name an ONNX \
         file (the `model` setting, or {MODEL_ENV})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_wins() {
        let dir = tempfile::tempdir().unwrap();
        let cached = dir.path().join("googlenet-12.onnx");
        std::fs::write(&cached, b"x").unwrap();
        let given = Path::new("given.onnx");
        let resolve = |given, env: Option<&str>, embedded| {
            resolve_from(given, env.map(OsString::from), embedded, Some(&cached)).map(|s| s.origin)
        };
        assert_eq!(resolve(Some(given), Some("env.onnx"), Some("e.onnx")), Some(Origin::Given));
        assert_eq!(resolve(None, Some("env.onnx"), Some("e.onnx")), Some(Origin::Env));
        assert_eq!(resolve(None, Some(""), Some("e.onnx")), Some(Origin::Embedded));
        assert_eq!(resolve(None, None, None), Some(Origin::Cache));
    }

    #[test]
    fn a_missing_cache_file_is_no_model() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("googlenet-12.onnx");
        assert_eq!(resolve_from(None, None, None, Some(&missing)), None);
        assert!(no_model_message(Some(&missing)).contains("googlenet fetch-model"));
    }
}
