//! The fuzzers' seeds (`fuzz/seeds`) as regression tests: every image seed decodes, and every
//! model seed of an allowed operator loads and runs while the others are refused.

use crate::model::{Model, OPERATORS};
use crate::preprocess::{Preprocess, Preset};

/// The files of `fuzz/seeds/KIND`, sorted.
fn seeds(kind: &str) -> Vec<std::path::PathBuf> {
    let dir = crate::reference::root().join("fuzz/seeds").join(kind);
    let mut files: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    files
}

#[test]
fn every_image_seed_decodes() {
    let settings = Preprocess { max_pixels: 4_000_000, ..Preset::Caffe.settings(224, 224) };
    let files = seeds("decode");
    assert!(files.len() >= 15, "{}", files.len());
    for path in files {
        let tensor = settings.tensor(&std::fs::read(&path).unwrap());
        assert_eq!(tensor.unwrap().shape(), &[3, 224, 224], "{}", path.display());
    }
}

#[test]
fn model_seeds_of_allowed_operators_run_and_the_others_are_refused() {
    crate::guard::install_hook();
    let mut ran = 0;
    for path in seeds("model") {
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let op = name.strip_prefix("op-").unwrap_or("Conv");
        match Model::from_bytes(&std::fs::read(&path).unwrap(), 1) {
            Ok(model) => {
                assert!(OPERATORS.split(' ').any(|allowed| allowed == op), "{name} loaded");
                let (w, h) = (model.input.width as usize, model.input.height as usize);
                let image = tract_onnx::prelude::tract_ndarray::Array3::from_elem((3, h, w), 0.5);
                let probabilities = model.run(&[image]).unwrap();
                assert_eq!(probabilities[0].len(), model.classes, "{name}");
                ran += 1;
            }
            Err(err) => {
                let line = crate::one_line(err.as_ref());
                let refused = "which image classifiers do not; googlenet runs convolutional";
                assert!(line.contains(refused), "{name}: {line}");
                assert!(OPERATORS.split(' ').all(|allowed| allowed != op), "{name}: {line}");
            }
        }
    }
    assert!(ran >= OPERATORS.split(' ').count() - 5, "{ran} of the allowed operators ran");
}
