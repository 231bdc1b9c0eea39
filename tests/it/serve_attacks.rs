//! `googlenet serve` under attack, on 127.0.0.1 and bounded in count and time: work past its
//! deadline stopped, SIGTERM during it, connections that never finish their headers, other
//! hosts and other pages' origins, and hyper's own refusals given JSON bodies.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::asset;
use crate::common::server::{client, raw, raw_bytes, Server};
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);

/// An occlusion map of every pixel of the bundled photo: 50,176 runs of the network, minutes.
fn endless_explain(url: &str) -> std::thread::JoinHandle<u16> {
    let (photo, url) = (std::fs::read(asset("chelsea.png")).unwrap(), url.to_owned());
    std::thread::spawn(move || {
        let request = client(MINUTE).post(&url).header("content-type", "image/png");
        request.send(&photo[..]).unwrap().status().as_u16()
    })
}

/// The JSON body of a raw HTTP answer.
fn body(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {answer}"))
}

#[test]
fn work_past_the_timeout_stops() {
    let server = Server::start(&["--request-timeout", "1"]);
    let status = endless_explain(&server.url("/v1/explain?patch=1&stride=1")).join().unwrap();
    assert_eq!(status, 503);
    std::thread::sleep(Duration::from_secs(1));
    let before = server.cpu_seconds();
    std::thread::sleep(Duration::from_secs(1));
    let used = server.cpu_seconds() - before;
    assert!(used < 0.2, "the server used {used:.2} s of CPU in the second after");
}

#[test]
fn sigterm_during_long_work_exits_within_the_timeout_and_a_second() {
    let mut server = Server::start(&["--request-timeout", "1", "--verbose"]);
    let request = endless_explain(&server.url("/v1/explain?patch=1&stride=1"));
    server.wait_for_line("googlenet: POST /v1/explain");
    let signalled = Instant::now();
    let status = server.terminate();
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(2), "exited {took:?} after SIGTERM");
    assert!(status.success(), "{status:?}: {:?}", server.log());
    assert_eq!(request.join().unwrap(), 503);
}

#[test]
fn sigterm_with_a_connection_stuck_in_its_headers_exits_after_the_grace() {
    let mut server = Server::start(&["--request-timeout", "1"]);
    let mut stuck = TcpStream::connect(&server.addr).unwrap();
    stuck.write_all(b"POST /v1/classify HTTP/1.1\r\nHost: loc").unwrap();
    // Answered after the stuck one was accepted: connections are taken in order.
    let head = "GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    assert!(raw(&server.addr, head, MINUTE).starts_with("HTTP/1.1 200"));
    let signalled = Instant::now();
    let status = server.terminate();
    let took = signalled.elapsed();
    // The grace is the request timeout; the header timeout (5 s) would be later.
    assert!(took < Duration::from_secs(4), "exited {took:?} after SIGTERM");
    assert!(status.success(), "{status:?}: {:?}", server.log());
    assert_eq!(server.log().last().map(String::as_str), Some("googlenet: stopped"));
    drop(stuck);
}

#[test]
fn connections_stuck_in_their_headers_do_not_lock_out_good_requests() {
    let server = Server::start(&["--max-connections", "64"]);
    let stuck: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut stream = TcpStream::connect(&server.addr).unwrap();
            stream.write_all(b"GET /v1/health HTTP/1.1\r\nHost: local").unwrap();
            stream
        })
        .collect();
    assert_eq!(eight_good_requests(&server), [200; 8]);
    drop(stuck);
}

