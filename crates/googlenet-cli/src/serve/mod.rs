//! `googlenet serve`: the classifier as a local HTTP service, with a page to drop photos on.
//!
//! Requests are read on one async thread ([`routes`]); their images wait in one bounded queue
//! for the worker threads ([`batcher`]), which batch requests together and run them on the
//! shared plans. Every wait is bounded: connections (`--max-connections`), the queue
//! (`--queue`), bodies (`--max-body`) and time (`--request-timeout`, headers included).
//! Refusals are JSON `{"error": ...}` with their status; a full server answers 503 at once.

pub mod batcher;
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

use googlenet::ModelInfo;

use crate::output::diagnostic;
use batcher::{Batching, Engines, Queue};
use routes::ApiError;

/// The bounds on what requests may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest request body, in bytes.
    pub max_body: u64,
    /// Connections served at once.
    pub max_connections: usize,
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
}

/// Serves on `listener` until `shutdown` completes, then stops accepting, lets the requests in
/// flight finish (for at most `--request-timeout`) and lets the workers empty the queue. With
/// `verbose`, each request's method and path are written to stderr as it starts.
pub async fn serve(
    listener: TcpListener,
    (engines, info): (Engines, ModelInfo),
    limits: Limits,
    batching: Batching,
    verbose: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let engines = Arc::new(engines);
    let (queue, workers) = batcher::Workers::start(Arc::clone(&engines), batching);
    let top_k = info.top_k;
    let explaining = Arc::new(Semaphore::new(1));
    let service = Service { queue, engines, info, limits, batching, top_k, explaining };
    let router = routes::router(Arc::new(service), verbose);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.request_timeout);
    tokio::pin!(shutdown);
    loop {
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
        let io = TokioIo::new(stream);
        match Arc::clone(&connections).try_acquire_owned() {
            Ok(permit) => {
                let service = TowerToHyperService::new(router.clone());
                let connection = graceful.watch(http.serve_connection(io, service));
                tokio::spawn(async move {
                    // A connection that fails (reset, timed out) concerns only its client.
                    let _ = connection.await;
                    drop(permit);
                });
            }
            Err(_) => {
                let refusal = http.clone().keep_alive(false).serve_connection(io, too_many(limits));
                tokio::spawn(graceful.watch(refusal));
            }
        }
    }
    drop(listener);
    drop(router);
    if tokio::time::timeout(limits.request_timeout, graceful.shutdown()).await.is_err() {
        diagnostic("warning: closed the connections still open after --request-timeout");
    }
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
