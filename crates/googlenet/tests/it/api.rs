//! [`Classifier::builder`] as a user calls it: the default model, its records, its features
//! and its facts.

use googlenet::{Classifier, Error, Input, Outcome};

use crate::reference::{asset, samples};

#[test]
fn the_default_model_names_the_cat_and_keeps_top_k() {
    let classifier = Classifier::builder().top_k(3).threads(Some(1)).build().unwrap();
    assert_eq!(classifier.top_k(), 3);
    let records = classifier.classify(&[Input::from_arg(asset("chelsea.png"))]);
    let Outcome::Predictions(predictions) = &records[0].outcome else { panic!("{records:?}") };
    assert_eq!(predictions.len(), 3);
    assert_eq!(predictions[0].name, "Egyptian cat");
    let info = classifier.info(None);
    assert_eq!((info.classes, info.preset.as_str(), info.top_k), (1000, "caffe", 3));
    assert_eq!((info.input.width, info.input.height), (224, 224));
}

#[test]
fn each_streams_records_in_input_order_and_keeps_bad_inputs() {
    let classifier = Classifier::builder().images(9).threads(Some(2)).build().unwrap();
    let mut inputs: Vec<Input> = samples().into_iter().take(8).map(Input::from_arg).collect();
    inputs.insert(3, Input::from_arg(asset("no-such-photo.png")));
    let mut paths = Vec::new();
    classifier
        .classify_each(&inputs, |record| {
            paths.push((record.path.clone(), matches!(record.outcome, Outcome::Error(_))));
            Ok::<(), Error>(())
        })
        .unwrap();
    let expected: Vec<(String, bool)> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| (input.path().to_string_lossy().into_owned(), i == 3))
        .collect();
    assert_eq!(paths, expected);
}

#[test]
fn embeddings_are_the_pooled_features() {
    let classifier = Classifier::builder().threads(Some(1)).build().unwrap();
    let embedder = classifier.embedder(None).unwrap();
    assert_eq!(embedder.width(), 1024);
    let records = embedder.embed(&[Input::from_arg(asset("chelsea.png"))], true);
    let Outcome::Embedding(values) = &records[0].outcome else { panic!("{records:?}") };
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert_eq!(values.len(), 1024);
    assert!((norm - 1.0).abs() < 1e-5, "normalised to {norm}");
    assert!(values.iter().all(|v| *v >= 0.0), "after a ReLU and an average pool");
}

#[test]
fn errors_are_the_kinds_callers_branch_on() {
    let err = Classifier::builder().top_k(1001).build().unwrap_err();
    assert_eq!(err.to_string(), "top_k 1001 exceeds the 1000 classes the model scores");
    assert!(matches!(err, Error::Setting { setting: "top_k", .. }), "{err:?}");
    let err = Classifier::builder().top_k(0).build().unwrap_err();
    assert_eq!(err, Error::Setting { setting: "top_k", problem: "must be at least 1".into() });
    let err = Classifier::builder().model("/no/such/model.onnx").build().unwrap_err();
    assert!(matches!(&err, Error::Model(m) if m.contains("/no/such/model.onnx")), "{err:?}");
    let err = Classifier::builder().labels(Some(&asset("chelsea.png"))).build().unwrap_err();
    assert!(matches!(err, Error::File(_)), "not text: {err:?}");
    let three = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(three.path(), "cat\ndog\nfish\n").unwrap();
    let err = Classifier::builder().labels(Some(three.path())).build().unwrap_err();
    assert!(matches!(err, Error::Setting { setting: "labels", .. }), "{err:?}");

    let classifier = Classifier::builder().threads(Some(1)).build().unwrap();
    let inputs = [
        Input::from_arg(asset("no-such-photo.png")),
        Input::from_arg(asset("README.md")),
        Input::from_arg("http://127.0.0.1:9/photo.jpg"),
    ];
    let kinds: Vec<&str> = classifier
        .classify(&inputs)
        .iter()
        .map(|record| match &record.outcome {
            Outcome::Error(Error::Image(_)) => "image",
            Outcome::Error(Error::Download(_)) => "download",
            other => panic!("{}: {other:?}", record.path),
        })
        .collect();
    assert_eq!(kinds, ["image", "image", "download"]);
    let cancel = googlenet::Cancel::new();
    cancel.cancel();
    let err = googlenet::explain::explain(&classifier, &inputs[0], (56, 28), &cancel);
    assert!(matches!(err, Err(Error::Image(_))), "the photo is read first: {err:?}");
    let photo = Input::from_arg(asset("chelsea.png"));
    let err = googlenet::explain::explain(&classifier, &photo, (56, 28), &cancel).unwrap_err();
    assert_eq!(err, Error::Cancelled);
}
