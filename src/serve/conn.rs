//! A connection's stream as the HTTP server sees it, with two changes: the answers hyper makes
//! by itself to requests it cannot parse (400 for a garbage request line, 414 for a URI too
//! long, 431 for headers too large: a status line and an empty body) get the service's JSON
//! error body, like every other refusal; and a connection that opens with HTTP/2's preface,
//! which hyper's HTTP/1.1 server would close with nothing said, is answered a JSON 505.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose bodiless error answers are rewritten with a JSON body.
#[derive(Debug)]
pub struct JsonErrors<T> {
    inner: T,
    /// A rewritten answer not yet all written to `inner`.
    pending: Vec<u8>,
    /// Whether anything has been read: the HTTP/2 preface is looked for in the first bytes.
    started: bool,
}

impl<T> JsonErrors<T> {
    /// `inner`, its error answers rewritten.
    pub fn new(inner: T) -> JsonErrors<T> {
        JsonErrors { inner, pending: Vec::new(), started: false }
    }
}

/// How an HTTP/2 connection starts (RFC 9113, 3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// The answer to a connection that opened with [`HTTP2_PREFACE`].
fn http2_refusal() -> Vec<u8> {
    json_answer("505", "HTTP Version Not Supported", "this service speaks HTTP/1.1 only")
}

/// A whole answer of `status` with the JSON error body `{"error": message}`, after which the
/// connection closes.
fn json_answer(status: &str, reason: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": message }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
         x-content-type-options: nosniff\r\ncontent-length: {}\r\nconnection: close\r\n\r\n\
         {body}",
        body.len()
    )
    .into_bytes()
}

/// The JSON answer that stands for `head`, when `head` is one of hyper's own bodiless error
/// answers: a 4xx status line with `content-length: 0` and no content type. The service's own
/// answers always have a content type.
fn rewritten(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let status = text.strip_prefix("HTTP/1.1 4")?.get(..2).map(|rest| format!("4{rest}"))?;
    let lower = text.to_ascii_lowercase();
    if !lower.contains("\r\ncontent-length: 0\r\n") || lower.contains("\r\ncontent-type:") {
        return None;
    }
    let (reason, message) = match status.as_str() {
        "400" => ("Bad Request", "the request cannot be parsed as HTTP/1.1"),
        "414" => ("URI Too Long", "the request's URI is too long"),
        "431" => ("Request Header Fields Too Large", "the request's headers are too large"),
        _ => return None,
    };
    Some(json_answer(&status, reason, message))
}

impl<T: AsyncWrite + Unpin> JsonErrors<T> {
    /// Writes what is pending of a rewritten answer.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => drop(self.pending.drain(..n.min(self.pending.len()))),
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Reads as `inner` does, except that a connection opening with [`HTTP2_PREFACE`] reads as
/// ended, with [`http2_refusal`] pending: hyper closes it, and the refusal is written as it does.
impl<T: AsyncRead + Unpin> AsyncRead for JsonErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.started || !matches!(read, Poll::Ready(Ok(()))) {
            return read;
        }
        let new = buf.filled().get(before..).unwrap_or_default();
        if new.is_empty() {
            return read;
        }
        self.started = true;
        if new.starts_with(HTTP2_PREFACE) {
            buf.set_filled(before);
            self.pending = http2_refusal();
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        match rewritten(buf) {
            Some(answer) => {
                self.pending = answer;
                // What is left of it is written by the next write, flush or shutdown.
                let _ = self.drain(cx)?;
                Poll::Ready(Ok(buf.len()))
            }
            None => Pin::new(&mut self.inner).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bodiless_errors_are_rewritten() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\
                      date: Mon, 07 Dec 2026 00:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(rewritten(hyper).unwrap()).unwrap();
        assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(answer.ends_with("\r\n\r\n{\"error\":\"the request's headers are too large\"}"));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
                     content-length: 0\r\n\r\n";
        assert!(rewritten(ours).is_none());
        assert!(rewritten(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(rewritten(b"{\"results\":[]}").is_none());
    }

    #[test]
    fn the_http2_preface_is_answered_505_in_json() {
        let answer = String::from_utf8(http2_refusal()).unwrap();
        assert!(answer.starts_with("HTTP/1.1 505 HTTP Version Not Supported\r\n"), "{answer}");
        assert!(answer.contains("x-content-type-options: nosniff\r\n"));
        assert!(answer.ends_with("{\"error\":\"this service speaks HTTP/1.1 only\"}"));
    }
}
