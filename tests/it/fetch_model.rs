//! `googlenet fetch-model` against a real HTTP server on 127.0.0.1: a good file, a wrong
//! checksum, a truncated body, a 404 and a server that never answers. Nothing half-written
//! may ever reach the cache.

use std::path::{Path, PathBuf};

use crate::common::http::{self, Reply};
use crate::common::{googlenet, shared_model};
use predicates::prelude::*;

/// SHA-256 of the shared model (from `../shared/README.md`).
const SHARED_SHA256: &str = "6044e265ea48312f0eee639cf4649ce1c3154fe9c5698502a79ef258ab23c339";

/// Serves `/good` (the body), `/truncated` (announces the body's length, sends half, closes)
/// and 404 for anything else. Returns the base URL.
fn serve(body: Vec<u8>) -> String {
    http::serve(move |_, path| match path {
        "/good" => Reply::ok("application/octet-stream", body.clone()),
        "/truncated" => Reply::Body {
            status: "200 OK",
            content_type: "application/octet-stream",
            body: body.clone(),
            sent: Some(body.len() / 2),
        },
        "/silent" => Reply::Silence,
        _ => Reply::not_found(),
    })
}

/// A fresh cache home and the model path that fetch-model writes in it.
fn cache_home() -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().unwrap();
    let model = home.path().join("googlenet/googlenet-12.onnx");
    (home, model)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .flat_map(|e| if e.path().is_dir() { files_under(&e.path()) } else { vec![e.path()] })
        .collect()
}

fn fetch(home: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    googlenet().arg("fetch-model").args(args).env("XDG_CACHE_HOME", home).assert()
}

#[test]
fn a_good_download_is_verified_installed_and_then_kept() {
    let model_bytes = std::fs::read(shared_model()).unwrap();
    let base = serve(model_bytes.clone());
    let (home, installed) = cache_home();
    let url = format!("{base}/good");
    fetch(home.path(), &["--url", &url, "--sha256", SHARED_SHA256])
        .success()
        .stderr(predicate::str::contains("installed"));
    assert_eq!(std::fs::read(&installed).unwrap(), model_bytes);
    assert_eq!(files_under(home.path()), vec![installed.clone()]);
    fetch(home.path(), &["--url", &url, "--sha256", SHARED_SHA256])
        .success()
        .stderr(predicate::str::contains("already installed and verified"));
}

#[test]
fn wrong_checksum_truncation_and_404_leave_the_cache_empty() {
    let base = serve(std::fs::read(shared_model()).unwrap());
    let wrong_sha = "0".repeat(64);
    let cases = [
        (format!("{base}/good"), wrong_sha.as_str(), "SHA-256 mismatch"),
        (format!("{base}/truncated"), SHARED_SHA256, "transfer failed after"),
        (format!("{base}/missing"), SHARED_SHA256, "404"),
    ];
    for (url, sha, message) in cases {
        let (home, _) = cache_home();
        let assert = fetch(home.path(), &["--url", &url, "--sha256", sha]).code(1);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(stderr.contains(message), "{url}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{url}: {stderr}");
        assert_eq!(files_under(home.path()), Vec::<PathBuf>::new(), "{url} left files behind");
    }
}

#[test]
fn a_failed_download_keeps_the_installed_model() {
    let model_bytes = std::fs::read(shared_model()).unwrap();
    let base = serve(model_bytes.clone());
    let (home, installed) = cache_home();
    let url = format!("{base}/truncated");
    fetch(home.path(), &["--from", shared_model().to_str().unwrap(), "--sha256", SHARED_SHA256])
        .success();
    fetch(home.path(), &["--force", "--url", &url, "--sha256", SHARED_SHA256]).code(1);
    assert_eq!(std::fs::read(&installed).unwrap(), model_bytes);
    assert_eq!(files_under(home.path()), vec![installed]);
}

#[test]
fn a_local_file_is_checked_against_the_zoo_model_by_default() {
    let (home, _) = cache_home();
    fetch(home.path(), &["--from", shared_model().to_str().unwrap()])
        .code(1)
        .stderr(predicate::str::contains("got 28017718 bytes, expected 28021836"));
    assert_eq!(files_under(home.path()), Vec::<PathBuf>::new());
}

#[test]
fn a_server_that_never_answers_is_given_up_on_in_time() {
    let base = serve(Vec::new());
    let (home, _) = cache_home();
    let url = format!("{base}/silent");
    let started = std::time::Instant::now();
    let assert = fetch(home.path(), &["--url", &url, "--download-timeout", "2"]).code(1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{stderr}");
    assert!(stderr.contains(&format!("cannot download {url}: timed out")), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(files_under(home.path()), Vec::<PathBuf>::new());
}
