//! Inputs that are not files: one image on stdin (`-`) and images named by URL, downloaded
//! from a server on 127.0.0.1 that each test starts. Every failure is that input's record.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::common::http::{self, Reply};
use crate::common::{asset, googlenet, samples};
use serde_json::Value;

/// The records of a JSON Lines run, by path.
fn records(stdout: &[u8]) -> Vec<(String, Value)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            (record["path"].as_str().unwrap().to_owned(), record)
        })
        .collect()
}

/// The top class's name in a record.
fn top_name(record: &Value) -> &str {
    record["predictions"][0]["name"].as_str().unwrap_or_else(|| panic!("{record}"))
}

/// A photo of a tench, as a JPEG, and a PNG of a cat.
fn photos() -> (Vec<u8>, Vec<u8>) {
    let tench = samples().into_iter().find(|p| p.to_string_lossy().contains("tench")).unwrap();
    (std::fs::read(tench).unwrap(), std::fs::read(asset("chelsea.png")).unwrap())
}

#[test]
fn one_image_on_stdin_is_classified_as_dash() {
    let (jpeg, _) = photos();
    let output = googlenet().args(["classify", "-q", "-k", "1", "-"]).write_stdin(jpeg).output();
    let output = output.unwrap();
    assert_eq!(output.status.code(), Some(0));
    let classified = records(&output.stdout);
    assert_eq!(classified.len(), 1);
    assert_eq!((classified[0].0.as_str(), top_name(&classified[0].1)), ("-", "tench"));
    let empty = googlenet().args(["classify", "-q", "-"]).write_stdin(Vec::new()).output();
    let empty = empty.unwrap();
    assert_eq!(empty.status.code(), Some(2));
    assert_eq!(records(&empty.stdout)[0].1["error"], "empty file");
    let dir = tempfile::tempdir().unwrap();
    let heatmap = dir.path().join("heat.png");
    let explained = googlenet()
        .args(["explain", "--format", "json", "--stride", "64", "-", "--out"])
        .arg(&heatmap)
        .write_stdin(photos().0)
        .output()
        .unwrap();
    assert!(explained.status.success(), "{}", String::from_utf8_lossy(&explained.stderr));
    let report: Value = serde_json::from_slice(&explained.stdout).unwrap();
    assert_eq!((report["image"].as_str(), report["label"].as_str()), (Some("-"), Some("tench")));
    assert!(image::open(&heatmap).is_ok());
    googlenet()
        .args(["classify", "-", "--files-from", "-"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("stdin cannot hold both"));
}

#[test]
fn every_download_failure_is_its_own_record_and_the_run_goes_on() {
    let (jpeg, png) = photos();
    // Over the byte limit of --max-pixels 187500 (the tench's 500x375), 67 MiB, which binds
    // here under --max-download 1G.
    let huge = vec![0u8; 68 << 20];
    let base = http::serve(move |base, path| match path {
        "/tench.jpg" => Reply::ok("image/jpeg", jpeg.clone()),
        "/cat" => Reply::ok("text/html", png.clone()),
        "/moved" => Reply::Redirect(format!("{base}/tench.jpg")),
        "/loop" => Reply::Redirect(format!("{base}/loop")),
        "/half.jpg" => Reply::Body {
            status: "200 OK",
            content_type: "image/jpeg",
            body: jpeg.clone(),
            sent: Some(jpeg.len() / 2),
        },
        "/huge.jpg" => Reply::ok("image/jpeg", huge.clone()),
        "/silent.jpg" => Reply::Silence,
        _ => Reply::not_found(),
    });
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/x.jpg", listener.local_addr().unwrap())
    };
    let url = |path: &str| format!("{base}{path}");
    let expected = [
        (url("/tench.jpg"), Ok("tench")),
        (url("/cat"), Ok("Egyptian cat")),
        (url("/moved"), Ok("tench")),
        (url("/missing.jpg"), Err("cannot download: the server answered HTTP 404")),
        (url("/half.jpg"), Err("cannot download: the body stopped before the")),
        (url("/huge.jpg"), Err("cannot download: over 67 MiB, the most a download may take")),
        (url("/loop"), Err("cannot download: more than 5 redirects")),
        (url("/silent.jpg"), Err("cannot download: timed out")),
        (refused, Err("cannot download: connection refused or failed")),
    ];
    let started = Instant::now();
    let output = googlenet()
        .args(["classify", "-q", "-k", "1", "--max-pixels", "187500", "--max-download", "1G"])
        .args(["--download-timeout", "2"])
        .args(expected.iter().map(|(url, _)| url))
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "the silent server is given up on");
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    let records = records(&output.stdout);
    assert_eq!(records.len(), expected.len());
    for (url, outcome) in &expected {
        let (_, record) = records.iter().find(|(path, _)| path == url).unwrap();
        match outcome {
            Ok(name) => assert_eq!(top_name(record), *name, "{url}"),
            Err(reason) => {
                let error = record["error"].as_str().unwrap_or_else(|| panic!("{record}"));
                assert!(error.starts_with(reason), "{url}: {error}");
            }
        }
    }
}

