//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;
use crate::preprocess::{Preset, ResizeMode, Triple};

/// Classify images with GoogLeNet (Inception v1) on the CPU.
#[derive(Debug, Parser)]
#[command(name = "googlenet", version, about, max_term_width = 100)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
    /// Say which model, preset and settings are used, and how long loading took (on stderr).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the most probable ImageNet classes of images.
    Classify(ClassifyArgs),
    /// Download GoogLeNet from the ONNX model zoo (or install a local file) into the user cache.
    FetchModel(FetchModelArgs),
}

/// `googlenet classify`.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Image files (JPEG, PNG, GIF, BMP, TIFF, WebP).
    #[arg(required = true, value_name = "IMAGE")]
    pub paths: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(short = 'k', long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub top_k: u16,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The model and its labels.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Preprocessing.
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
}

/// Which model to run and how to name its classes.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// ONNX model file [default: $GOOGLENET_MODEL, else the embedded model, else the
    /// fetch-model cache].
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Class names, one per line in output order (`<synset> <names>` lines keep the synset)
    /// [default: the embedded ImageNet-1k list].
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
}

/// Preprocessing settings: a preset, then any overrides.
#[derive(Debug, Args)]
pub struct PreprocessArgs {
    /// Preset [default: caffe for the default model and inputs named data/data_0, else
    /// torchvision].
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Override the preset's resize mode.
    #[arg(long, value_enum)]
    pub resize: Option<ResizeMode>,
    /// Override the per-channel mean: R,G,B in 0..255 pixel units.
    #[arg(long, value_name = "R,G,B", allow_hyphen_values = true)]
    pub mean: Option<Triple>,
    /// Override the per-channel standard deviation: R,G,B in 0..255 pixel units.
    #[arg(long, value_name = "R,G,B")]
    pub std: Option<Triple>,
    /// Feed channels as blue, green, red.
    #[arg(long, conflicts_with = "rgb")]
    pub bgr: bool,
    /// Feed channels as red, green, blue.
    #[arg(long)]
    pub rgb: bool,
}

/// `googlenet fetch-model`.
#[derive(Debug, Args)]
pub struct FetchModelArgs {
    /// Install this local file instead of downloading.
    #[arg(long, value_name = "PATH", conflicts_with = "url")]
    pub from: Option<PathBuf>,
    /// Download from this URL instead of the ONNX model zoo.
    #[arg(long)]
    pub url: Option<String>,
    /// Expected SHA-256 of the file [default: the zoo's googlenet-12.onnx, whose size is
    /// checked too].
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Replace the cached model even when it is already the expected file.
    #[arg(long)]
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_values_are_rejected_by_the_parser() {
        for args in [
            &["googlenet", "classify", "--top-k", "0", "a.jpg"][..],
            &["googlenet", "classify", "--mean", "1,2", "a.jpg"],
            &["googlenet", "classify", "--bgr", "--rgb", "a.jpg"],
            &["googlenet", "classify"],
            &["googlenet", "fetch-model", "--from", "x", "--url", "y"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