#[test]
fn other_hosts_and_other_pages_are_refused_unless_allowed() {
    let allowed = ["--allow-host", "photos.lan", "--allow-origin", "http://app.example"];
    let server = Server::start(&allowed);
    let get = |host: &str| {
        let head = format!("GET /v1/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        raw(&server.addr, &head, MINUTE)
    };
    let answer = get("evil.example");
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
    assert!(body(&answer)["error"].as_str().unwrap().contains("--allow-host evil.example"));
    assert!(get("photos.lan:8080").starts_with("HTTP/1.1 200"));
    assert!(get(&server.addr).starts_with("HTTP/1.1 200"));

    let photo = std::fs::read(asset("chelsea.png")).unwrap();
    let post = |origin: &str, content_type: &str| {
        let mut request = format!(
            "POST /v1/classify HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\nContent-Type: \
             {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            server.addr,
            photo.len()
        )
        .into_bytes();
        request.extend_from_slice(&photo);
        raw_bytes(&server.addr, &request, MINUTE)
    };
    let answer = post("http://evil.example", "text/plain");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(body(&answer)["error"].as_str().unwrap().contains("--allow-origin"), "{answer}");
    let own = post(&format!("http://{}", server.addr), "image/png");
    assert!(own.starts_with("HTTP/1.1 200"), "{own}");
    let answer = post("http://app.example", "image/png");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("access-control-allow-origin: http://app.example"), "{answer}");
    assert_eq!(body(&answer)["results"][0]["predictions"][0]["name"], "Egyptian cat");

    let preflight = raw(
        &server.addr,
        &format!(
            "OPTIONS /v1/classify HTTP/1.1\r\nHost: {}\r\nOrigin: http://app.example\r\n\
             Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
            server.addr
        ),
        MINUTE,
    );
    assert!(preflight.starts_with("HTTP/1.1 204"), "{preflight}");
    assert!(preflight.to_ascii_lowercase().contains("access-control-allow-methods: get, post"));

    let agent = client(MINUTE);
    let page = agent.get(server.url("/")).call().unwrap();
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    let model = agent.get(server.url("/v1/model")).call().unwrap();
    assert_eq!(model.headers()["x-content-type-options"], "nosniff");
}

#[test]
fn requests_hyper_cannot_parse_get_json_errors_too() {
    let server = Server::start(&[]);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n", "a".repeat(70_000));
    let long_header =
        format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Filler: {}\r\n\r\n", "b".repeat(500_000));
    for (request, status) in
        [("NOT HTTP AT ALL\r\n\r\n".to_owned(), "400"), (long_uri, "414"), (long_header, "431")]
    {
        let answer = raw(&server.addr, &request, MINUTE);
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{status}: {answer}");
        assert!(answer.to_ascii_lowercase().contains("content-type: application/json"));
        assert!(body(&answer)["error"].is_string(), "{answer}");
    }
}

#[test]
fn malformed_hosts_and_origins_fail_closed_and_every_answer_says_nosniff() {
    let server = Server::start(&["--max-body", "1K"]);
    let answer = |request: &[u8]| raw_bytes(&server.addr, request, MINUTE);
    let nosniff =
        |answer: &str| answer.to_ascii_lowercase().contains("x-content-type-options: nosniff");
    let cases: [(&[u8], &str, &str); 6] = [
        (b"GET /v1/health HTTP/1.1\r\nHost: \xe9vil.example\r\nConnection: close\r\n\r\n", "400", "not ASCII"),
        (b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n", "400", "one Host header"),
        (b"GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n", "400", "needs a Host header"),
        (b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nOrigin: http://\xe9vil.example\r\nConnection: close\r\n\r\n", "403", "Origin header is not ASCII"),
        (b"GET /v1/health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", "421", "--allow-host"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "505", "HTTP/1.1 only"),
    ];
    for (request, status, reason) in cases {
        let answer = answer(request);
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{status}: {answer}");
        assert!(body(&answer)["error"].as_str().unwrap().contains(reason), "{answer}");
        assert!(nosniff(&answer), "{answer}");
    }
    let old = answer(b"GET /v1/health HTTP/1.0\r\n\r\n");
    assert!(old.starts_with("HTTP/1.0 200"), "HTTP/1.0 has no Host to give: {old}");
    let big = format!(
        "POST /v1/classify HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000\r\n\
         Connection: close\r\n\r\n{}",
        "x".repeat(2000)
    );
    let refused = answer(big.as_bytes());
    assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");
    let message = body(&refused)["error"].as_str().unwrap().to_owned();
    assert!(message.contains("over 1 KiB (--max-body)"), "{message}");
}

/// A photo of extreme shape, 178,956,970 x 1 in a 522 KB PNG, classified and explained by the
/// service in bounded memory, which answers the next request as before.
#[test]
fn a_photo_of_extreme_shape_is_answered_in_bounded_memory() {
    let server = Server::start(&["--threads", "1"]);
    let photo = crate::common::images::grey_png(178_956_970, 1);
    let agent = client(MINUTE);
    let send = |path: &str, body: &[u8]| {
        let mut answer = agent.post(server.url(path)).header("content-type", "image/png");
        answer = answer.config().http_status_as_error(false).build();
        let mut response = answer.send(body).unwrap();
        (response.status().as_u16(), response.body_mut().read_to_vec().unwrap())
    };
    let (status, body) = send("/v1/classify", &photo);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["results"][0]["predictions"].as_array().map(Vec::len), Some(5));
    let (status, heatmap) = send("/v1/explain?patch=112&stride=112", &photo);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&heatmap));
    assert!(heatmap.starts_with(b"\x89PNG"));
    let peak = server.peak_memory();
    println!("the service's peak resident memory: {} MB", peak >> 20);
    assert!(peak < 1 << 30, "peak resident memory {} MB", peak >> 20);
    let cat = std::fs::read(asset("chelsea.png")).unwrap();
    assert_eq!(send("/v1/classify", &cat).0, 200);
}

