//! `googlenet fetch-model` against a real HTTP server on 127.0.0.1: a good file, a wrong
//! checksum, a truncated body and a 404. Nothing half-written may ever reach the cache.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use common::{googlenet, shared_model};
use predicates::prelude::*;

/// SHA-256 of the shared model (from `../shared/README.md`).
const SHARED_SHA256: &str = "6044e265ea48312f0eee639cf4649ce1c3154fe9c5698502a79ef258ab23c339";

/// Serves `/good` (the body), `/truncated` (announces the body's length, sends half, closes)
/// and 404 for anything else, until the test process ends. Returns the base URL.
fn serve(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let body = Arc::new(body);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let body = Arc::clone(&body);
            thread::spawn(move || respond(stream, &body));
        }
    });
    base
}

fn respond(mut stream: TcpStream, body: &[u8]) {
    let mut request_line = String::new();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    reader.read_line(&mut request_line).unwrap();
    let mut header = String::new();
    while reader.read_line(&mut header).unwrap_or(0) > 2 {
        header.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let head = |status: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    let _ = match path {
        "/good" => stream
            .write_all(head("200 OK", body.len()).as_bytes())
            .and_then(|()| stream.write_all(body)),
        "/truncated" => stream
            .write_all(head("200 OK", body.len()).as_bytes())
            .and_then(|()| stream.write_all(&body[..body.len() / 2])),
        _ => stream
            .write_all(head("404 Not Found", 9).as_bytes())
            .and_then(|()| stream.write_all(b"not found")),
    };
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
