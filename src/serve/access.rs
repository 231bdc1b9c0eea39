//! Who may use the service: requests whose `Host` is not the service's are refused (a web page
//! reaching the loopback service through DNS rebinding names its own host), and so are
//! cross-origin requests from any page but those given with `--allow-origin`, which get the
//! CORS answers they need. Both headers are compared as ASCII, failing closed: a `Host` or an
//! `Origin` that is not ASCII text, an HTTP/1.1 request without a `Host`, and one with two are
//! refused. Every answer says `nosniff`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::routes::ApiError;

/// The hosts and origins the service answers.
#[derive(Debug, Clone)]
pub struct Access {
    /// The address the service is bound to: its requests may name it as their host (any
    /// address, where the service listens on all of them).
    pub bound: IpAddr,
    /// More host names to answer (`--allow-host`), besides `localhost`.
    pub hosts: Vec<String>,
    /// The origins of other pages that may call the API (`--allow-origin`).
    pub origins: Vec<String>,
}

impl Access {
    /// Whether a request naming `host` (the `Host` header, port and all) is for this service.
    fn answers_host(&self, host: &str) -> bool {
        let name = strip_port(host);
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            Ok(ip) => self.bound.is_unspecified() || ip == self.bound,
            Err(_) => {
                name.eq_ignore_ascii_case("localhost")
                    || self.hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(name))
            }
        }
    }

    /// Whether the page of `origin` was allowed to call the API with `--allow-origin`.
    fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin))
    }
}

/// `host` without its port: `127.0.0.1:8080` is `127.0.0.1`, `[::1]:8080` is `[::1]`.
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(colon) if !host.ends_with(']') && host.get(colon + 1..).is_some_and(is_port) => {
            host.get(..colon).unwrap_or(host)
        }
        _ => host,
    }
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// The request's one `Host`, as ASCII text (`None` for an HTTP/1.0 request without one), or
/// its refusal: 400 for a missing (HTTP/1.1 requires it), repeated or non-ASCII `Host`, 421 for
/// a host this service does not answer.
fn host<'a>(access: &Access, request: &'a Request) -> Result<Option<&'a str>, ApiError> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (None, _) if request.version() >= Version::HTTP_11 => {
            return Err(ApiError::bad_request("an HTTP/1.1 request needs a Host header"));
        }
        (None, _) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("a request has one Host header, not several"));
        }
        (Some(host), None) => {
            host.to_str().map_err(|_| ApiError::bad_request("the Host header is not ASCII text"))?
        }
    };
    if !access.answers_host(host) {
        let message = format!(
            "this service does not answer for the host `{host}`; start it with --allow-host \
             {} to answer it",
            strip_port(host)
        );
        return Err(ApiError::new(StatusCode::MISDIRECTED_REQUEST, message));
    }
    Ok(Some(host))
}

/// The request's `Origin` as ASCII text, if it has one, or its refusal (403) where it is not.
fn origin(request: &Request) -> Result<Option<String>, ApiError> {
    match request.headers().get(header::ORIGIN).map(HeaderValue::to_str) {
        None => Ok(None),
        Some(Ok(origin)) => Ok(Some(origin.to_owned())),
        Some(Err(_)) => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "the Origin header is not ASCII text"))
        }
    }
}

/// Refuses a request for another host (421), a malformed `Host` (400) or one from another
/// page's origin (403), answers a CORS preflight from an allowed origin, and marks every
/// answer `nosniff` (and, for an allowed origin, readable by it).
pub async fn check(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let (host, origin) = match (host(&access, &request), origin(&request)) {
        (Ok(host), Ok(origin)) => (host, origin),
        (Err(refused), _) | (_, Err(refused)) => return refused.into_response(),
    };
    let own = host.map(|host| format!("http://{host}"));
    let allowed = origin.as_deref().filter(|origin| access.allows_origin(origin));
    let foreign = origin.as_deref().filter(|origin| Some(*origin) != own.as_deref());
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    let mut response = match (foreign, allowed) {
        (Some(_), Some(origin)) if request.method() == Method::OPTIONS => preflight(origin),
        (Some(origin), None) if changes => ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "a request from the page of {origin} is refused; start the service with \
                 --allow-origin {origin} to let that page use it"
            ),
        )
        .into_response(),
        _ => next.run(request).await,
    };
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Some(value) = allowed.and_then(|origin| HeaderValue::from_str(origin).ok()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// The answer to an allowed origin's CORS preflight: the methods and the header it may send.
fn preflight(origin: &str) -> Response {
    let headers = [
        (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, "content-type"),
        (header::ACCESS_CONTROL_MAX_AGE, "600"),
    ];
    let mut response = (StatusCode::NO_CONTENT, headers).into_response();
    if let Ok(value) = HeaderValue::from_str(origin) {
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(bound: &str) -> Access {
        Access {
            bound: bound.parse().unwrap(),
            hosts: vec!["photos.lan".into()],
            origins: vec!["http://app.example".into()],
        }
    }

    #[test]
    fn hosts_are_the_bound_address_localhost_and_those_allowed() {
        let loopback = access("127.0.0.1");
        for host in ["127.0.0.1:8080", "127.0.0.1", "localhost:8080", "LOCALHOST", "photos.lan:1"] {
            assert!(loopback.answers_host(host), "{host}");
        }
        for host in ["evil.example", "evil.example:8080", "10.0.0.2:8080", "[::1]:8080", ""] {
            assert!(!loopback.answers_host(host), "{host}");
        }
        let everywhere = access("::");
        assert!(everywhere.answers_host("[::1]:8080") && everywhere.answers_host("10.0.0.2"));
        assert!(!everywhere.answers_host("evil.example"));
    }

    #[test]
    fn ports_are_stripped_only_where_there_is_one() {
        assert_eq!(strip_port("a:80"), "a");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("a:b"), "a:b");
    }
}
