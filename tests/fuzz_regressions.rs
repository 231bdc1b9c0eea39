//! The fuzzers' seeds (`fuzz/seeds`) and the corpus entries kept as regressions
//! (`fuzz/regressions`: every input that crashed a target, a smallest set reaching every edge
//! the fuzzer reached, and the smallest input of every distinct outcome, kept by
//! `fuzz/keep-corpus.sh`), replayed through the same entry points: each gives a result or an
//! error of one short line, never a panic (nor a panic contained as an error).

use std::path::{Path, PathBuf};

use googlenet::model::Model;
use googlenet::preprocess::{Preprocess, PreprocessError, Preset};

fn files(kind: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files: Vec<PathBuf> = ["seeds", "regressions"]
        .iter()
        .filter_map(|set| std::fs::read_dir(root.join(set).join(kind)).ok())
        .flatten()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn decoder_inputs_give_a_tensor_or_an_error() {
    let settings = Preprocess { max_pixels: 4_000_000, ..Preset::Caffe.settings(224, 224) };
    let files = files("decode");
    assert!(files.len() >= 200, "the seeds and the kept corpus are there: {}", files.len());
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        match settings.tensor(&bytes) {
            Ok(tensor) => assert_eq!(tensor.shape(), &[3, 224, 224], "{}", path.display()),
            Err(PreprocessError::DecoderPanicked(message)) => {
                panic!("{}: the decoder panicked: {message}", path.display())
            }
            Err(err) => {
                let line = googlenet::output::one_line(&err.into());
                assert!(!line.is_empty() && line.len() < 1000, "{}: {line}", path.display());
            }
        }
    }
}

#[test]
fn model_inputs_load_and_run_or_give_an_error() {
    googlenet::guard::install_hook();
    let files = files("model");
    assert!(files.len() >= 200, "the seed, the crash and the kept corpus: {}", files.len());
    let mut loaded = 0;
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        match Model::from_bytes(&bytes, 1) {
            Ok(model) => {
                let (w, h) = (model.input.width as usize, model.input.height as usize);
                let image = tract_onnx::prelude::tract_ndarray::Array3::zeros((3, h, w));
                let _ = model.probabilities(&[image]);
                loaded += 1;
            }
            Err(err) => {
                let line = googlenet::output::one_line(&err);
                assert!(!line.is_empty() && line.len() < 1000, "{}: {line}", path.display());
            }
        }
    }
    assert!(loaded >= 1, "the seed model loads");
}
