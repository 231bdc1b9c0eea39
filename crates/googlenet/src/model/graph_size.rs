//! How large a model's graph is, counted in the ONNX file before tract builds anything.
//!
//! tract's optimiser rewrites a graph one patch at a time, and each patch scans the whole graph,
//! so its time grows faster than the square of the graph's size. On this project's 2-core
//! machine a chain of element-wise nodes (the slowest shape found) loads in 0.8 s at 1,000
//! nodes, 28 s at 4,000 and 53 s at 5,000; at 10,000 it took over two minutes, and a 2.4 MB
//! file of 100,000 would take days. tract's parser compares each initializer with every
//! constant before it, too: 10,000 unused initializers took 1 s to load, 100,000 over 200 s.
//! A graph past [`MAX_SIZE`] is refused at once instead.

use anyhow::{ensure, Result};
use tract_onnx::pb::{GraphProto, ModelProto};

/// The largest size a model may have, in its graph and all subgraphs: 12 times the BVLC
/// GoogLeNet's 403, and more than an image classifier needs.
pub(crate) const MAX_SIZE: usize = 5_000;

/// Refuses a model whose graph is larger than [`MAX_SIZE`].
pub(crate) fn check(proto: &ModelProto) -> Result<()> {
    let size = proto.graph.as_ref().map_or(0, size);
    ensure!(
        size <= MAX_SIZE,
        "the graph has {size} node inputs and initializers, over the limit of {MAX_SIZE} \
         (past it, loading the model could take many minutes)"
    );
    Ok(())
}

/// The size of `graph` and of every graph inside its nodes' attributes (`If` branches, `Loop`
/// and `Scan` bodies): each input of each node (one for a node without inputs) and each
/// initializer. A variadic node (`Sum`, `Concat`) counts all its inputs, because tract makes
/// a `Sum` a chain.
fn size(graph: &GraphProto) -> usize {
    let mut count = 0;
    let mut pending = vec![graph];
    while let Some(graph) = pending.pop() {
        count += graph.initializer.len() + graph.sparse_initializer.len();
        for node in &graph.node {
            count += node.input.len().max(1);
            for attribute in &node.attribute {
                pending.extend(attribute.g.as_ref());
                pending.extend(&attribute.graphs);
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{AttributeProto, NodeProto};

    fn node(inputs: usize, graphs: Vec<GraphProto>) -> NodeProto {
        let attribute = AttributeProto { graphs, ..Default::default() };
        NodeProto {
            input: vec!["x".into(); inputs],
            attribute: vec![attribute],
            ..Default::default()
        }
    }

    fn graph(nodes: Vec<NodeProto>) -> GraphProto {
        GraphProto { node: nodes, ..Default::default() }
    }

    #[test]
    fn every_input_and_initializer_counts_and_subgraphs_too() {
        let branch = graph(vec![node(1, vec![]), node(0, vec![])]);
        let mut nested = graph(vec![node(3, vec![branch.clone()])]);
        nested.initializer.push(Default::default());
        let mut top = graph(vec![node(4998, vec![]), node(2, vec![nested, branch])]);
        top.sparse_initializer.push(Default::default());
        assert_eq!(size(&top), 4998 + 2 + 3 + 1 + 2 + 2 + 1);
        let mut with_g = node(1, vec![]);
        with_g.attribute.push(AttributeProto { g: Some(top.clone()), ..Default::default() });
        assert_eq!(size(&graph(vec![with_g])), 1 + size(&top));
        let model = |graph| ModelProto { graph: Some(graph), ..Default::default() };
        let error = check(&model(top.clone())).unwrap_err().to_string();
        assert!(error.starts_with("the graph has 5009 node inputs and initializers, over the"));
        top.node.truncate(1);
        top.initializer.resize(top.initializer.len() + 1, Default::default());
        assert_eq!(size(&top), 5000);
        assert!(check(&model(top)).is_ok());
        assert!(check(&ModelProto::default()).is_ok());
    }
}
