//! `googlenet serve`: the models loaded once, then the HTTP service until SIGINT or SIGTERM.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::ValueEnum;

use super::{default_threads, load_labels, load_model, Head, Status};
use crate::cli::ServeArgs;
use crate::crops::Crops;
use crate::download::Downloader;
use crate::model::ModelSource;
use crate::output::{diagnostic, one_line};
use crate::pipeline::{Classifier, Runner};
use crate::serve::batcher::{Batching, Engines};
use crate::serve::{self, InputInfo, Limits, ModelInfo};

pub(super) fn serve(args: &ServeArgs, verbose: bool) -> Result<Status> {
    let source = ModelSource::resolve(args.model.as_deref())?;
    let bytes = source.bytes()?;
    let batch = usize::from(args.batch_size);
    let (model, preprocess, preset) =
        load_model(&source, &bytes, batch, &args.preprocess, Head::Scores, verbose)?;
    let labels = load_labels(args.labels.as_deref(), model.classes)?;
    let top_k = usize::from(args.top_k);
    anyhow::ensure!(
        top_k <= model.classes,
        "--top-k {top_k} exceeds the {} classes the model scores",
        model.classes
    );
    // Uploads are the only inputs here: the client for URLs is never asked to download.
    let runner = |(model, preprocess, _)| Runner {
        model,
        preprocess,
        downloader: Downloader::default(),
        crops: Crops::One,
    };
    let features =
        load_model(&source, &bytes, batch, &args.preprocess, Head::Features(None), verbose)
            .map(runner)
            .map_err(|err| format!("this model's features cannot be found: {}", one_line(&err)));
    let info = ModelInfo {
        name: source.path.file_stem().map_or_else(String::new, |n| n.to_string_lossy().into()),
        source: source.to_string(),
        input: InputInfo {
            name: model.input.name.clone(),
            width: model.input.width,
            height: model.input.height,
        },
        output: model.output_name.clone(),
        classes: model.classes,
        features: features.as_ref().ok().map(|f| f.model.classes),
        preset: preset.to_possible_value().map_or_else(String::new, |v| v.get_name().to_owned()),
        top_k,
    };
    let classifier = Classifier { runner: runner((model, preprocess, preset)), labels, top_k };
    let engines = Engines { classifier, features };
    let limits = Limits {
        max_body: args.max_body,
        max_connections: usize::from(args.max_connections),
        request_timeout: args.request_timeout,
    };
    let batching = Batching {
        threads: args.threads.map_or_else(default_threads, usize::from),
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
        serve::serve(listener, engines, info, limits, batching, shutdown()).await
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
