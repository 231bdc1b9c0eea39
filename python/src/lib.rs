//! `googlenet._googlenet`: a thin binding over the `googlenet` library's [`Classifier`]. It
//! turns Python's images into the library's inputs, runs them with the interpreter's lock
//! released (checking for Ctrl-C as they run), and hands back the records as the command
//! line's JSON, which `googlenet/__init__.py` turns into dicts and arrays. The library's
//! errors come out as [`LibraryError`]`(kind, message)`, which the package raises as the
//! exception class of that kind.

use std::collections::HashMap;
use std::hash::Hash;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use googlenet::{
    Builder, Cancel, Classifier, Embedder, Error, Input, Outcome, Precision, Preset, Record,
};
use pyo3::exceptions::{PyException, PyKeyboardInterrupt, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

pyo3::create_exception!(
    _googlenet,
    LibraryError,
    PyException,
    "An error of the library, as (kind, message): `googlenet` raises it as its class."
);

/// How often a running call looks up from its work for Ctrl-C.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// An image's error as `(kind, message)`: what [`LibraryError`] holds.
type Failure = (&'static str, String);

/// Features as `Engine::embed` answers them: little-endian float32 rows, their width, each
/// image's path and each one's error.
type Embedded<'py> = (Bound<'py, PyBytes>, usize, Vec<String>, Vec<Option<Failure>>);

/// The network loaded once, with what runs it: see `googlenet.Classifier`. As on the command
/// line, a call with enough images for every thread to have four runs them in batches of two
/// (a second plan, loaded on first use), so that its answers are the command line's.
#[pyclass(frozen, module = "googlenet._googlenet")]
struct Engine {
    builder: Builder,
    /// The classifiers loaded so far, by batch size; the one for single images at once.
    classifiers: Cache<usize, Classifier>,
    /// The embedders loaded so far, by layer (`None`: the default features) and batch size.
    embedders: Cache<(Option<String>, usize), Embedder>,
}

/// What is loaded on first use, by what tells one from another.
struct Cache<K, T>(Mutex<HashMap<K, Arc<T>>>);

impl<K: Eq + Hash, T> Cache<K, T> {
    fn new() -> Cache<K, T> {
        Cache(Mutex::new(HashMap::new()))
    }

    /// The one of `key`, loaded by `load` the first time, with the interpreter's lock
    /// released (so that no other Python thread waits on this lock while holding it).
    fn get(
        &self,
        py: Python<'_>,
        key: K,
        load: impl FnOnce(&K) -> googlenet::Result<T> + Send,
    ) -> PyResult<Arc<T>>
    where
        K: Send,
        T: Send + Sync,
    {
        py.detach(|| {
            let mut loaded = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = loaded.get(&key) {
                return Ok(Arc::clone(found));
            }
            let found = Arc::new(load(&key)?);
            loaded.insert(key, Arc::clone(&found));
            Ok(found)
        })
        .map_err(library_error)
    }
}

/// The kind of `err`, as `googlenet/__init__.py` names its exception classes.
fn kind(err: &Error) -> &'static str {
    match err {
        Error::Image(_) => "image",
        Error::Download(_) => "download",
        Error::Model(_) => "model",
        Error::Setting { .. } => "setting",
        Error::File(_) => "file",
        _ => "other",
    }
}

/// An error of the library as the Python exception the package raises as its kind's class;
/// cancelled work as `KeyboardInterrupt`.
fn library_error(err: Error) -> PyErr {
    match err {
        Error::Cancelled => PyKeyboardInterrupt::new_err("cancelled"),
        err => LibraryError::new_err((kind(&err), err.to_string())),
    }
}

