//! Downloading the images named by `http://` and `https://` URLs: bounded in bytes (on the wire
//! and decoded alike), in time and in redirects, each failure one typed error that becomes that
//! input's record; a URL's user and password sent as Basic credentials to its own host, never
//! across a redirect to another; and URLs shown with their passwords hidden ([`redact`]).

use std::io::{self, Read};
use std::time::Duration;

use flate2::read::MultiGzDecoder;

use crate::files::{read_up_to, Size};

/// How many redirects a download follows.
pub const MAX_REDIRECTS: u32 = 5;

/// The longest wait, once connected, for a server's answer (its status line and headers).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an image could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The server answered with an error status.
    #[error("the server answered HTTP {0}")]
    Status(u16),
    /// The connection, or the whole download, took too long.
    #[error("timed out ({0})")]
    Timeout(String),
    /// The host name does not resolve.
    #[error("host not found")]
    HostNotFound,
    /// Nothing accepted the connection.
    #[error("connection refused or failed")]
    ConnectionFailed,
    /// The redirects went on past [`MAX_REDIRECTS`].
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    /// The body, as sent or as decoded, is over the limit (the downloader's, or less where no
    /// image within `max_pixels` can be that large).
    #[error("over {}, the most a download may take", Size(*.limit))]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The body comes in an encoding other than gzip, the only one asked for.
    #[error("the body is sent as `{0}`, which is not decoded")]
    Encoding(String),
    /// The body stopped before the length the server announced.
    #[error("the body stopped before the {announced} bytes announced")]
    CutShort {
        /// Bytes announced in `Content-Length`.
        announced: u64,
    },
    /// Anything else the HTTP client reports.
    #[error("{0}")]
    Other(String),
}

/// The most bytes a download may take by default: 64 MiB.
pub const DEFAULT_MAX_DOWNLOAD: u64 = 64 << 20;

/// An HTTP client with the limits of one run: shared by the workers, each download on the
/// worker that classifies it.
#[derive(Debug, Clone)]
pub struct Downloader {
    agent: ureq::Agent,
    max_bytes: u64,
}

/// The default limits: 10 s to connect, 60 s for a whole download, 64 MiB.
impl Default for Downloader {
    fn default() -> Downloader {
        Downloader::new(Duration::from_secs(10), Duration::from_secs(60), DEFAULT_MAX_DOWNLOAD)
    }
}

