//! The endpoints: what each answers, and the one-line JSON error of every refusal.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, Multipart, Query, Request, State,
};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::access::{self, Access};
use super::batcher::{Job, QueueFull, Task};
use super::connections::Admitted;
use super::Service;
use crate::output::json::Document;
use crate::output::{diagnostic, Outcome, Record};
use googlenet::Cancel;
use googlenet::{Input, Size};

/// The page served at `/`, its style sheet and its script: three files rather than one, so
/// that the policy allows no inline script or style.
const PAGE: &str = include_str!("page.html");
const PAGE_CSS: &str = include_str!("page.css");
const PAGE_JS: &str = include_str!("page.js");

/// What the page may load: only its own files, its API and the photos it was given.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data:; connect-src 'self'; frame-ancestors 'none'";

/// The service's routes.
pub fn router(service: Arc<Service>, access: Arc<Access>, verbose: bool) -> Router {
    let max_body = usize::try_from(service.limits.max_body).unwrap_or(usize::MAX);
    let router = Router::new()
        .route("/", get(|| page_file("text/html; charset=utf-8", PAGE)))
        .route("/page.css", get(|| page_file("text/css; charset=utf-8", PAGE_CSS)))
        .route("/page.js", get(|| page_file("text/javascript; charset=utf-8", PAGE_JS)))
        .route("/v1/health", get(health))
        .route("/v1/model", get(model))
        .route("/v1/classify", post(classify))
        .route("/v1/embed", post(embed))
        .route("/v1/explain", post(explain))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Multipart bodies are parsed from memory after the limit was enforced while reading.
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(service)
        .layer(axum::middleware::from_fn_with_state(access, access::check));
    match verbose {
        true => router.layer(axum::middleware::map_request(log_request)),
        false => router,
    }
}

/// Writes the method and path of `request` to stderr as it starts (`--verbose`).
async fn log_request(request: axum::extract::Request) -> axum::extract::Request {
    diagnostic(&format!("{} {}", request.method(), request.uri().path()));
    request
}

/// Cancels its work when dropped.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A refused request: its status and a one-line reason, answered as `{"error": reason}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// A refusal with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 503 with `Retry-After`: the server is too busy now.
    pub fn busy(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        // Also on the refusals made before the access check, or instead of it.
        let nosniff = HeaderValue::from_static("nosniff");
        response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, nosniff);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// One of the page's files, of type `content_type`, under the page's policy.
async fn page_file(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    (headers, body).into_response()
}

async fn health() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn model(State(service): State<Arc<Service>>) -> Response {
    Json(&service.info).into_response()
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint {method} {}; there are GET /, /v1/health, /v1/model and POST \
             /v1/classify, /v1/embed, /v1/explain",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{} does not take {method}", uri.path()))
}

/// A request's query parameters, refused like every other bad request.
struct Params<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(query)) => Ok(Params(query)),
            Err(err) => Err(ApiError::bad_request(err.body_text())),
        }
    }
}

/// The query of `/v1/classify`.
#[derive(Debug, Deserialize)]
struct ClassifyQuery {
    top_k: Option<usize>,
}

/// The query of `/v1/embed`.
#[derive(Debug, Deserialize)]
struct EmbedQuery {
    #[serde(default)]
    normalize: bool,
}

/// The query of `/v1/explain`.
#[derive(Debug, Deserialize)]
struct ExplainQuery {
    patch: Option<usize>,
    stride: Option<usize>,
}

async fn classify(
    State(service): State<Arc<Service>>,
    Params(query): Params<ClassifyQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let deadline = Instant::now() + service.limits.request_timeout;
    let classes = service.info.classes;
    let top_k = query.top_k.unwrap_or(service.top_k);
    if !(1..=classes).contains(&top_k) {
        return Err(ApiError::bad_request(format!("top_k must be 1 to {classes}, not {top_k}")));
    }
    let (inputs, _held) = service.images(request, deadline).await?;
    Ok(results(service.run(inputs, Task::Classify { top_k }, deadline).await?))
}

async fn embed(
    State(service): State<Arc<Service>>,
    Params(query): Params<EmbedQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let deadline = Instant::now() + service.limits.request_timeout;
    if let Err(reason) = &service.engines.features {
        return Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, reason.clone()));
    }
    let (inputs, _held) = service.images(request, deadline).await?;
    let task = Task::Embed { normalize: query.normalize };
    Ok(results(service.run(inputs, task, deadline).await?))
}

