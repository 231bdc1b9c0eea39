//! The `googlenet` binary driven as a user drives it: the command line, batches, inputs,
//! output formats, the service and its page, the experiments, and the fuzzers' findings replayed.

mod batch;
mod cli;
mod common;
mod crops;
mod embed;
mod experiments;
mod families;
mod fetch_model;
mod fuzz_regressions;
mod hostile;
mod inputs;
mod inspect;
mod page;
mod precision;
mod serve;
mod serve_attacks;
mod similar;