/// Opens `count` connections that send a whole request's headers announcing `length` bytes of
/// body, and then `sent` bytes of it, and no more.
fn slow_bodies(addr: &str, count: usize, length: usize, sent: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            let head = format!(
                "POST /v1/classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n\
                 Content-Length: {length}\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).unwrap();
            // A body the service refuses midway closes the connection under the writer.
            let _ = stream.write_all(&vec![0x89; sent]);
            stream
        })
        .collect()
}

/// Eight good requests at once, each the bundled photo: their statuses.
fn eight_good_requests(server: &Server) -> Vec<u16> {
    let photo = std::fs::read(asset("chelsea.png")).unwrap();
    let url = server.url("/v1/classify");
    std::thread::scope(|scope| {
        let requests: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let request = client(MINUTE).post(&url).header("content-type", "image/png");
                    request.send(&photo[..]).unwrap().status().as_u16()
                })
            })
            .collect();
        requests.into_iter().map(|request| request.join().unwrap()).collect()
    })
}

#[test]
fn connections_stuck_in_their_bodies_do_not_lock_out_good_requests() {
    let server = Server::start(&["--max-connections", "64"]);
    let stuck = slow_bodies(&server.addr, 100, 10_000_000, 1);
    assert_eq!(eight_good_requests(&server), [200; 8]);
    drop(stuck);
}

#[test]
fn a_body_that_stops_is_refused_after_the_body_timeout() {
    let server = Server::start(&["--body-timeout", "1", "--request-timeout", "30"]);
    let mut stuck = slow_bodies(&server.addr, 1, 1000, 10).remove(0);
    stuck.set_read_timeout(Some(MINUTE)).unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stuck, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(body(&answer)["error"].as_str().unwrap().contains("--body-timeout (1s)"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn bodies_held_at_once_stay_under_their_limit() {
    let server = Server::start(&["--max-buffered", "64M", "--max-connections", "64"]);
    let before = server.peak_memory();
    // Thirty bodies of 16 MiB of an announced 60 MiB: four fit in 64 MiB, the others are
    // refused (503) as they pass it.
    let held = slow_bodies(&server.addr, 30, 60 << 20, 16 << 20);
    std::thread::sleep(Duration::from_millis(500));
    let grew = server.peak_memory().saturating_sub(before);
    println!("resident memory grew by {} MB", grew >> 20);
    assert!(grew < (64 + 64) << 20, "grew by {} MB", grew >> 20);
    drop(held);
    assert_eq!(eight_good_requests(&server), [200; 8]);
}
