//! A small HTTP/1.1 server on 127.0.0.1 for the tests that download: each request's path is
//! answered by a [`Reply`] that the test chooses, one thread per connection, until the test
//! process ends.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

/// How the server answers one path.
pub enum Reply {
    /// A status line such as `200 OK`, a content type, and a body, announced in full in
    /// `Content-Length` but cut to `sent` bytes when that is given.
    Body { status: &'static str, content_type: &'static str, body: Vec<u8>, sent: Option<usize> },
    /// `200 OK` with `body` sent as it is, announced as `Content-Encoding: gzip`.
    Gzip(Vec<u8>),
    /// `302 Found` to `location`.
    Redirect(String),
    /// Reads the request and answers nothing for a minute.
    Silence,
    /// `body` (a PNG) when the request's `Authorization` header is `expected`, else
    /// `401 Unauthorized`.
    Authorized { expected: String, body: Vec<u8> },
}

impl Reply {
    /// `200 OK` with the whole `body`.
    pub fn ok(content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply::Body { status: "200 OK", content_type, body, sent: None }
    }

    /// `404 Not Found`.
    pub fn not_found() -> Reply {
        Reply::Body {
            status: "404 Not Found",
            content_type: "text/plain",
            body: b"not found".to_vec(),
            sent: None,
        }
    }
}

/// Starts a server that answers each path with `route(path)`; returns its base URL,
/// `http://127.0.0.1:PORT`.
pub fn serve(route: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let route = std::sync::Arc::new(route);
    let own = base.clone();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (route, base) = (std::sync::Arc::clone(&route), own.clone());
            thread::spawn(move || respond(stream, |path| route(&base, path)));
        }
    });
    base
}

fn respond(mut stream: TcpStream, route: impl Fn(&str) -> Reply) {
    let mut request_line = String::new();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut header = String::new();
    let mut authorization = None;
    while reader.read_line(&mut header).unwrap_or(0) > 2 {
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_owned());
            }
        }
        header.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let _ = match route(path) {
        Reply::Body { status, content_type, body, sent } => {
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            let sent = sent.unwrap_or(body.len());
            stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body[..sent]))
        }
        Reply::Gzip(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Encoding: gzip\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body))
        }
        Reply::Redirect(location) => stream.write_all(
            format!(
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        ),
        Reply::Silence => {
            thread::sleep(Duration::from_secs(60));
            Ok(())
        }
        Reply::Authorized { expected, body } => {
            let (status, body) = match authorization == Some(expected) {
                true => ("200 OK", body),
                false => ("401 Unauthorized", b"log in".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body))
        }
    };
}
