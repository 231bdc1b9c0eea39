//! `googlenet serve` over HTTP on 127.0.0.1: answers equal to `classify`'s under load from
//! several clients, hostile requests each refused with its status and message, a full queue,
//! and a clean stop on SIGTERM. Every request is bounded in count and time.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use crate::common::server::{client, multipart, raw, Server};
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);

/// `classify --format jsonl`'s predictions for `photos`, by file name.
fn classify_cli(photos: &[PathBuf]) -> HashMap<String, Value> {
    // One image per model call, as the server runs them by default: the classifier's product
    // over a batch adds in another order, which moves the last digits of a probability.
    let one_at_a_time = ["--batch-size", "1"].map(std::ffi::OsStr::new);
    crate::common::classify_records(
        one_at_a_time.into_iter().chain(photos.iter().map(|p| p.as_os_str())),
    )
    .into_iter()
    .map(|record| {
        let name = Path::new(record["path"].as_str().unwrap()).file_name().unwrap();
        (name.to_string_lossy().into_owned(), record["predictions"].clone())
    })
    .collect()
}

/// The first 24 of the shared samples: the photos the tests here send.
fn served_samples() -> Vec<PathBuf> {
    crate::common::samples().into_iter().take(24).collect()
}

/// The predictions of `classify` for [`served_samples`], computed once for the tests here.
fn sample_predictions() -> &'static HashMap<String, Value> {
    static PREDICTIONS: OnceLock<HashMap<String, Value>> = OnceLock::new();
    PREDICTIONS.get_or_init(|| classify_cli(&served_samples()))
}

/// POSTs `body` to `url` as one raw image, or as a multipart `file` part named `name`;
/// returns the status and the JSON answer.
fn post_image(
    agent: &ureq::Agent,
    url: &str,
    name: &str,
    body: &[u8],
    as_part: bool,
) -> (u16, Value) {
    let (content_type, body) = if as_part {
        multipart(&[(name, body)])
    } else {
        ("application/octet-stream".to_owned(), body.to_vec())
    };
    let mut response =
        agent.post(url).header("content-type", &content_type).send(&body[..]).unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

#[test]
fn eight_clients_get_what_classify_answers() {
    let expected = sample_predictions();
    let photos = served_samples();
    let server = Server::start(&[]);
    let url = server.url("/v1/classify");
    // Every served sample once, from eight clients at a time.
    let (clients, requests) = (8, photos.len().div_ceil(8));
    let started = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|client_index| {
                let (photos, url) = (&photos, &url);
                scope.spawn(move || {
                    let agent = client(MINUTE);
                    let mut latencies = Vec::new();
                    for request in 0..requests {
                        let photo = &photos[(client_index * requests + request) % photos.len()];
                        let name = photo.file_name().unwrap().to_str().unwrap();
                        let bytes = std::fs::read(photo).unwrap();
                        let as_part = request % 2 == 0;
                        let sent = Instant::now();
                        let (status, answer) = post_image(&agent, url, name, &bytes, as_part);
                        latencies.push(sent.elapsed());
                        assert_eq!(status, 200, "{name}: {answer}");
                        let record = &answer["results"][0];
                        assert_eq!(record["path"], if as_part { name } else { "-" });
                        assert_eq!(record["predictions"], expected[name], "{name}");
                    }
                    latencies
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let mut sorted = latencies.clone();
    sorted.sort();
    eprintln!(
        "{} requests in {:.1?}: p50 {:.0?}, p99 {:.0?}",
        sorted.len(),
        started.elapsed(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() * 99 / 100]
    );
    assert_eq!(latencies.len(), clients * requests);
}

#[test]
fn several_photos_in_one_request_come_back_in_order() {
    let photos = &crate::common::samples()[..3];
    let server = Server::start(&["--top-k", "2"]);
    let files: Vec<(String, Vec<u8>)> = photos
        .iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(p).unwrap()))
        .collect();
    let parts: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
    let (content_type, body) = multipart(&parts);
    let mut response = client(MINUTE)
        .post(server.url("/v1/classify"))
        .header("content-type", &content_type)
        .send(&body[..])
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for ((name, _), record) in files.iter().zip(results) {
        assert_eq!(record["path"], name.as_str());
        let expected = &sample_predictions()[name];
        assert_eq!(
            record["predictions"].as_array().unwrap()[..],
            expected.as_array().unwrap()[..2]
        );
    }
}

#[test]
fn hostile_requests_are_refused_and_the_next_good_one_succeeds() {
    let server =
        Server::start(&["--request-timeout", "2", "--header-timeout", "1", "--max-body", "16M"]);
    let agent = client(MINUTE);
    let url = server.url("/v1/classify");
    let photo = &crate::common::samples()[0];
    let good = std::fs::read(photo).unwrap();
    let name = photo.file_name().unwrap().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.jpg");
    std::fs::write(&truncated, &good[..good.len() / 3]).unwrap();
    let output = crate::common::googlenet()
        .args(["classify", "--format", "jsonl", "--quiet"])
        .arg(&truncated)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let cli_error = serde_json::from_slice::<Value>(&output.stdout).unwrap()["error"].clone();
    let good_request_succeeds = |case: &str| {
        let (status, answer) = post_image(&agent, &url, name, &good, false);
        assert_eq!(status, 200, "after {case}: {answer}");
        assert_eq!(answer["results"][0]["predictions"], sample_predictions()[name]);
    };
    let error = |answer: &Value| answer["error"].as_str().unwrap_or_default().to_owned();

    let (status, answer) = post_image(&agent, &url, "-", b"", false);
    assert_eq!((status, error(&answer).contains("holds no image")), (400, true), "{answer}");
    good_request_succeeds("an empty body");

    let bytes = std::fs::read(&truncated).unwrap();
    let (status, answer) = post_image(&agent, &url, "truncated.jpg", &bytes, true);
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["results"][0]["path"], "truncated.jpg");
    assert_eq!(answer["results"][0]["error"], cli_error);
    good_request_succeeds("a truncated JPEG");

    let (status, answer) =
        post_image(&agent, &url, "bomb.png", &crate::common::images::png_bomb(), false);
    assert_eq!(status, 422, "{answer}");
    let reason = answer["results"][0]["error"].as_str().unwrap();
    assert!(reason.contains("40000x40000 pixels is over the limit"), "{reason}");
    good_request_succeeds("a decompression bomb");

    // A gigabyte announced: refused from its headers, before any of it is read.
    let started = Instant::now();
    let head = "POST /v1/classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/jpeg\r\n\
                Content-Length: 1073741824\r\n\r\n";
    let answer = raw(&server.addr, head, MINUTE);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("over 16 MiB (--max-body)"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));
    good_request_succeeds("a 1 GB body");

    let answer = slow_client(&server.addr);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--request-timeout"), "{answer}");
    good_request_succeeds("a slow client");

    // Headers that never end: the connection is closed after --header-timeout.
    let started = Instant::now();
    let answer = raw(&server.addr, "POST /v1/classify HTTP/1.1\r\nHost: loc", MINUTE);
    assert!(started.elapsed() < Duration::from_secs(30), "{answer}");
    good_request_succeeds("unfinished headers");

    let mut response = agent
        .post(&url)
        .header("content-type", "multipart/form-data; boundary=xyz")
        .send(&b"this is not multipart at all"[..])
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert!(error(&answer).starts_with("malformed multipart body"), "{answer}");
    good_request_succeeds("garbage multipart");

    for (method, path, status, message) in [
        ("GET", "/v1/classify", 405, "/v1/classify does not take GET"),
        ("POST", "/v2/classify", 404, "no endpoint POST /v2/classify"),
        ("POST", "/v1/classify?top_k=0", 400, "top_k must be 1 to 1000"),
        ("POST", "/v1/classify?top_k=many", 400, "top_k"),
    ] {
        let answer = raw(
            &server.addr,
            &format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            MINUTE,
        );
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{method} {path}: {answer}");
        let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert!(error(&body).contains(message), "{method} {path}: {body}");
        good_request_succeeds(path);
    }
}