async fn explain(
    State(service): State<Arc<Service>>,
    Params(query): Params<ExplainQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let deadline = Instant::now() + service.limits.request_timeout;
    let (mut inputs, _held) = service.images(request, deadline).await?;
    let (Some(photo), None) = (inputs.pop(), inputs.pop()) else {
        return Err(ApiError::bad_request("explain takes one image per request"));
    };
    let settings = (query.patch.unwrap_or(32), query.stride.unwrap_or(16));
    let png = service.explain(photo, settings, deadline).await?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

/// The records as `classify --format json` writes them: 200 when every image has its answer,
/// 422 when some could not be read (their records say why).
fn results(records: Vec<Record>) -> Response {
    let failed = records.iter().any(|r| matches!(r.outcome, Outcome::Error(_)));
    let status = if failed { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    (status, Json(Document { results: &records, shapes: None })).into_response()
}

impl Service {
    /// The images of a request: its body, or each `file` part of a `multipart/form-data` body,
    /// read within `--max-body`, `--max-buffered` and `--body-timeout`, and by `deadline`; and
    /// the room the body takes of `--max-buffered`, to be held while its images are.
    async fn images(
        &self,
        request: Request,
        deadline: Instant,
    ) -> Result<(Vec<Input>, Held), ApiError> {
        let (parts, body) = request.into_parts();
        let limit = self.limits.max_body;
        if let Some(length) = content_length(&parts.headers) {
            if length > limit {
                return Err(too_large(limit));
            }
        }
        let body_deadline = deadline.min(Instant::now() + self.limits.body_timeout);
        let read = read_body(body, limit, &self.buffered, self.limits.max_buffered);
        let (bytes, held) =
            tokio::time::timeout_at(body_deadline, read).await.map_err(|_| {
                let within = if body_deadline < deadline {
                    format!("--body-timeout ({:.0?})", self.limits.body_timeout)
                } else {
                    self.timeout_text()
                };
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the request did not arrive within {within}"),
                )
            })??;
        if let Some(connection) = parts.extensions.get::<Arc<Admitted>>() {
            connection.serving(true);
        }
        let inputs = if is_multipart(&parts.headers) {
            file_parts(Request::from_parts(parts, Body::from(bytes))).await?
        } else if bytes.is_empty() {
            Vec::new()
        } else {
            vec![upload("-", &bytes)]
        };
        if inputs.is_empty() {
            return Err(ApiError::bad_request(
                "the request holds no image: send one as the body, or as multipart/form-data \
                 `file` parts",
            ));
        }
        Ok((inputs, held))
    }

    /// Queues `inputs` for `task` and waits for their records until `deadline`.
    async fn run(
        &self,
        inputs: Vec<Input>,
        task: Task,
        deadline: Instant,
    ) -> Result<Vec<Record>, ApiError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queue.submit(Job { inputs, task, reply }).map_err(|QueueFull| {
            ApiError::busy(format!(
                "the queue is full ({} requests, --queue); try again",
                self.batching.capacity
            ))
        })?;
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(records)) => Ok(records),
            Ok(Err(_)) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the worker running this request stopped",
            )),
            Err(_) => Err(ApiError::busy(format!(
                "no answer within {}: the server is busy; try again",
                self.timeout_text()
            ))),
        }
    }

    /// The PNG of `photo`'s occlusion map, `(patch, stride)` in input pixels. One map is made
    /// at a time, on all the worker threads.
    async fn explain(
        &self,
        photo: Input,
        (patch, stride): (usize, usize),
        deadline: Instant,
    ) -> Result<Vec<u8>, ApiError> {
        let side = self.info.input.width.min(self.info.input.height) as usize;
        if !(1..=side).contains(&patch) || stride == 0 {
            return Err(ApiError::bad_request(format!(
                "patch must be 1 to {side} pixels and stride at least 1"
            )));
        }
        let busy =
            || ApiError::busy(format!("no heatmap within {}; try again", self.timeout_text()));
        let permit =
            tokio::time::timeout_at(deadline, Arc::clone(&self.explaining).acquire_owned())
                .await
                .map_err(|_| busy())?
                .map_err(|_| busy())?;
        let engines = Arc::clone(&self.engines);
        // Giving up (the deadline, the client gone, the service stopping) drops the guard,
        // which stops the map at its next batch of occluded copies.
        let guard = CancelOnDrop(Cancel::new());
        let cancel = guard.0.clone();
        let work = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let name = photo.path().display().to_string();
            googlenet::explain::explain(&engines.classifier, &photo, (patch, stride), &cancel)
                .and_then(|explained| explained.png())
                .map_err(|err| format!("{name}: {err}"))
        });
        let answer = tokio::time::timeout_at(deadline, work).await;
        drop(guard);
        match answer {
            Ok(Ok(Ok(png))) => Ok(png),
            Ok(Ok(Err(reason))) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, reason)),
            Ok(Err(_)) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the heatmap's worker stopped",
            )),
            Err(_) => Err(busy()),
        }
    }

    fn timeout_text(&self) -> String {
        format!("--request-timeout ({:.0?})", self.limits.request_timeout)
    }
}

