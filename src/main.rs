//! The `googlenet` command: the command line, its output and the service, on top of the
//! `googlenet` library.

#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

#[allow(unsafe_code, reason = "the global allocator, the binary's only unsafe code")]
mod alloc;
mod cli;
mod commands;
mod fetch;
mod output;
mod serve;

use std::process::ExitCode;

use clap::Parser;

use cli::Cli;
use commands::Status;

fn main() -> ExitCode {
    googlenet::guard::install_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 1 } else { 0 });
        }
    };
    match commands::run(cli) {
        Ok(Status::Success) => ExitCode::SUCCESS,
        Ok(Status::SomeInputsFailed) => ExitCode::from(2),
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            output::diagnostic(&format!("error: {}", message(&err)));
            ExitCode::from(1)
        }
    }
}

/// The error that ended the run, on one line as the command line words it: a library setting
/// named as its flag (`top_k` as `--top-k`), also under the context the command added.
fn message(err: &anyhow::Error) -> String {
    let line = output::one_line(err.as_ref());
    match err.downcast_ref::<googlenet::Error>() {
        Some(googlenet::Error::Setting { setting: googlenet::ISA_ENV, .. }) => line,
        Some(bad @ googlenet::Error::Setting { setting, problem }) => {
            let flag = format!("--{} {problem}", setting.replace('_', "-"));
            line.replacen(&bad.to_string(), &flag, 1)
        }
        _ => line,
    }
}

/// Whether the reader of stdout went away (`googlenet classify ... | head`).
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
