use std::process::ExitCode;

use clap::Parser;
use googlenet::cli::Cli;
use googlenet::commands::{self, Status};

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
            googlenet::output::diagnostic(&format!("error: {}", googlenet::output::one_line(&err)));
            ExitCode::from(1)
        }
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
