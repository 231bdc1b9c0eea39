//! `googlenet serve`: the classifier as a local HTTP service, with a page to drop photos on.
//!
//! Requests are read on one async thread ([`routes`]); their images wait in one bounded queue
//! for the worker threads ([`batcher`]), which batch requests together and run them on the
//! shared plans. Every wait is bounded: connections (`--max-connections`, the one waiting
//! longest for its headers giving way to a new one: [`connections`]), headers
//! (`--header-timeout`), the queue (`--queue`), bodies (`--max-body`) and time
//! (`--request-timeout`), and a request that gives up stops its work at the next batch. Only
//! requests for this service's host, and from its own page or those allowed, are answered
//! ([`access`]). Refusals are JSON `{"error": ...}` with their status, hyper's own included
//! ([`conn`]); a full server answers 503 at once.

pub mod access;
pub mod batcher;
mod conn;
mod connections;
pub mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use googlenet::ModelInfo;
use hyper::service::Service as _;

use crate::output::diagnostic;
use access::Access;
use batcher::{Batching, Engines, Queue};
use conn::JsonErrors;
use connections::Connections;
use routes::ApiError;

/// The most a request's line and headers may take, read: beyond, it is answered 431 (a URI
/// over 64 KiB, 414).
const MAX_HEAD_BYTES: usize = 128 << 10;

/// The bounds on what requests may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest request body, in bytes.
    pub max_body: u64,
    /// Connections open at once.
    pub max_connections: usize,
    /// The longest a request may take to send its headers.
    pub header_timeout: Duration,
    /// The longest a request may take to send its body, once its headers are in.
    pub body_timeout: Duration,
    /// The most bytes of request bodies held at once.
    pub max_buffered: u64,
    /// The longest a request may take, from its first header byte to its answer.
    pub request_timeout: Duration,
}

/// The state the handlers share.
#[derive(Debug)]
pub struct Service {
    queue: Queue,
    engines: Arc<Engines>,
    info: ModelInfo,
    limits: Limits,
    batching: Batching,
    top_k: usize,
    /// One occlusion map at a time: a map takes every worker for seconds.
    explaining: Arc<Semaphore>,
    /// The request bodies held at once, in KiB: `--max-buffered`.
    buffered: Arc<Semaphore>,
}

/// Serves on `listener` until `shutdown` completes, then stops accepting, lets the requests in
/// flight finish or time out (at most `--request-timeout`), stops the workers' batches and
/// returns. With `verbose`, each request's method and path are written to stderr as it starts.
pub async fn serve(
    listener: TcpListener,
    (engines, info): (Engines, ModelInfo),
    (limits, access): (Limits, Access),
    batching: Batching,
    verbose: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let engines = Arc::new(engines);
    let (queue, workers) = batcher::Workers::start(Arc::clone(&engines), batching);
    let top_k = info.top_k;
    let explaining = Arc::new(Semaphore::new(1));
    let kib = usize::try_from(limits.max_buffered.div_ceil(1024)).unwrap_or(usize::MAX);
    let buffered = Arc::new(Semaphore::new(kib.min(Semaphore::MAX_PERMITS)));
    let service = Service { queue, engines, info, limits, batching, top_k, explaining, buffered };
    let router = routes::router(Arc::new(service), Arc::new(access), verbose);
    let connections = Connections::new(limits.max_connections);
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    // Every connection's task, so that those still open when the grace ends can be dropped.
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of descriptors, say: wait for connections to close.
                    diagnostic(&format!("warning: cannot accept a connection: {err}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let io = TokioIo::new(JsonErrors::new(stream));
        let Some((admitted, evicted)) = connections.admit() else {
            let refusal = http.clone().keep_alive(false).serve_connection(io, too_many(limits));
            let refusal = graceful.watch(refusal);
            tasks.spawn(async move {
                let _ = refusal.await;
            });
            continue;
        };
        let admitted = Arc::new(admitted);
        let tower = TowerToHyperService::new(router.clone());
        let marked = Arc::clone(&admitted);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            // The handler marks the connection serving once the request's body is in: until
            // then it may give way to a new connection, as one waiting for headers does.
            request.extensions_mut().insert(Arc::clone(&marked));
            let (answer, marked) = (tower.call(request), Arc::clone(&marked));
            async move {
                let response = answer.await;
                marked.serving(false);
                response
            }
        });
        let connection = graceful.watch(http.serve_connection(io, service));
        tasks.spawn(async move {
            // A connection that fails (reset, timed out) concerns only its client; one that
            // gave way to a new one is closed here.
            tokio::select! {
                _ = connection => {}
                _ = evicted => {}
            }
            drop(admitted);
        });
    }
    drop(listener);
    drop(router);
    if tokio::time::timeout(limits.request_timeout, graceful.shutdown()).await.is_err() {
        diagnostic("warning: closed the connections still open after --request-timeout");
        // Dropping their requests cancels their work (a heatmap stops at its next batch) and
        // lets go of the queue: the workers, joined below on this runtime's one thread, wait
        // for the queue to close, which a request still held open would never do.
        tasks.shutdown().await;
    }
    workers.stop();
    workers.join();
    Ok(())
}

/// A service answering every request 503: too many connections.
fn too_many(
    limits: Limits,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = std::future::Ready<Result<axum::response::Response, std::convert::Infallible>>,
> + Clone {
    hyper::service::service_fn(move |_| {
        let message = format!(
            "too many connections ({}, --max-connections); try again",
            limits.max_connections
        );
        std::future::ready(Ok(ApiError::busy(message).into_response()))
    })
}
