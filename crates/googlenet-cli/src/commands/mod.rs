//! The subcommands: glue from parsed arguments to the library's modules.

mod embed;
mod experiment;
mod explain;
mod serve;
mod similar;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use googlenet::download::{redact, Downloader};
use googlenet::eval::{true_synset, Report, Tally};
use googlenet::files::{read_at_most, read_up_to, Size};
use googlenet::inspect::profile::Profile;
use googlenet::inspect::{modules, Network};
use googlenet::model::{cache_path, ModelSource};
use googlenet::pipeline::{discover, Input, Walk};
use googlenet::{Classifier, Plan};

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
    let source = ModelSource::resolve(args.model.as_deref())?;
    let json = args.format == ReportFormat::Json;
    if let Some(image) = &args.profile {
        let batch = usize::from(args.batch_size);
        let runner = Classifier::builder()
            .model_or_default(args.model.as_deref())
            .batch_size(Some(batch))
            .build_runner()?;
        let (model, preprocess) = (runner.model(), runner.preprocess());
        let tensor = match image {
            Some(path) => preprocess
                .load(path)
                .with_context(|| format!("cannot profile with {}", path.display()))?,
            None => {
                let grey = image::RgbImage::from_pixel(
                    preprocess.width,
                    preprocess.height,
                    image::Rgb([128; 3]),
                );
                preprocess.normalise(&grey)
            }
        };
        let (nodes, total) = model.profile(&tensor, args.runs)?;
        let network = Network::analyse(&source.bytes()?, None)?;
        let macs = network.layers.iter().map(|l| (l.name.clone(), l.macs)).collect();
        let profile = Profile::new(&nodes, total, args.runs, batch, &macs);
        print_report(&profile, json, Profile::to_text)?;
        return Ok(Status::Success);
    }
    let bytes = source.bytes()?;
    let network = Network::analyse(&bytes, args.input_shape.as_deref())
        .with_context(|| format!("cannot inspect {source}"))?;
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
        !args.shapes || matches!(format, Format::Table | Format::Json),
        "--shapes needs --format table or json"
    );
    let resume = args.output.as_deref().filter(|_| args.resume);
    let inputs = pending_inputs(&args.inputs, resume)?;
    let builder = args.classifier.builder(inputs.len(), args.top_k, args.crops);
    let classifier = builder.build()?;
    announce(classifier.plan(), verbose);
    let mut output = match &args.output {
        Some(path) => Output::file(format, path, args.resume)?,
        None => Output::stdout(format),
    };
    let mut progress = progress(&inputs, args.classifier.runner.run.quiet, "classified");
    let result =
        classifier.classify_each(&inputs, |record| progress.sink(record, |r| output.record(&r)));
    let written = result
        .and_then(|()| match args.shapes {
            true => output.shapes(&classifier.shapes()?),
            false => Ok(()),
        })
        .and_then(|()| output.finish());
    let failed = summarise(progress, written)?;
    Ok(status(failed))
}

fn eval(args: &EvalArgs, verbose: bool) -> Result<Status> {
    let inputs = pending_inputs(&args.inputs, None)?;
    let builder = args.classifier.builder(inputs.len(), 5, args.crops);
    let classifier = builder.build()?;
    announce(classifier.plan(), verbose);
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

/// Says on stderr, with `verbose`, which model `plan` loaded and how.
fn announce(plan: &Plan, verbose: bool) {
    if verbose {
        plan.describe().iter().for_each(|line| diagnostic(line));
    }
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
        roots.extend(read_path_list(list)?);
    }
    let walk = Walk::new(!args.no_recursive, &args.include, &args.exclude)?;
    let inputs = walk.discover(&roots);
    Ok(match args.shard {
        Some(shard) => discover::shard(inputs, shard),
        None => inputs,
    })
}

/// The largest path list read: ten million paths of a hundred bytes.
const MAX_PATH_LIST_BYTES: u64 = 1 << 30;

/// Paths, one per line, from a file or `-` (stdin). Blank lines are skipped; a line is taken
/// byte for byte, so a name that is not UTF-8 (as `find` prints it) is found.
fn read_path_list(list: &Path) -> Result<Vec<PathBuf>> {
    let name = list.display();
    let bytes = if list == Path::new("-") {
        read_up_to(std::io::stdin().lock(), MAX_PATH_LIST_BYTES, 0)
    } else {
        read_at_most(list, MAX_PATH_LIST_BYTES)
    };
    let bytes = bytes
        .with_context(|| format!("cannot read --files-from {name}"))?
        .with_context(|| format!("--files-from {name} is over {}", Size(MAX_PATH_LIST_BYTES)))?;
    bytes
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| path_from_bytes(line).with_context(|| format!("--files-from {name}")))
        .collect()
}

/// A path from the bytes of a line: any bytes on Unix, UTF-8 elsewhere.
#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

/// A path from the bytes of a line: any bytes on Unix, UTF-8 elsewhere.
#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> Result<PathBuf> {
    Ok(PathBuf::from(std::str::from_utf8(bytes).context("a path that is not UTF-8")?))
}

fn describe_paths(args: &InputArgs) -> String {
    let mut names: Vec<String> =
        args.paths.iter().map(|p| redact(&p.display().to_string())).collect();
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