#[test]
fn urls_are_sorted_sharded_and_resumed_like_paths() {
    let (jpeg, _) = photos();
    let base = http::serve(move |_, _| Reply::ok("image/jpeg", jpeg.clone()));
    let urls: Vec<String> =
        ["/c.jpg", "/a.jpg", "/b.jpg", "/a.jpg"].map(|p| format!("{base}{p}")).to_vec();
    let run = |extra: &[&str]| {
        let output =
            googlenet().args(["classify", "-q", "-k", "1"]).args(extra).args(&urls).output();
        records(&output.unwrap().stdout).into_iter().map(|(path, _)| path).collect::<Vec<_>>()
    };
    let name = |p: &str| format!("{base}{p}");
    assert_eq!(run(&[]), [name("/a.jpg"), name("/b.jpg"), name("/c.jpg")]);
    assert_eq!(run(&["--shard", "2/2"]), [name("/b.jpg")]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let done = format!("{{\"path\":\"{}\",\"predictions\":[]}}\n", name("/b.jpg"));
    std::fs::write(&out, done).unwrap();
    let out = out.to_str().unwrap();
    googlenet().args(["classify", "-q", "--resume", "-o", out]).args(&urls).assert().success();
    let written: Vec<String> =
        records(&std::fs::read(out).unwrap()).into_iter().map(|(path, _)| path).collect();
    assert_eq!(written, [name("/b.jpg"), name("/a.jpg"), name("/c.jpg")]);
}

/// `bytes` compressed as a gzip stream.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn a_gzip_bomb_is_refused_past_the_download_limit_in_little_memory() {
    let (_, png) = photos();
    let (bomb, small) = (gzip(&vec![0; 1 << 28]), gzip(&png));
    let base = http::serve(move |_, path| match path {
        "/bomb.png" => Reply::Gzip(bomb.clone()),
        _ => Reply::Gzip(small.clone()),
    });
    // The run waits on a pipe after the URLs (its inputs run in sorted order, one at a time),
    // so that its peak memory can be read while it lives.
    let dir = tempfile::tempdir().unwrap();
    crate::common::blocking_fifo(&dir.path().join("zz.png"));
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("googlenet"))
        .args(["classify", "-q", "-k", "1", "--threads", "1", "--batch-size", "1"])
        .args([format!("{base}/bomb.png"), format!("{base}/cat.png")])
        .arg("zz.png")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut next = || serde_json::from_str::<Value>(&lines.next().unwrap().unwrap()).unwrap();
    let (refused, cat) = (next(), next());
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(refused["error"], "cannot download: over 64 MiB, the most a download may take");
    assert_eq!(top_name(&cat), "Egyptian cat", "a gzip body is inflated");
    assert!(peak_kb < 400 << 10, "peak memory {} MB", peak_kb >> 10);
}

#[test]
fn a_urls_password_is_never_shown() {
    let (_, png) = photos();
    let base = http::serve(move |_, path| match path {
        "/cat.png" => Reply::ok("image/png", png.clone()),
        _ => Reply::not_found(),
    });
    let with_password = |path: &str| base.replacen("http://", "http://user:secretpass@", 1) + path;
    for format in ["jsonl", "csv", "table"] {
        let output = googlenet()
            .args(["classify", "-k", "1", "--verbose", "--format", format])
            .args([with_password("/cat.png"), with_password("/missing.png")])
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), output.stderr.clone());
        let stderr = String::from_utf8_lossy(&stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            !stdout.contains("secretpass") && !stderr.contains("secretpass"),
            "{stdout}{stderr}"
        );
        assert!(stdout.contains("user:***@127.0.0.1"), "{format}: {stdout}");
        assert!(stderr.contains("user:***@127.0.0.1"), "{format}: {stderr}");
    }
}

/// A URL's user and password are sent as Basic credentials to its own host, as curl sends
/// them, and not across a redirect to another host.
#[test]
fn a_urls_user_and_password_log_in_to_its_own_host_only() {
    let (_, png) = photos();
    let expected = "Basic dXNlcjpzZWNyZXQ=".to_owned(); // user:secret
    let (login, body) = (expected.clone(), png.clone());
    let other =
        http::serve(move |_, _| Reply::Authorized { expected: login.clone(), body: body.clone() });
    // The same server by another name, so that a redirect to it leaves the URL's host.
    let elsewhere = other.replacen("127.0.0.1", "localhost", 1);
    let base = http::serve(move |own, path| match path {
        "/away.png" => Reply::Redirect(format!("{elsewhere}/cat.png")),
        "/stay.png" => Reply::Redirect(format!("{own}/cat.png")),
        _ => Reply::Authorized { expected: expected.clone(), body: png.clone() },
    });
    let login = |path: &str| base.replacen("http://", "http://user:secret@", 1) + path;
    let output = googlenet()
        .args(["classify", "-q", "-k", "1", "--format", "jsonl"])
        .args([
            login("/cat.png"),
            format!("{base}/cat.png"),
            login("/away.png"),
            login("/stay.png"),
        ])
        .output()
        .unwrap();
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let by_path = |path: String| {
        let shown = path.replacen("user:secret@", "user:***@", 1);
        records.iter().find(|r| r["path"] == shown.as_str()).unwrap_or_else(|| panic!("{shown}"))
    };
    assert_eq!(by_path(login("/cat.png"))["predictions"][0]["name"], "Egyptian cat");
    let anonymous = by_path(format!("{base}/cat.png"))["error"].as_str().unwrap().to_owned();
    assert!(anonymous.contains("HTTP 401"), "{anonymous}");
    let redirected = by_path(login("/away.png"))["error"].as_str().unwrap().to_owned();
    assert!(redirected.contains("HTTP 401"), "the credentials stayed home: {redirected}");
    assert_eq!(by_path(login("/stay.png"))["predictions"][0]["name"], "Egyptian cat");
}