/// An uploaded image named `name`.
fn upload(name: &str, bytes: &[u8]) -> Input {
    Input::Upload { name: name.to_owned(), bytes: Arc::from(bytes) }
}

/// The `file` parts of a multipart request, each named by its file name (`-` without one).
async fn file_parts(request: Request) -> Result<Vec<Input>, ApiError> {
    let malformed =
        |reason: String| ApiError::bad_request(format!("malformed multipart body: {reason}"));
    let mut multipart =
        Multipart::from_request(request, &()).await.map_err(|err| malformed(err.body_text()))?;
    let mut inputs = Vec::new();
    while let Some(field) =
        multipart.next_field().await.map_err(|err| malformed(err.body_text()))?
    {
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().unwrap_or("-").to_owned();
        let bytes = field.bytes().await.map_err(|err| malformed(err.body_text()))?;
        inputs.push(upload(&name, &bytes));
    }
    Ok(inputs)
}

/// Room taken of `--max-buffered` by a request's body, given back when dropped.
#[derive(Debug, Default)]
pub struct Held(Option<OwnedSemaphorePermit>);

impl Held {
    /// The KiB held.
    fn kib(&self) -> usize {
        self.0.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Holds `permit` as well.
    fn add(&mut self, permit: OwnedSemaphorePermit) {
        match &mut self.0 {
            Some(held) => held.merge(permit),
            None => self.0 = Some(permit),
        }
    }
}

/// The request body, refused as soon as it passes `limit` bytes, or as soon as it would take
/// the bodies held at once (`buffered`, in KiB, of `max_buffered` bytes) past their limit; and
/// the room it takes of them.
async fn read_body(
    mut body: Body,
    limit: u64,
    buffered: &Arc<Semaphore>,
    max_buffered: u64,
) -> Result<(Bytes, Held), ApiError> {
    let mut bytes = Vec::new();
    let mut held = Held::default();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|err| ApiError::bad_request(format!("cannot read the request body: {err}")))?;
        if let Ok(data) = frame.into_data() {
            if (bytes.len() + data.len()) as u64 > limit {
                return Err(too_large(limit));
            }
            let kib = (bytes.len() + data.len()).div_ceil(1024);
            let more = u32::try_from(kib - held.kib()).unwrap_or(u32::MAX);
            let permit = Arc::clone(buffered).try_acquire_many_owned(more).map_err(|_| {
                ApiError::busy(format!(
                    "the service holds {} of request bodies, its limit (--max-buffered); try \
                     again",
                    Size(max_buffered)
                ))
            })?;
            held.add(permit);
            bytes.extend_from_slice(&data);
        }
    }
    Ok((Bytes::from(bytes), held))
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is over {} (--max-body)", Size(limit)),
    )
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().to_ascii_lowercase().starts_with("multipart/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `chunks` chunks of `size` bytes, without a length: as a chunked body arrives.
    fn chunked(chunks: usize, size: usize) -> Body {
        let chunks = (0..chunks).map(move |_| Ok::<_, std::io::Error>(Bytes::from(vec![7; size])));
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    /// `body` read within `limit`, with room for 1 GiB of bodies.
    fn read(body: Body, limit: u64) -> Result<Bytes, ApiError> {
        let buffered = Arc::new(Semaphore::new(1 << 20));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        Ok(runtime.block_on(read_body(body, limit, &buffered, 1 << 30))?.0)
    }

    #[test]
    fn a_body_is_read_whole_up_to_the_limit() {
        assert_eq!(read(chunked(4, 1000), 4000).unwrap().len(), 4000);
    }

    #[test]
    fn a_body_without_a_length_is_refused_once_it_passes_the_limit() {
        let err = read(chunked(100_000, 65_536), 4 << 20).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(err.message, "the request body is over 4 MiB (--max-body)");
    }

    #[test]
    fn bodies_held_at_once_are_bounded_and_their_room_given_back() {
        let buffered = Arc::new(Semaphore::new(10));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let read =
            |size| runtime.block_on(read_body(chunked(size, 1024), 1 << 20, &buffered, 10 << 10));
        let (bytes, held) = read(6).unwrap();
        assert_eq!((bytes.len(), buffered.available_permits()), (6 << 10, 4));
        let err = read(6).unwrap_err();
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            err.message,
            "the service holds 10 KiB of request bodies, its limit (--max-buffered); try again"
        );
        assert_eq!(buffered.available_permits(), 4, "a refused body gives its room back");
        drop(held);
        assert_eq!(buffered.available_permits(), 10);
    }
}
