//! What a run gives back for each input: a [`Record`] of its predictions, its features, or
//! the error that stopped it.

use std::path::Path;

use serde::Serialize;

use crate::classify::Prediction;
use crate::error::Error;

/// The result of one input image: its predictions, or why it has none. Serialised (as the
/// command line's JSON Lines and the service's answers are) it is `{"path": ..., "predictions":
/// [...]}`, `{"path": ..., "embedding": [...]}` or `{"path": ..., "error": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// The image path as given (lossily converted when not UTF-8).
    pub path: String,
    /// Predictions or error.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What became of an image.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The top-k classes, most probable first.
    Predictions(Vec<Prediction>),
    /// The image's features (`embed`).
    Embedding(Vec<f32>),
    /// Why the image has no predictions or features: one line, naming no setting by a flag.
    Error(Error),
}

impl Record {
    /// A record for `path`.
    pub fn new(path: &Path, outcome: Outcome) -> Record {
        Record { path: path_text(path), outcome }
    }
}

/// A path as records write it: non-UTF-8 bytes become U+FFFD.
pub(crate) fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_serialise_flat() {
        let prediction = Prediction {
            rank: 1,
            index: 285,
            synset: Some("n02124075".into()),
            name: "Egyptian cat".into(),
            probability: 0.5,
        };
        let ok = Record::new(Path::new("a.jpg"), Outcome::Predictions(vec![prediction]));
        let ok = serde_json::to_value(&ok).unwrap();
        assert_eq!(ok["path"], "a.jpg");
        assert_eq!(ok["predictions"][0]["name"], "Egyptian cat");
        assert_eq!(ok["predictions"][0]["index"], 285);
        let bad = Record::new(
            Path::new("b.jpg"),
            Outcome::Error(Error::Image("cannot decode: bad".into())),
        );
        let bad = serde_json::to_value(&bad).unwrap();
        assert_eq!(bad, serde_json::json!({"path": "b.jpg", "error": "cannot decode: bad"}));
    }
}
