//! Class labels: the ImageNet-1k list embedded in the binary, or a user's label file.
//!
//! A label file holds one class per line, in model output order. A line in the
//! `synset_words.txt` form, `n01440764 tench, Tinca tinca`, gives a synset id and the class's
//! names; its first name becomes the label's name. Any other line is the class name as it is.

use std::path::Path;

use anyhow::{Context, Result};

use crate::files::{read_at_most, Size};

/// The 1000 ImageNet-1k classes in model output order (origin: `assets/README.md`).
const IMAGENET_1K: &str = include_str!("../data/imagenet-1k.txt");

/// The largest label file read: a million classes of 64 characters.
const MAX_LABELS_BYTES: u64 = 64 << 20;

/// One class: a WordNet synset id where the list gives one, and a short name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// WordNet synset id such as `n01440764`, when the label list has them.
    pub synset: Option<String>,
    /// Human-readable class name such as `tench`.
    pub name: String,
}

/// An ordered list of class labels, indexed by model output position.
#[derive(Debug, Clone)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// The ImageNet-1k classes embedded in the binary.
    pub fn imagenet() -> Labels {
        Labels::parse(IMAGENET_1K)
    }

    /// Reads a label file: one class per line, blank lines at the end ignored.
    pub fn from_file(path: &Path) -> Result<Labels> {
        let name = path.display();
        let bytes = read_at_most(path, MAX_LABELS_BYTES)
            .with_context(|| format!("cannot read labels file {name}"))?
            .with_context(|| format!("labels file {name} is over {}", Size(MAX_LABELS_BYTES)))?;
        let text = String::from_utf8(bytes)
            .with_context(|| format!("labels file {name} is not UTF-8 text"))?;
        let labels = Labels::parse(&text);
        anyhow::ensure!(!labels.0.is_empty(), "labels file {name} has no labels");
        Ok(labels)
    }

    fn parse(text: &str) -> Labels {
        Labels(text.trim_end().lines().map(parse_line).collect())
    }

    /// How many classes the list holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list is empty (never, for a list this module built).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The output position and label of the class with this synset id.
    pub fn by_synset(&self, synset: &str) -> Option<(usize, &Label)> {
        self.0.iter().enumerate().find(|(_, label)| label.synset.as_deref() == Some(synset))
    }

    /// The label of output position `index`.
    pub fn get(&self, index: usize) -> Option<&Label> {
        self.0.get(index)
    }
}

fn parse_line(line: &str) -> Label {
    let line = line.trim();
    match line.split_once(' ') {
        Some((synset, names)) if is_synset(synset) => Label {
            synset: Some(synset.to_owned()),
            name: names.split(',').next().unwrap_or(names).trim().to_owned(),
        },
        _ => Label { synset: None, name: line.to_owned() },
    }
}

/// A WordNet noun synset id: `n` and eight digits.
pub(crate) fn is_synset(word: &str) -> bool {
    word.len() == 9 && word.starts_with('n') && word[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagenet_has_1000_classes_with_synsets() {
        let labels = Labels::imagenet();
        assert_eq!(labels.len(), 1000);
        let first = labels.get(0).unwrap();
        assert_eq!(first.synset.as_deref(), Some("n01440764"));
        assert_eq!(first.name, "tench");
        assert!((0..1000).all(|i| labels.get(i).unwrap().synset.is_some()));
        assert_eq!(
            labels.by_synset("n02124075").map(|(i, l)| (i, l.name.as_str())),
            Some((285, "Egyptian cat"))
        );
        assert!(labels.by_synset("n99999999").is_none());
    }

    #[test]
    fn imagenet_matches_the_shared_class_list() {
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/synset_words.txt");
        let shared = std::fs::read_to_string(shared).expect("../shared/data/synset_words.txt");
        assert_eq!(IMAGENET_1K, shared, "data/imagenet-1k.txt differs from synset_words.txt");
    }

    #[test]
    fn plain_lines_are_names_without_synsets() {
        let labels = Labels::parse("cat\ndog, puppy\nn123 not a synset\n\n");
        assert_eq!(labels.len(), 3);
        assert_eq!(labels.get(1).unwrap(), &Label { synset: None, name: "dog, puppy".into() });
        assert_eq!(labels.get(2).unwrap().name, "n123 not a synset");
    }

    #[test]
    fn synset_lines_keep_the_first_name() {
        let label = parse_line("n04033995 quilt, comforter, comfort, puff");
        assert_eq!(label.synset.as_deref(), Some("n04033995"));
        assert_eq!(label.name, "quilt");
    }
}