/// Announces a 100-byte body and sends one byte a second; returns the server's answer.
fn slow_client(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let head = "POST /v1/classify HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(20) {
        let mut buffer = [0; 4096];
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(_) if answer.is_empty() => {
                if stream.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(800));
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_full_queue_answers_503_at_once_and_the_rest_right() {
    // A large photo keeps the one worker busy long enough for the burst to fill the queue.
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("large.jpg");
    let sample = image::open(&crate::common::samples()[0]).unwrap();
    sample.resize_exact(4000, 3000, image::imageops::FilterType::Triangle).save(&photo).unwrap();
    let expected = classify_cli(std::slice::from_ref(&photo))["large.jpg"].clone();
    let bytes = std::fs::read(&photo).unwrap();
    let server = Server::start(&["--queue", "2", "--threads", "1"]);
    let url = server.url("/v1/classify");
    let burst = 20;
    let barrier = Barrier::new(burst);
    let answers: Vec<(u16, Option<String>, Value)> = std::thread::scope(|scope| {
        let requests: Vec<_> = (0..burst)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let mut response = client(MINUTE)
                        .post(&url)
                        .header("content-type", "image/jpeg")
                        .send(&bytes[..])
                        .unwrap();
                    let retry = response
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let text = response.body_mut().read_to_string().unwrap();
                    (response.status().as_u16(), retry, serde_json::from_str(&text).unwrap())
                })
            })
            .collect();
        requests.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let refused = answers.iter().filter(|(status, ..)| *status == 503).count();
    assert!(refused > 0, "no request was refused");
    // The two the queue holds are answered; so is a third when the worker took the first off
    // the queue before the burst filled it, which the scheduler decides.
    assert!(refused <= burst - 2, "the two queued must be answered: {refused} refused");
    for (status, retry, answer) in &answers {
        match status {
            503 => {
                assert_eq!(retry.as_deref(), Some("1"));
                assert!(answer["error"].as_str().unwrap().contains("--queue"), "{answer}");
            }
            200 => assert_eq!(answer["results"][0]["predictions"], expected),
            _ => panic!("{status}: {answer}"),
        }
    }
}

