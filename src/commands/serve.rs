//! `googlenet serve`: the models loaded once, then the HTTP service until SIGINT or SIGTERM.

use std::time::Duration;

use anyhow::{Context, Result};
use googlenet::{Classifier, Embedder};

use super::{announce, loaded, Status};
use crate::cli::ServeArgs;
use crate::output::diagnostic;
use crate::serve::access::Access;
use crate::serve::batcher::{Batching, Engines};
use crate::serve::{self, Limits};

pub(super) fn serve(args: &ServeArgs, verbose: bool) -> Result<Status> {
    let batch = usize::from(args.batch_size);
    let builder = Classifier::builder()
        .model_or_default(args.model.as_deref())
        .preset(args.preprocess.preset.map(|p| p.0))
        .adjust(args.preprocess.adjust())
        .labels(args.labels.as_deref())
        .batch_size(Some(batch))
        .threads(args.threads.map(usize::from))
        .precision(args.precision.0)
        .top_k(args.top_k.into());
    let classifier = loaded(builder.build())?;
    announce(&classifier.describe(), classifier.note(), verbose);
    let features = loaded(classifier.embedder(None))
        .inspect(|embedder| announce(&embedder.describe(), None, verbose))
        .map_err(|err| format!("this model's features cannot be found: {err}"));
    let info = classifier.info(features.as_ref().ok().map(Embedder::width));
    let threads = classifier.threads();
    let engines = Engines { classifier, features };
    let limits = Limits {
        max_body: args.max_body,
        max_connections: usize::from(args.max_connections),
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        max_buffered: args.max_buffered,
        request_timeout: args.request_timeout,
    };
    let batching = Batching {
        threads,
        images: batch,
        wait: Duration::from_millis(u64::from(args.batch_wait)),
        capacity: usize::from(args.queue),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let address = listener.local_addr()?;
        diagnostic(&format!(
            "listening on http://{address}/ ({} workers; Ctrl-C stops)",
            batching.threads
        ));
        if !address.ip().is_loopback() {
            diagnostic("warning: not a loopback address: other machines can use this service");
        }
        let access = Access {
            bound: address.ip(),
            hosts: args.allow_hosts.clone(),
            origins: args.allow_origins.clone(),
        };
        serve::serve(listener, (engines, info), (limits, access), batching, verbose, shutdown())
            .await
    })?;
    diagnostic("stopped");
    Ok(Status::Success)
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                return;
            }
            Err(err) => diagnostic(&format!("warning: SIGTERM will not stop the service: {err}")),
        }
    }
    // Without a handler for Ctrl-C either, the default action (stop at once) stays.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