impl Downloader {
    /// A client that gives up connecting after `connect`, waiting for an answer after
    /// 30 s (or `total`, if shorter), and downloading after `total`, and takes
    /// at most `max_bytes` of any body, counted as they arrive and again as they are decoded.
    pub fn new(connect: Duration, total: Duration, max_bytes: u64) -> Downloader {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(connect))
            .timeout_recv_response(Some(ANSWER_TIMEOUT.min(total)))
            .timeout_global(Some(total))
            .max_redirects(MAX_REDIRECTS)
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            .user_agent(concat!("googlenet/", env!("CARGO_PKG_VERSION")))
            .build();
        Downloader { agent: config.into(), max_bytes }
    }

    /// The body at `url`, refused past `limit` bytes (or the client's own limit, if lower)
    /// without reading further.
    pub(crate) fn get(&self, url: &str, limit: u64) -> Result<Vec<u8>, DownloadError> {
        let limit = limit.min(self.max_bytes);
        let (body, announced) = self.reader(url, limit)?;
        let bytes = read_up_to(body, limit, announced.unwrap_or(0))
            .map_err(|err| read_error(err, announced))?
            .ok_or(DownloadError::TooLarge { limit })?;
        match announced {
            Some(announced) if (bytes.len() as u64) < announced => {
                Err(DownloadError::CutShort { announced })
            }
            _ => Ok(bytes),
        }
    }

    /// The body at `url` to read as it arrives, which fails past `limit` bytes on the wire
    /// and again past `limit` decoded (a gzip body is inflated here), and the length the server
    /// announced for a body sent as it is; refused at once when that is over `limit`.
    pub fn open(
        &self,
        url: &str,
        limit: u64,
    ) -> crate::Result<(Box<dyn Read + Send>, Option<u64>)> {
        self.reader(url, limit).map_err(|err| crate::Error::Download(crate::one_line(&err)))
    }

    /// [`Downloader::open`], failing with the download's own error.
    fn reader(
        &self,
        url: &str,
        limit: u64,
    ) -> Result<(Box<dyn Read + Send>, Option<u64>), DownloadError> {
        let (bare, credentials) = credentials(url);
        let mut request = self.agent.get(&bare).header("accept-encoding", "gzip");
        if let Some(credentials) = credentials {
            request = request.header("authorization", credentials);
        }
        let response = request.call().map_err(|err| DownloadError::from(err).hiding(url))?;
        let encoding = response
            .headers()
            .get("content-encoding")
            .map(|value| value.to_str().unwrap_or("?").trim().to_ascii_lowercase())
            .filter(|value| value != "identity");
        let announced = response.body().content_length();
        if announced.is_some_and(|len| len > limit) {
            return Err(DownloadError::TooLarge { limit });
        }
        let wire = response.into_body().into_with_config().limit(limit.saturating_add(1)).reader();
        match encoding.as_deref() {
            None => Ok((Box::new(wire), announced)),
            Some("gzip" | "x-gzip") => {
                Ok((Box::new(MultiGzDecoder::new(wire).take(limit.saturating_add(1))), None))
            }
            Some(other) => Err(DownloadError::Encoding(other.to_owned())),
        }
    }
}

impl DownloadError {
    /// This error with any password of `url` in its text replaced by `***`.
    fn hiding(self, url: &str) -> DownloadError {
        match (self, password(url)) {
            (DownloadError::Other(text), Some(secret)) if !secret.is_empty() => {
                DownloadError::Other(text.replace(secret, "***"))
            }
            (err, _) => err,
        }
    }
}

/// Where `url`'s user information lies (what stands between `//` and `@` in its authority).
fn userinfo(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://")? + 3;
    let authority = url.get(start..)?;
    let end = authority.find(['/', '?', '#']).unwrap_or(authority.len());
    let at = authority.get(..end)?.rfind('@')?;
    Some(start..start + at)
}

/// `url` without its user information, and that information as the value of an
/// `Authorization` header (`Basic` and the base64 of `user:password`, each percent-decoded, as
/// curl sends them). The header goes to the URL's host and, across a redirect, only to the same
/// host by the same or a more secure scheme.
fn credentials(url: &str) -> (String, Option<String>) {
    use base64::Engine;
    let Some(info) = userinfo(url) else { return (url.to_owned(), None) };
    let (Some(before), Some(text), Some(after)) =
        (url.get(..info.start), url.get(info.clone()), url.get(info.end + 1..))
    else {
        return (url.to_owned(), None);
    };
    let decoded = |part: &str| percent_encoding::percent_decode_str(part).collect::<Vec<u8>>();
    let (user, password) = text.split_once(':').unwrap_or((text, ""));
    let pair = [decoded(user), b":".to_vec(), decoded(password)].concat();
    let token = base64::engine::general_purpose::STANDARD.encode(pair);
    (format!("{before}{after}"), Some(format!("Basic {token}")))
}

/// The password of `url`'s user information, if it has one (or the whole user information
/// where it has no `:`, as a token in the user name is no less a secret).
fn password(url: &str) -> Option<&str> {
    let info = url.get(userinfo(url)?)?;
    Some(info.split_once(':').map_or(info, |(_, secret)| secret))
}

