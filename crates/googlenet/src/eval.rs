//! `googlenet eval`: accuracy of the classifier on labelled images, whose true class is the
//! synset id that starts the file name (`n01440764_tench.JPEG`) or names the parent folder
//! (`n01440764/ILSVRC2012_val_00000293.JPEG`, the ImageNet validation layout).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::classify::Prediction;
use crate::labels::{is_synset, Labels};

/// The true synset of a labelled image, from its file name or else its folder.
pub fn true_synset(path: &Path) -> Option<String> {
    let stem = path.file_name()?.to_str()?;
    let from_name = stem.split('_').next().filter(|s| is_synset(s));
    let from_folder = || path.parent()?.file_name()?.to_str().filter(|s| is_synset(s));
    from_name.or_else(from_folder).map(str::to_owned)
}

/// Running counts over classified images.
#[derive(Debug, Default)]
pub struct Tally {
    images: usize,
    top1: usize,
    top5: usize,
    failed: usize,
    confused: BTreeMap<(usize, usize), usize>,
}

impl Tally {
    /// Counts one image whose true class is output position `truth`.
    pub fn add(&mut self, truth: usize, predictions: &[Prediction]) {
        self.images += 1;
        let hit = |n: usize| predictions.iter().take(n).any(|p| p.index == truth);
        self.top1 += usize::from(hit(1));
        self.top5 += usize::from(hit(5));
        if let Some(first) = predictions.first().filter(|p| p.index != truth) {
            *self.confused.entry((truth, first.index)).or_default() += 1;
        }
    }

    /// Counts one image that could not be evaluated.
    pub fn add_failure(&mut self) {
        self.failed += 1;
    }

    /// The accuracy report, with the `most` most frequent confusions.
    pub fn report(&self, labels: &Labels, most: usize) -> Report {
        let class = |index: usize| {
            let label = labels.get(index);
            Class {
                index,
                synset: label.and_then(|l| l.synset.clone()),
                name: label.map_or_else(String::new, |l| l.name.clone()),
            }
        };
        let mut confusions: Vec<(&(usize, usize), &usize)> = self.confused.iter().collect();
        confusions.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let ratio = |n: usize| if self.images == 0 { 0.0 } else { n as f64 / self.images as f64 };
        Report {
            images: self.images,
            failed: self.failed,
            top1: ratio(self.top1),
            top5: ratio(self.top5),
            top1_correct: self.top1,
            top5_correct: self.top5,
            confusions: confusions
                .into_iter()
                .take(most)
                .map(|(&(truth, predicted), &count)| Confusion {
                    truth: class(truth),
                    predicted: class(predicted),
                    count,
                })
                .collect(),
        }
    }
}

/// Accuracy over the evaluated images (the JSON document of `googlenet eval`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Images evaluated.
    pub images: usize,
    /// Images that could not be evaluated (unreadable, or no true class).
    pub failed: usize,
    /// Share of images whose most probable class is the true one.
    pub top1: f64,
    /// Share of images whose true class is among the five most probable.
    pub top5: f64,
    /// Count behind `top1`.
    pub top1_correct: usize,
    /// Count behind `top5`.
    pub top5_correct: usize,
    /// The most frequent (true, predicted) pairs among top-1 errors, most frequent first.
    pub confusions: Vec<Confusion>,
}

/// A class, as reports name it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Class {
    /// Output position.
    pub index: usize,
    /// Synset id, when known.
    pub synset: Option<String>,
    /// Class name.
    pub name: String,
}

/// How often images of one class were taken for another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confusion {
    /// The true class.
    pub truth: Class,
    /// The class predicted first.
    pub predicted: Class,
    /// How many images.
    pub count: usize,
}

impl Report {
    /// The report as aligned text.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let percent = |r: f64| r * 100.0;
        let _ = writeln!(text, "images  {:>6}  ({} failed)", self.images, self.failed);
        let _ = writeln!(text, "top-1   {:>5.1}%  ({})", percent(self.top1), self.top1_correct);
        let _ = writeln!(text, "top-5   {:>5.1}%  ({})", percent(self.top5), self.top5_correct);
        if !self.confusions.is_empty() {
            let _ = writeln!(text, "most confused (true -> predicted: images):");
        }
        let name = |c: &Class| format!("{} {}", c.synset.as_deref().unwrap_or("-"), c.name);
        let width = self.confusions.iter().map(|c| name(&c.truth).len()).max().unwrap_or(0);
        for c in &self.confusions {
            let (truth, predicted) = (name(&c.truth), name(&c.predicted));
            let _ = writeln!(text, "  {truth:<width$}  ->  {predicted}: {}", c.count);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_comes_from_the_name_or_the_folder() {
        let synset = |p: &str| true_synset(Path::new(p));
        assert_eq!(synset("x/n01440764_tench.JPEG").as_deref(), Some("n01440764"));
        assert_eq!(synset("val/n01440764/ILSVRC2012_val_1.JPEG").as_deref(), Some("n01440764"));
        assert_eq!(synset("photos/cat.jpg"), None);
    }

    fn predicted(indices: &[usize]) -> Vec<Prediction> {
        indices
            .iter()
            .enumerate()
            .map(|(rank, &index)| Prediction {
                rank: rank + 1,
                index,
                synset: None,
                name: String::new(),
                probability: 0.0,
            })
            .collect()
    }

    #[test]
    fn top1_top5_and_confusions_are_counted() {
        let labels = Labels::imagenet();
        let mut tally = Tally::default();
        tally.add(0, &predicted(&[0, 1, 2, 3, 4]));
        tally.add(0, &predicted(&[1, 0, 2, 3, 4]));
        tally.add(0, &predicted(&[1, 2, 3, 4, 5]));
        tally.add(7, &predicted(&[8, 9, 10, 11, 12]));
        tally.add_failure();
        let report = tally.report(&labels, 1);
        assert_eq!((report.images, report.failed), (4, 1));
        assert_eq!((report.top1_correct, report.top5_correct), (1, 2));
        assert!((report.top1 - 0.25).abs() < 1e-12 && (report.top5 - 0.5).abs() < 1e-12);
        assert_eq!(report.confusions.len(), 1);
        let worst = &report.confusions[0];
        assert_eq!((worst.truth.index, worst.predicted.index, worst.count), (0, 1, 2));
        assert_eq!(worst.predicted.name, "goldfish");
        assert!(report.to_text().contains("n01440764 tench  ->  n01443537 goldfish: 2"));
    }
}