/// A setting's error, as [`library_error`] raises it.
fn setting_error(setting: &'static str, problem: impl Into<String>) -> PyErr {
    library_error(Error::Setting { setting, problem: problem.into() })
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (model=None, preset=None, threads=None, precision="f32", top_k=5))]
    fn new(
        py: Python<'_>,
        model: Option<PathBuf>,
        preset: Option<&str>,
        threads: Option<usize>,
        precision: &str,
        top_k: usize,
    ) -> PyResult<Engine> {
        let precision: Precision = precision.parse().map_err(library_error)?;
        let preset = match preset {
            None => None,
            Some(name) => Some(Preset::from_name(name).ok_or_else(|| {
                let problem = format!("{name:?} is unknown: expected \"caffe\" or \"torchvision\"");
                setting_error("preset", problem)
            })?),
        };
        if threads == Some(0) {
            return Err(setting_error("threads", "must be at least 1"));
        }
        let builder = Classifier::builder()
            .model_or_default(model.as_deref())
            .preset(preset)
            .threads(threads)
            .precision(precision)
            .top_k(top_k);
        let engine = Engine { builder, classifiers: Cache::new(), embedders: Cache::new() };
        engine.classifier(py, 1)?;
        Ok(engine)
    }

    /// The records of `images` as JSON, each keeping `top_k` classes (or the default), with
    /// each one's error kind (`None` where it has predictions).
    #[pyo3(signature = (images, top_k=None))]
    fn classify(
        &self,
        py: Python<'_>,
        images: Vec<Bound<'_, PyAny>>,
        top_k: Option<usize>,
    ) -> PyResult<Vec<(String, Option<&'static str>)>> {
        let inputs = images.iter().map(input).collect::<PyResult<Vec<_>>>()?;
        let classifier = self.classifier(py, inputs.len())?;
        let k = top_k.unwrap_or(classifier.top_k());
        classifier.check_top_k(k).map_err(library_error)?;
        let records = interruptible(py, |cancel| {
            collect(&inputs, cancel, |inputs, sink| classifier.classify_each_top(inputs, k, sink))
        })?;
        Ok(records
            .iter()
            .map(|record| (json(record), failure(record).map(|(kind, _)| kind)))
            .collect())
    }

    /// The features of `images` of `layer` (or the default), row after row as little-endian
    /// float32 bytes, with their width, and each image's error (`None` where it has features).
    #[pyo3(signature = (images, layer=None, normalize=false))]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        images: Vec<Bound<'py, PyAny>>,
        layer: Option<String>,
        normalize: bool,
    ) -> PyResult<Embedded<'py>> {
        let inputs = images.iter().map(input).collect::<PyResult<Vec<_>>>()?;
        let embedder = self.embedder(py, layer, inputs.len())?;
        let records = interruptible(py, |cancel| {
            collect(&inputs, cancel, |inputs, sink| embedder.embed_each(inputs, normalize, sink))
        })?;
        let width = embedder.width();
        let mut values: Vec<u8> = Vec::with_capacity(records.len() * width * 4);
        let mut errors = Vec::with_capacity(records.len());
        let paths = records.iter().map(|record| record.path.clone()).collect();
        for record in &records {
            let error = match &record.outcome {
                Outcome::Embedding(row) if row.len() == width => {
                    values.extend(row.iter().flat_map(|v| v.to_le_bytes()));
                    errors.push(None);
                    continue;
                }
                Outcome::Error(_) => failure(record),
                Outcome::Embedding(_) | Outcome::Predictions(_) => None,
            };
            let error = error.unwrap_or(("model", "no features".to_owned()));
            values.extend(std::iter::repeat_n(0, width * 4));
            errors.push(Some(error));
        }
        Ok((PyBytes::new(py, &values), width, paths, errors))
    }

    /// The facts of the model, as `GET /v1/model` gives them, as JSON.
    /// Why the model runs at another precision than the one asked for, where it does.
    fn note(&self, py: Python<'_>) -> PyResult<Option<String>> {
        Ok(self.classifier(py, 1)?.note().map(str::to_owned))
    }

    fn model(&self, py: Python<'_>) -> PyResult<String> {
        let features = self.embedder(py, None, 1).ok().map(|embedder| embedder.width());
        serde_json::to_string(&self.classifier(py, 1)?.info(features))
            .map_err(|err| PyRuntimeError::new_err(err.to_string()))
    }
}

impl Engine {
    /// The classifier for a call of `images` images.
    fn classifier(&self, py: Python<'_>, images: usize) -> PyResult<Arc<Classifier>> {
        let builder = self.builder.clone().images(images);
        self.classifiers.get(py, builder.batch(), |_| builder.build())
    }

