//! The check in front of tract-onnx's `TreeEnsembleClassifier` (tract 0.23.9), which walks the
//! trees its attributes describe without checking them: a leaf's class id indexes the class
//! scores unchecked (a class id past the labels wrote out of bounds: a segmentation fault), and
//! a branch whose children lead back to it loops for ever on every image.

use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::attributes::{attribute, ints};

const OP: &str = "TreeEnsembleClassifier";

/// Refuses `node` unless each leaf's class id names a class label and the nodes, laid out as
/// tract lays them out, have no cycle.
pub(super) fn check(node: &NodeProto) -> TractResult<()> {
    let labels = attribute(node, "classlabels_int64s")
        .map(|a| a.ints.len())
        .or_else(|| attribute(node, "classlabels_strings").map(|a| a.strings.len()))
        .unwrap_or(0);
    if let Some(class) = ints(node, "class_ids")
        .unwrap_or_default()
        .iter()
        .find(|c| usize::try_from(**c).map_or(true, |c| c >= labels))
    {
        bail!("{OP}: class id {class} is out of range for {labels} class labels");
    }
    let children = children(node)?;
    ensure!(is_acyclic(&children), "{OP}: a branch leads back to itself");
    Ok(())
}

/// One node: its tree, its id, and its true and false children unless it is a leaf.
type Node = (i64, i64, Option<[i64; 2]>);

/// The children of each node, by position among the nodes sorted by tree and id: tract counts a
/// branch's child ids from its tree's first node. Empty when the attributes disagree in length,
/// which tract refuses itself.
fn children(node: &NodeProto) -> TractResult<Vec<Vec<usize>>> {
    let modes = attribute(node, "nodes_modes").map_or(&[][..], |a| &a.strings);
    let [trees, ids, trues, falses] =
        ["nodes_treeids", "nodes_nodeids", "nodes_truenodeids", "nodes_falsenodeids"]
            .map(|name| ints(node, name).unwrap_or_default());
    if [trees, ids, trues, falses].iter().any(|values| values.len() != modes.len()) {
        return Ok(vec![]);
    }
    let mut nodes: Vec<Node> = (modes.iter().zip(trees).zip(ids).zip(trues.iter().zip(falses)))
        .map(|(((mode, tree), id), (t, f))| (*tree, *id, (mode != b"LEAF").then_some([*t, *f])))
        .collect();
    nodes.sort_by_key(|&(tree, id, _)| (tree, id));
    let mut first = 0;
    let mut previous = None;
    let mut children = Vec::with_capacity(nodes.len());
    for (position, &(tree, id, branches)) in nodes.iter().enumerate() {
        if previous != Some(tree) {
            (first, previous) = (position, Some(tree));
        }
        let at = |child: i64| {
            usize::try_from(child)
                .ok()
                .and_then(|child| child.checked_add(first))
                .filter(|&at| at < nodes.len())
                .with_context(|| format!("{OP}: node {id} of tree {tree} has no node {child}"))
        };
        children.push(branches.into_iter().flatten().map(at).collect::<TractResult<_>>()?);
    }
    Ok(children)
}

/// Whether the graph of `children` has no cycle: removing nodes without parents removes all.
fn is_acyclic(children: &[Vec<usize>]) -> bool {
    let mut parents = vec![0usize; children.len()];
    for &child in children.iter().flatten() {
        if let Some(count) = parents.get_mut(child) {
            *count += 1;
        }
    }
    let mut orphans: Vec<usize> =
        (0..children.len()).filter(|&n| parents.get(n) == Some(&0)).collect();
    let mut removed = 0;
    while let Some(node) = orphans.pop() {
        removed += 1;
        for &child in children.get(node).into_iter().flatten() {
            if let Some(count) = parents.get_mut(child) {
                *count -= 1;
                if *count == 0 {
                    orphans.push(child);
                }
            }
        }
    }
    removed == children.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::AttributeProto;

    /// A one-tree classifier: node 0 branches to `children`, nodes 1 and 2 are leaves of the
    /// classes `classes`, among two labels.
    fn classifier(children: [i64; 2], classes: [i64; 2]) -> NodeProto {
        let ints = |name: &str, ints: &[i64]| AttributeProto {
            name: name.into(),
            ints: ints.to_vec(),
            ..Default::default()
        };
        let modes = ["BRANCH_LEQ", "LEAF", "LEAF"].map(|mode| mode.as_bytes().to_vec());
        NodeProto {
            op_type: OP.into(),
            attribute: vec![
                ints("nodes_treeids", &[0, 0, 0]),
                ints("nodes_nodeids", &[0, 1, 2]),
                ints("nodes_truenodeids", &[children[0], 0, 0]),
                ints("nodes_falsenodeids", &[children[1], 0, 0]),
                AttributeProto {
                    name: "nodes_modes".into(),
                    strings: modes.to_vec(),
                    ..Default::default()
                },
                ints("class_ids", &classes),
                ints("classlabels_int64s", &[0, 1]),
            ],
            ..Default::default()
        }
    }

    fn error(node: &NodeProto) -> String {
        check(node).unwrap_err().to_string()
    }

    #[test]
    fn trees_whose_leaves_and_children_are_in_range_pass() {
        check(&classifier([1, 2], [0, 1])).unwrap();
        check(&classifier([2, 2], [1, 1])).unwrap();
    }

    #[test]
    fn class_ids_past_the_labels_are_refused() {
        let message = "TreeEnsembleClassifier: class id 2 is out of range for 2 class labels";
        assert_eq!(error(&classifier([1, 2], [0, 2])), message);
        assert!(error(&classifier([1, 2], [-1, 0])).contains("class id -1 is out of range"));
    }

    #[test]
    fn cycles_and_missing_children_are_refused() {
        let cycle = "TreeEnsembleClassifier: a branch leads back to itself";
        assert_eq!(error(&classifier([0, 2], [0, 1])), cycle);
        let missing = "TreeEnsembleClassifier: node 0 of tree 0 has no node 3";
        assert_eq!(error(&classifier([1, 3], [0, 1])), missing);
        assert!(error(&classifier([-1, 2], [0, 1])).contains("has no node -1"));
    }
}
