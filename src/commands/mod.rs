//! The subcommands: glue from parsed arguments to the library's modules.

mod embed;
mod experiment;
mod explain;
mod serve;
mod similar;

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{ensure, Context, Result};

use googlenet::eval::{true_synset, Report, Tally};
use googlenet::inputs::{read_list, shard, Walk};
use googlenet::inspect::profile::Profile;
use googlenet::inspect::{modules, Network};
use googlenet::{cache_path, redact_url, Classifier, Downloader, Input};

use crate::cli::{
    ClassifyArgs, Cli, Command, EvalArgs, Experiment, FetchModelArgs, InputArgs, InspectArgs,
    ReportFormat,
};
use crate::fetch::{self, Expected};
use crate::output::{diagnostic, path_text, resume, Format, Outcome, Output, Progress};

/// How a run ended, short of a fatal error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every input was processed.
    Success,
    /// The run finished, but some inputs could not be processed (exit code 2).
    SomeInputsFailed,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<Status> {
    match cli.command {
        Command::Classify(args) => classify(&args, cli.verbose),
        Command::Eval(args) => eval(&args, cli.verbose),
        Command::Inspect(args) => inspect(&args),
        Command::FetchModel(args) => fetch_model(&args),
        Command::Experiment(Experiment::ConcatOrder(args)) => {
            experiment::concat_order(&args, cli.verbose)
        }
        Command::Experiment(Experiment::ChannelUse(args)) => {
            experiment::channel_use(&args, cli.verbose)
        }
        Command::Experiment(Experiment::Ablate(args)) => experiment::ablate(&args, cli.verbose),
        Command::Explain(args) => explain::explain(&args, cli.verbose),
        Command::Embed(args) => embed::embed(&args, cli.verbose),
        Command::Similar(args) => similar::similar(&args, cli.verbose),
        Command::Serve(args) => serve::serve(&args, cli.verbose),
    }
}

fn inspect(args: &InspectArgs) -> Result<Status> {
    let json = args.format == ReportFormat::Json;
    let builder = Classifier::builder().model_or_default(args.model.as_deref());
    if let Some(image) = &args.profile {
        let batch = usize::from(args.batch_size);
        let builder = builder.batch_size(Some(batch)).precision(args.precision.0);
        let classifier = loaded(builder.build())?;
        announce(&classifier.describe(), classifier.note(), false);
        let input = image.as_ref().map(Input::from_arg);
        let profile =
            classifier.profile(input.as_ref(), args.runs).with_context(|| match image {
                Some(path) => format!("cannot profile with {}", path.display()),
                None => "cannot profile".to_owned(),
            })?;
        print_report(&profile, json, Profile::to_text)?;
        return Ok(Status::Success);
    }
    let network = builder.network(args.input_shape.as_deref())?;
    if args.modules {
        let modules = modules::find_modules(&network);
        let stages = modules::stages(&network, &modules, args.paper);
        let table = ModuleTable { stages, modules };
        print_report(&table, json, |t| modules::to_text(&t.stages, &t.modules))?;
    } else {
        print_report(&network, json, Network::to_text)?;
    }
    Ok(Status::Success)
}

/// What `inspect --modules --format json` prints.
#[derive(serde::Serialize)]
struct ModuleTable {
    stages: Vec<modules::Stage>,
    modules: Vec<modules::Module>,
}

fn print_report<T: serde::Serialize>(
    report: &T,
    json: bool,
    text: impl Fn(&T) -> String,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", text(report))?;
    }
    Ok(())
}

fn classify(args: &ClassifyArgs, verbose: bool) -> Result<Status> {
    let format = args.format.map(|f| f.0).unwrap_or_else(|| match &args.output {
        None if std::io::stdout().is_terminal() => Format::Table,
        _ => Format::Jsonl,
    });
    ensure!(!args.resume || format == Format::Jsonl, "--resume needs --format jsonl");
    ensure!(
        !args.shapes || format != Format::Csv,
        "--shapes has no place in CSV: use --format jsonl, json or table"
    );
    let resume = args.output.as_deref().filter(|_| args.resume);
    let inputs = pending_inputs(&args.inputs, resume)?;
    let builder = args.classifier.builder(inputs.len(), args.top_k, args.crops);
    let classifier = loaded(builder.build())?;
    announce(&classifier.describe(), classifier.note(), verbose);
    let mut output = match &args.output {
        Some(path) => Output::file(format, path, args.resume)?,
        None => Output::stdout(format),
    };
    if args.shapes {
        output.shapes(&classifier.shapes()?)?;
    }
    let mut progress = progress(&inputs, args.classifier.runner.run.quiet, "classified");
    let result =
        classifier.classify_each(&inputs, |record| progress.sink(record, |r| output.record(&r)));
    let written = result.and_then(|()| output.finish());
    let failed = summarise(progress, written)?;
    Ok(status(failed))
}