    /// The embedder of `layer` for a call of `images` images.
    fn embedder(
        &self,
        py: Python<'_>,
        layer: Option<String>,
        images: usize,
    ) -> PyResult<Arc<Embedder>> {
        let classifier = self.classifier(py, images)?;
        let key = (layer, self.builder.clone().images(images).batch());
        self.embedders.get(py, key, |(layer, _)| classifier.embedder(layer.as_deref()))
    }
}

/// One image from Python: a `str` or `os.PathLike` path (or URL), the `bytes` of an encoded
/// file, or `(pixels, height, width, channels)` as `googlenet/__init__.py` makes of an array.
fn input(image: &Bound<'_, PyAny>) -> PyResult<Input> {
    if let Ok(bytes) = image.cast::<PyBytes>() {
        let bytes: Arc<[u8]> = bytes.as_bytes().into();
        return Ok(Input::Upload { name: "-".to_owned(), bytes });
    }
    if let Ok((pixels, height, width, channels)) =
        image.extract::<(Bound<'_, PyBytes>, usize, usize, usize)>()
    {
        return Input::pixels("-", pixels.as_bytes(), (height, width, channels))
            .map_err(library_error);
    }
    match image.extract::<PathBuf>() {
        Ok(path) => Ok(Input::from_arg(path)),
        Err(_) => Err(PyTypeError::new_err(format!(
            "an image is a path, bytes or a numpy.uint8 array, not {}",
            image.get_type().name().map_or_else(|_| "?".to_owned(), |name| name.to_string())
        ))),
    }
}

/// The error of `record`, as `(kind, message)`, if it has one.
fn failure(record: &Record) -> Option<Failure> {
    match &record.outcome {
        Outcome::Error(err) => Some((kind(err), err.to_string())),
        Outcome::Predictions(_) | Outcome::Embedding(_) => None,
    }
}

/// The records `run` hands its sink for `inputs`, in order, until `cancel` stops it.
fn collect(
    inputs: &[Input],
    cancel: &Cancel,
    run: impl FnOnce(&[Input], &mut dyn FnMut(Record) -> googlenet::Result<()>) -> googlenet::Result<()>,
) -> googlenet::Result<Vec<Record>> {
    let mut records = Vec::with_capacity(inputs.len());
    run(inputs, &mut |record| {
        cancel.check()?;
        records.push(record);
        Ok(())
    })?;
    Ok(records)
}

/// Runs `work` on a thread of its own with the interpreter's lock released, looking up at
/// least every [`SIGNAL_POLL`] for a signal (Ctrl-C): then `work` is cancelled, waited for,
/// and the signal's exception raised.
fn interruptible<T: Send>(
    py: Python<'_>,
    work: impl FnOnce(&Cancel) -> googlenet::Result<T> + Send,
) -> PyResult<T> {
    let cancel = Cancel::new();
    let done = (Mutex::new(false), Condvar::new());
    let finished = || {
        let (flag, changed) = &done;
        let flag = flag.lock().unwrap_or_else(PoisonError::into_inner);
        let waited = changed.wait_timeout_while(flag, SIGNAL_POLL, |finished| !*finished);
        waited.map_or(true, |(finished, _)| *finished)
    };
    std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            let result = work(&cancel);
            *done.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
            done.1.notify_all();
            result
        });
        while !py.detach(finished) {
            if let Err(signal) = py.check_signals() {
                cancel.cancel();
                let _ = py.detach(|| running.join());
                return Err(signal);
            }
        }
        match running.join() {
            Ok(result) => result.map_err(library_error),
            Err(_) => Err(PyRuntimeError::new_err("the work panicked")),
        }
    })
}

/// A record as the command line's JSON.
fn json(record: &Record) -> String {
    serde_json::to_string(record).unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"))
}

/// The native part of the `googlenet` package.
#[pymodule]
fn _googlenet(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Engine>()?;
    module.add("LibraryError", module.py().get_type::<LibraryError>())
}