/// `url` as it may be shown: `http://user:***@host/...` where it holds a password, `***@`
/// where its user information has no `:`.
pub fn redact(url: &str) -> String {
    let Some(range) = userinfo(url) else { return url.to_owned() };
    let shown = match url.get(range.clone()).and_then(|info| info.split_once(':')) {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{}{shown}{}", url.get(..range.start).unwrap_or(""), url.get(range.end..).unwrap_or(""))
}

/// What a failed read of the body means: the body cut short, or the client's error.
fn read_error(err: io::Error, announced: Option<u64>) -> DownloadError {
    match (announced, err.kind()) {
        (Some(announced), io::ErrorKind::UnexpectedEof) => DownloadError::CutShort { announced },
        _ => match err.into_inner().map(|inner| inner.downcast::<ureq::Error>()) {
            Some(Ok(ureq)) => DownloadError::from(*ureq),
            Some(Err(other)) => DownloadError::Other(other.to_string()),
            None => DownloadError::Other("the download failed".into()),
        },
    }
}

impl From<ureq::Error> for DownloadError {
    fn from(err: ureq::Error) -> DownloadError {
        match err {
            ureq::Error::StatusCode(code) => DownloadError::Status(code),
            ureq::Error::Timeout(ureq::Timeout::Global) => {
                DownloadError::Timeout("download_timeout".into())
            }
            ureq::Error::Timeout(ureq::Timeout::Connect) => {
                DownloadError::Timeout("connect_timeout".into())
            }
            ureq::Error::Timeout(ureq::Timeout::RecvResponse) => {
                DownloadError::Timeout(format!("no answer in {} s", ANSWER_TIMEOUT.as_secs()))
            }
            ureq::Error::Timeout(which) => DownloadError::Timeout(which.to_string()),
            ureq::Error::HostNotFound => DownloadError::HostNotFound,
            ureq::Error::ConnectionFailed => DownloadError::ConnectionFailed,
            ureq::Error::TooManyRedirects => DownloadError::TooManyRedirects,
            ureq::Error::BodyExceedsLimit(limit) => DownloadError::TooLarge { limit },
            ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
                DownloadError::ConnectionFailed
            }
            ureq::Error::Io(io) => DownloadError::Other(io.to_string()),
            other => DownloadError::Other(other.to_string()),
        }
    }
}

/// Whether a command-line input names a URL to download rather than a file.
pub(crate) fn is_url(text: &str) -> bool {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_information_becomes_basic_credentials_and_leaves_the_url() {
        let (bare, auth) = credentials("http://user:p%40ss@127.0.0.1:8000/cat.png");
        assert_eq!(bare, "http://127.0.0.1:8000/cat.png");
        // base64 of "user:p@ss", as `curl -u user:p@ss` sends it.
        assert_eq!(auth.as_deref(), Some("Basic dXNlcjpwQHNz"));
        let (bare, auth) = credentials("https://token@example.org/a.jpg?x=1");
        assert_eq!(
            (bare.as_str(), auth.as_deref()),
            ("https://example.org/a.jpg?x=1", Some("Basic dG9rZW46"))
        );
        assert_eq!(
            credentials("http://example.org/a@b.jpg"),
            ("http://example.org/a@b.jpg".into(), None)
        );
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redact("http://u:secret@h:8/a.jpg"), "http://u:***@h:8/a.jpg");
        assert_eq!(redact("https://token@h/a@b.jpg"), "https://***@h/a@b.jpg");
        assert_eq!(redact("http://h/a.jpg?x=@y"), "http://h/a.jpg?x=@y");
        assert_eq!(redact("http://a:b:c@h"), "http://a:***@h");
        assert_eq!(password("http://u:secret@h/"), Some("secret"));
        let err = DownloadError::Other("cannot reach http://u:secret@h/".into());
        assert_eq!(err.hiding("http://u:secret@h/").to_string(), "cannot reach http://u:***@h/");
    }

    #[test]
    fn urls_are_told_from_paths() {
        assert!(is_url("https://example.com/cat.jpg"));
        assert!(is_url("HTTP://example.com/cat.jpg"));
        assert!(!is_url("http:/cat.jpg"));
        assert!(!is_url("photos/http.jpg"));
        assert!(!is_url("-"));
    }
}