fn eval(args: &EvalArgs, verbose: bool) -> Result<Status> {
    let inputs = pending_inputs(&args.inputs, None)?;
    let builder = args.classifier.builder(inputs.len(), 5, args.crops);
    let classifier = loaded(builder.build())?;
    announce(&classifier.describe(), classifier.note(), verbose);
    let mut tally = Tally::default();
    let mut unlabelled = Vec::new();
    let mut progress = progress(&inputs, args.classifier.runner.run.quiet, "classified");
    let result = classifier.classify_each(&inputs, |record| {
        progress.sink(record, |record| {
            let Outcome::Predictions(predictions) = &record.outcome else {
                tally.add_failure();
                return Ok(());
            };
            let truth = true_synset(Path::new(&record.path));
            match truth.as_deref().and_then(|synset| classifier.labels().by_synset(synset)) {
                Some((index, _)) => tally.add(index, predictions),
                None => {
                    tally.add_failure();
                    unlabelled.push(record.path);
                }
            }
            Ok(())
        })
    });
    let failed = summarise(progress, result)?;
    for path in &unlabelled {
        diagnostic(&format!("{path}: no known synset in the file or folder name; not counted"));
    }
    let report = tally.report(classifier.labels(), args.confusions);
    print_report(&report, args.format == ReportFormat::Json, Report::to_text)?;
    Ok(status(failed + unlabelled.len()))
}

fn status(failed: usize) -> Status {
    if failed == 0 {
        Status::Success
    } else {
        Status::SomeInputsFailed
    }
}

/// A progress bar on stderr for a run over `inputs` that counts each success as `verb`,
/// warning first of the names that are not valid UTF-8.
fn progress(inputs: &[Input], quiet: bool, verb: &'static str) -> Progress {
    let progress = Progress::new(inputs.len(), quiet, verb);
    for input in inputs.iter().filter(|input| input.path().to_str().is_none()) {
        progress.warn(&format!(
            "{}: name is not valid UTF-8; shown with U+FFFD",
            path_text(input.path())
        ));
    }
    progress
}

/// Ends the progress bar with the summary, which says whether `written` failed, and returns how
/// many inputs failed.
fn summarise(progress: Progress, written: Result<()>) -> Result<usize> {
    let failed = progress.failures();
    progress.finish(written.is_ok());
    written.map(|()| failed)
}

/// Writes the load's `note` (why it runs at another precision than asked), and with
/// `verbose` what was loaded and how, to stderr.
fn announce(describe: &[String], note: Option<&str>, verbose: bool) {
    if let Some(note) = note {
        diagnostic(note);
    }
    if verbose {
        describe.iter().for_each(|line| diagnostic(line));
    }
}

/// `built`, a model the library loaded, after handing the heap's free pages back to the
/// system: loading peaks well above what it keeps.
fn loaded<T>(built: googlenet::Result<T>) -> googlenet::Result<T> {
    crate::alloc::release_free_heap();
    built
}

/// [`discover_inputs`], less those already in the JSON Lines file `resume`; an error when
/// there are none at all.
fn pending_inputs(args: &InputArgs, resume: Option<&Path>) -> Result<Vec<Input>> {
    let mut inputs = discover_inputs(args)?;
    ensure!(!inputs.is_empty(), "no images found in {}", describe_paths(args));
    if let Some(path) = resume {
        let done = resume::completed_paths(path)?;
        inputs.retain(|input| !done.contains(&path_text(input.path())));
    }
    Ok(inputs)
}

/// The inputs named on the command line and by `--files-from`, walked, sorted and sharded.
fn discover_inputs(args: &InputArgs) -> Result<Vec<Input>> {
    let mut roots = args.paths.clone();
    if let Some(list) = &args.files_from {
        ensure!(
            list != Path::new("-") || !roots.iter().any(|root| root == Path::new("-")),
            "stdin cannot hold both the list of --files-from - and an image (-)"
        );
        roots.extend(read_list(list).context("--files-from")?);
    }
    let walk = Walk::new(!args.no_recursive, &args.include, &args.exclude)?;
    let inputs = walk.discover(&roots);
    Ok(match args.shard {
        Some(slice) => shard(inputs, slice),
        None => inputs,
    })
}

fn describe_paths(args: &InputArgs) -> String {
    let mut names: Vec<String> =
        args.paths.iter().map(|p| redact_url(&p.display().to_string())).collect();
    if let Some(list) = &args.files_from {
        names.push(format!("the paths of {}", list.display()));
    }
    names.join(", ")
}

fn fetch_model(args: &FetchModelArgs) -> Result<Status> {
    let dest = cache_path().context("no user cache folder: set XDG_CACHE_HOME")?;
    let expected = match &args.sha256 {
        Some(hex) => Expected::sha256(hex)?,
        None => Expected::zoo(),
    };
    if !args.force && expected.matches_file(&dest) {
        diagnostic(&format!("{} is already installed and verified", dest.display()));
        return Ok(Status::Success);
    }
    match &args.from {
        Some(from) => fetch::copy(from, &expected, &dest)?,
        None => {
            let downloader =
                Downloader::new(args.connect_timeout, args.download_timeout, fetch::MAX_DOWNLOAD);
            let url = args.url.as_deref().unwrap_or(fetch::ZOO_URL);
            fetch::download(&downloader, url, &expected, &dest)?
        }
    }
    diagnostic(&format!("installed {} (sha256 {})", dest.display(), expected.sha256));
    Ok(Status::Success)
}
