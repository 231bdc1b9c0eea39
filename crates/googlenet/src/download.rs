//! Downloading the images named by `http://` and `https://` URLs: bounded in bytes, in time
//! and in redirects, each failure one typed error that becomes that input's record.

use std::io;
use std::time::Duration;

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
    /// The body is larger than any image within the pixel limit can be.
    #[error("over {}, more than an image within --max-pixels can take", Size(*.limit))]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
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

/// An HTTP client with the limits of one run: shared by the workers, each download on the
/// worker that classifies it.
#[derive(Debug, Clone)]
pub struct Downloader {
    agent: ureq::Agent,
}

/// The default limits: 10 s to connect, 60 s for a whole download.
impl Default for Downloader {
    fn default() -> Downloader {
        Downloader::new(Duration::from_secs(10), Duration::from_secs(60))
    }
}

impl Downloader {
    /// A client that gives up connecting after `connect`, waiting for an answer after
    /// [`ANSWER_TIMEOUT`] (or `total`, if shorter), and downloading after `total`.
    pub fn new(connect: Duration, total: Duration) -> Downloader {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(connect))
            .timeout_recv_response(Some(ANSWER_TIMEOUT.min(total)))
            .timeout_global(Some(total))
            .max_redirects(MAX_REDIRECTS)
            .user_agent(concat!("googlenet/", env!("CARGO_PKG_VERSION")))
            .build();
        Downloader { agent: config.into() }
    }

    /// The body at `url`, refused past `limit` bytes without reading further.
    pub fn get(&self, url: &str, limit: u64) -> Result<Vec<u8>, DownloadError> {
        let (body, announced) = self.open(url, limit)?;
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

    /// The body at `url` to read as it arrives, which fails past `limit` bytes, and the length
    /// the server announced; refused at once when that is over `limit`.
    pub fn open(
        &self,
        url: &str,
        limit: u64,
    ) -> Result<(impl io::Read + use<>, Option<u64>), DownloadError> {
        let response = self.agent.get(url).call().map_err(DownloadError::from)?;
        let announced = response.body().content_length();
        if announced.is_some_and(|len| len > limit) {
            return Err(DownloadError::TooLarge { limit });
        }
        let body = response.into_body().into_with_config().limit(limit.saturating_add(1));
        Ok((body.reader(), announced))
    }
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
                DownloadError::Timeout("--download-timeout".into())
            }
            ureq::Error::Timeout(ureq::Timeout::Connect) => {
                DownloadError::Timeout("--connect-timeout".into())
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
    fn urls_are_told_from_paths() {
        assert!(is_url("https://example.com/cat.jpg"));
        assert!(is_url("HTTP://example.com/cat.jpg"));
        assert!(!is_url("http:/cat.jpg"));
        assert!(!is_url("photos/http.jpg"));
        assert!(!is_url("-"));
    }
}
