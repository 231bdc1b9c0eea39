//! The operators `googlenet` runs: those of convolutional and transformer image classifiers.
//!
//! Every node of a model, in its graph and in any graph held by a node's attributes, is checked
//! against [`OPERATORS`] before tract builds anything. The rest of the ONNX standard (signal
//! processing, classical machine learning, control flow, recurrent and quantized operators,
//! data-dependent shapes such as `NonZero`) is refused with one line naming the operator and the
//! node, so tract's handling of it is never reached.

use anyhow::{bail, Result};
use tract_onnx::pb::{GraphProto, ModelProto};

/// The ONNX operators of the image classifiers `googlenet` runs, sorted and separated by
/// spaces: GoogLeNet, ResNet, VGG, SqueezeNet, DenseNet, MobileNet v2/v3, EfficientNet,
/// Inception v3 and ViT-style transformers as exported from Caffe, PyTorch and TensorFlow.
pub const OPERATORS: &str = "\
    Abs Add AveragePool BatchNormalization Cast Ceil Celu Clip Concat Constant \
    ConstantOfShape Conv Div Dropout Einsum Elu Equal Erf Exp Expand Flatten Floor Gather \
    Gelu Gemm GlobalAveragePool GlobalMaxPool Greater HardSigmoid HardSwish Identity \
    InstanceNormalization LRN LayerNormalization LeakyRelu Less Log LogSoftmax MatMul Max \
    MaxPool Mean Min Mish Mul Neg Not PRelu Pad Pow Reciprocal ReduceL2 ReduceMax ReduceMean \
    ReduceMin ReduceSum Relu Reshape Round Selu Shape Sigmoid Slice Softmax Softplus \
    Softsign Split Sqrt Squeeze Sub Sum Tanh Tile Transpose Unsqueeze Where";

/// Refuses a model with a node, in any of its graphs, whose operator is not in [`OPERATORS`]
/// or comes from another domain than ONNX's own.
pub(crate) fn check(proto: &ModelProto) -> Result<()> {
    let mut pending: Vec<&GraphProto> = proto.graph.iter().collect();
    while let Some(graph) = pending.pop() {
        for node in &graph.node {
            let known = OPERATORS.split(' ').any(|op| op == node.op_type);
            let standard = matches!(node.domain.as_str(), "" | "ai.onnx");
            if !(known && standard) {
                let op = match node.domain.as_str() {
                    "" | "ai.onnx" => node.op_type.clone(),
                    domain => format!("{domain}.{}", node.op_type),
                };
                let name = node.name.as_str();
                let name =
                    if name.is_empty() { node.output.first().map_or("", |o| o) } else { name };
                bail!(
                    "the model uses `{op}` (node `{name}`), which image classifiers do not; \
                     googlenet runs convolutional and transformer image classifiers"
                );
            }
            for attribute in &node.attribute {
                pending.extend(attribute.g.as_ref());
                pending.extend(&attribute.graphs);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{AttributeProto, NodeProto};

    fn model(nodes: Vec<NodeProto>) -> ModelProto {
        ModelProto {
            graph: Some(GraphProto { node: nodes, ..Default::default() }),
            ..Default::default()
        }
    }

    fn node(op: &str, name: &str) -> NodeProto {
        NodeProto { op_type: op.into(), name: name.into(), ..Default::default() }
    }

    #[test]
    fn the_list_is_sorted_and_single_spaced() {
        let names: Vec<&str> = OPERATORS.split(' ').collect();
        assert!(names.windows(2).all(|pair| pair[0] < pair[1]), "{names:?}");
        assert!(names.iter().all(|name| name.chars().all(|c| c.is_ascii_alphanumeric())));
    }

    #[test]
    fn an_operator_off_the_list_is_named_with_its_node() {
        assert!(check(&model(vec![node("Conv", "c"), node("Relu", "r")])).is_ok());
        let error = check(&model(vec![node("Conv", "c"), node("DFT", "x")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the model uses `DFT` (node `x`), which image classifiers do not; googlenet runs \
             convolutional and transformer image classifiers"
        );
    }

    #[test]
    fn another_domain_is_refused_even_for_a_listed_name() {
        let mut relu = node("Relu", "r");
        relu.domain = "com.example".into();
        let error = check(&model(vec![relu])).unwrap_err().to_string();
        assert!(error.starts_with("the model uses `com.example.Relu` (node `r`)"), "{error}");
    }

    #[test]
    fn subgraphs_are_checked_too() {
        let inner = GraphProto { node: vec![node("OneHot", "deep")], ..Default::default() };
        let mut outer = node("Identity", "outer");
        outer.attribute.push(AttributeProto { g: Some(inner), ..Default::default() });
        let error = check(&model(vec![outer])).unwrap_err().to_string();
        assert!(error.starts_with("the model uses `OneHot` (node `deep`)"), "{error}");
    }
}
