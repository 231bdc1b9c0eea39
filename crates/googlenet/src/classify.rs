//! From class probabilities to ranked, labelled predictions.

use serde::Serialize;

use crate::labels::Labels;

/// One ranked class of one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// 1 for the most probable class.
    pub rank: usize,
    /// The class's position in the model output.
    pub index: usize,
    /// WordNet synset id, when the label list has one.
    pub synset: Option<String>,
    /// Class name.
    pub name: String,
    /// Softmax probability, 0..1.
    pub probability: f32,
}

/// A numerically stable softmax.
pub fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Class indices from the most to the least probable (ties by index).
#[allow(clippy::indexing_slicing, reason = "the indices are 0..probabilities.len()")]
pub fn ranking(probabilities: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]).then(a.cmp(&b)));
    order
}

/// The `k` most probable classes, most probable first; ties keep the lower index first.
#[allow(clippy::indexing_slicing, reason = "the indices come from ranking(probabilities)")]
pub fn top_k(probabilities: &[f32], k: usize, labels: &Labels) -> Vec<Prediction> {
    ranking(probabilities)
        .into_iter()
        .take(k)
        .enumerate()
        .map(|(rank, index)| {
            let label = labels.get(index);
            Prediction {
                rank: rank + 1,
                index,
                synset: label.and_then(|l| l.synset.clone()),
                name: label.map_or_else(|| format!("class {index}"), |l| l.name.clone()),
                probability: probabilities[index],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1000.0, 1001.0, 999.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[1] > p[0] && p[0] > p[2]);
        assert!((p[1] - 0.665_240_9).abs() < 1e-6);
    }

    #[test]
    fn top_k_ranks_and_labels() {
        let labels = Labels::imagenet();
        let mut probs = vec![0.0; 1000];
        probs[285] = 0.6;
        probs[281] = 0.3;
        probs[0] = 0.1;
        let top = top_k(&probs, 2, &labels);
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].rank, top[0].index, top[0].name.as_str()), (1, 285, "Egyptian cat"));
        assert_eq!(top[0].synset.as_deref(), Some("n02124075"));
        assert_eq!((top[1].rank, top[1].index), (2, 281));
    }

    #[test]
    fn ties_keep_the_lower_index_first() {
        let labels = Labels::imagenet();
        let top = top_k(&[0.25; 4], 4, &labels);
        assert_eq!(top.iter().map(|p| p.index).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    }
}
