//! Comparing embeddings: unit length, the cosine similarity of unit vectors, the rows of a
//! matrix most like a query, and groups of near-duplicates.

use rayon::prelude::*;

use crate::npy::Matrix;

/// The default least similarity of near-duplicates (as `googlenet similar` groups them), chosen by
/// `scripts/duplicates` on resized, recompressed, cropped and mirrored copies of the shared
/// photos.
pub const DUPLICATE_THRESHOLD: f32 = 0.88;

/// Scales `values` to unit L2 length; all zeros stay zeros.
pub fn normalise(values: &mut [f32]) {
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        values.iter_mut().for_each(|v| *v /= norm);
    }
}

/// The dot product of two vectors: the cosine similarity when both have unit length. Eight
/// sums side by side, so that the compiler keeps them in vector registers.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for ((sum, x), y) in sums.iter_mut().zip(x).zip(y) {
            *sum += x * y;
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// The `n` rows of `matrix` most similar to `query` (dot products of unit vectors), most
/// similar first, ties by row; rows for which `skip` holds are left out.
pub fn most_similar(
    matrix: &Matrix,
    query: &[f32],
    n: usize,
    skip: impl Fn(usize) -> bool + Sync,
) -> Vec<(usize, f32)> {
    let width = matrix.width.max(1);
    let mut scores: Vec<(usize, f32)> = matrix
        .data
        .par_chunks_exact(width)
        .enumerate()
        .filter(|(row, _)| !skip(*row))
        .map(|(row, values)| (row, dot(values, query)))
        .collect();
    let order = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if n < scores.len() {
        scores.select_nth_unstable_by(n, order);
        scores.truncate(n);
    }
    scores.sort_unstable_by(order);
    scores
}

/// Groups of rows whose similarity is at least `threshold`, linked pair by pair (a row like
/// either of two others joins them): each group's rows in order, groups by their first row.
/// Rows in no group are left out.
#[allow(clippy::indexing_slicing, reason = "rows and parents are indexed by 0..rows.len()")]
pub fn groups(matrix: &Matrix, threshold: f32) -> Vec<Vec<usize>> {
    let width = matrix.width.max(1);
    let rows: Vec<&[f32]> = matrix.data.chunks_exact(width).collect();
    let pairs: Vec<(usize, usize)> = (0..rows.len())
        .into_par_iter()
        .flat_map_iter(|i| {
            let rows = &rows;
            (i + 1..rows.len())
                .filter(move |&j| dot(rows[i], rows[j]) >= threshold)
                .map(move |j| (i, j))
        })
        .collect();
    let mut parent: Vec<usize> = (0..rows.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (i, j) in pairs {
        let (a, b) = (root(&mut parent, i), root(&mut parent, j));
        parent[a.max(b)] = a.min(b);
    }
    let mut by_root: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for row in 0..rows.len() {
        by_root.entry(root(&mut parent, row)).or_default().push(row);
    }
    by_root.into_values().filter(|group| group.len() > 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_rows(rows: &[&[f32]]) -> Matrix {
        let width = rows[0].len();
        let mut data = Vec::new();
        for row in rows {
            let mut row = row.to_vec();
            normalise(&mut row);
            data.extend(row);
        }
        Matrix { rows: rows.len(), width, data }
    }

    #[test]
    fn dot_products_match_the_plain_sum() {
        let a: Vec<f32> = (0..1027).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..1027).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y)).sum();
        assert!((f64::from(dot(&a, &b)) - plain).abs() < 1e-3);
    }

    #[test]
    fn the_most_similar_rows_come_first_and_skipped_ones_never() {
        let matrix = unit_rows(&[&[1.0, 0.0], &[0.6, 0.8], &[0.0, 1.0], &[1.0, 0.1], &[-1.0, 0.0]]);
        let found = most_similar(&matrix, &[1.0, 0.0], 3, |_| false);
        assert_eq!(found.iter().map(|f| f.0).collect::<Vec<_>>(), [0, 3, 1]);
        assert!((found[0].1 - 1.0).abs() < 1e-6);
        let found = most_similar(&matrix, &[1.0, 0.0], 10, |row| row == 0);
        assert_eq!(found.iter().map(|f| f.0).collect::<Vec<_>>(), [3, 1, 2, 4]);
    }

    #[test]
    fn groups_link_pairs_above_the_threshold() {
        let matrix = unit_rows(&[
            &[1.0, 0.0, 0.0],
            &[0.0, 1.0, 0.0],
            &[0.99, 0.1, 0.0],
            &[0.0, 0.0, 1.0],
            &[0.0, 0.99, 0.1],
            &[0.966, 0.259, 0.0],
        ]);
        assert_eq!(groups(&matrix, 0.98), [vec![0, 2, 5], vec![1, 4]]);
        assert_eq!(groups(&matrix, 0.999_99), Vec::<Vec<usize>>::new());
    }

    #[test]
    fn normalised_vectors_have_unit_length() {
        let mut v = vec![3.0, 0.0, -4.0];
        normalise(&mut v);
        assert_eq!(v, [0.6, 0.0, -0.8]);
        let mut zeros = vec![0.0; 3];
        normalise(&mut zeros);
        assert_eq!(zeros, [0.0; 3]);
    }
}