#[test]
fn the_model_its_features_and_a_heatmap() {
    let photo = crate::common::asset("chelsea.png");
    let bytes = std::fs::read(&photo).unwrap();
    let server = Server::start(&[]);
    let agent = client(MINUTE);

    let mut response = agent.get(server.url("/v1/model")).call().unwrap();
    assert_eq!(response.status(), 200);
    let model: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(model["name"], "googlenet-bvlc");
    assert_eq!(model["classes"], 1000);
    assert_eq!(model["features"], 1024);
    assert_eq!(model["preset"], "caffe");
    assert_eq!(
        (model["input"]["width"].as_u64(), model["input"]["height"].as_u64()),
        (Some(224), Some(224))
    );
    assert_eq!(model["precision"], "f32");
    assert!(crate::common::kernel_paths().contains(&model["kernel"].as_str().unwrap()), "{model}");
    let mut response = agent.get(server.url("/v1/health")).call().unwrap();
    assert_eq!(response.body_mut().read_to_string().unwrap(), r#"{"status":"ok"}"#);

    // /v1/embed answers what `googlenet embed` writes.
    let output = crate::common::googlenet()
        .args(["embed", "--normalize", "--quiet"])
        .arg(&photo)
        .output()
        .unwrap();
    let cli: Value = serde_json::from_slice(&output.stdout).unwrap();
    let (status, answer) =
        post_image(&agent, &server.url("/v1/embed?normalize=true"), "chelsea.png", &bytes, true);
    assert_eq!(status, 200);
    assert_eq!(answer["results"][0]["embedding"], cli["embedding"]);

    // /v1/explain answers the PNG `googlenet explain` writes.
    let dir = tempfile::tempdir().unwrap();
    let heatmap = dir.path().join("map.png");
    crate::common::googlenet()
        .args(["explain", "--stride", "32", "--out"])
        .arg(&heatmap)
        .arg(&photo)
        .assert()
        .success();
    let mut response = agent
        .post(server.url("/v1/explain?stride=32"))
        .header("content-type", "image/png")
        .send(&bytes[..])
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let png = response.body_mut().with_config().limit(1 << 26).read_to_vec().unwrap();
    assert_eq!(png, std::fs::read(&heatmap).unwrap());

    let (content_type, body) = multipart(&[("a.png", &bytes[..]), ("b.png", &bytes[..])]);
    let mut response = agent
        .post(server.url("/v1/explain"))
        .header("content-type", &content_type)
        .send(&body[..])
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.body_mut().read_to_string().unwrap().contains("one image per request"));

    // The page and the two files it loads, each under a policy that runs no inline code.
    for (path, content_type, holds) in [
        ("/", "text/html; charset=utf-8", "<title>googlenet</title>"),
        ("/page.css", "text/css; charset=utf-8", ".card"),
        ("/page.js", "text/javascript; charset=utf-8", "\"use strict\";"),
    ] {
        let mut response = agent.get(server.url(path)).call().unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        let policy = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(policy.contains("default-src 'none'"), "{path}: {policy}");
        assert!(policy.contains("script-src 'self'"), "{path}: {policy}");
        assert!(!policy.contains("inline"), "{path}: {policy}");
        assert!(response.body_mut().read_to_string().unwrap().contains(holds), "{path}");
    }
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let photo = std::fs::read(crate::common::asset("chelsea.png")).unwrap();
    let mut server = Server::start(&["--verbose"]);
    // 64 occluded copies: seconds of work, less than the default's 169.
    let url = server.url("/v1/explain?patch=48&stride=24");
    let in_flight = std::thread::spawn(move || {
        let mut response =
            client(MINUTE).post(&url).header("content-type", "image/png").send(&photo[..]).unwrap();
        (
            response.status().as_u16(),
            response.body_mut().with_config().limit(1 << 26).read_to_vec().unwrap(),
        )
    });
    // The signal comes once the server has the request: the heatmap then takes seconds more.
    server.wait_for_line("googlenet: POST /v1/explain");
    let status = server.terminate();
    let (answer, png) = in_flight.join().unwrap();
    assert_eq!(answer, 200);
    assert!(png.starts_with(b"\x89PNG"));
    assert!(status.success(), "{status:?}: {:?}", server.log());
    assert_eq!(server.log().last().map(String::as_str), Some("googlenet: stopped"));
    assert!(TcpStream::connect(&server.addr).is_err(), "still accepting after the stop");
}

#[test]
fn int8_is_served_and_said() {
    let bytes = std::fs::read(crate::common::asset("chelsea.png")).unwrap();
    let server = Server::start(&["--precision", "int8"]);
    let agent = client(MINUTE);
    let mut response = agent.get(server.url("/v1/model")).call().unwrap();
    let model: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(model["precision"], "int8");
    let url = server.url("/v1/classify");
    let (status, answer) = post_image(&agent, &url, "chelsea.png", &bytes, true);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["predictions"][0]["name"], "Egyptian cat");
}
