//! An ONNX node's attributes, looked up by name.

use tract_onnx::pb::{attribute_proto::AttributeType, AttributeProto, NodeProto};

/// `node`'s attribute `name`, if it has one.
pub(crate) fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// The integers of `node`'s attribute `name`.
pub(crate) fn ints<'a>(node: &'a NodeProto, name: &str) -> Option<&'a [i64]> {
    attribute(node, name).map(|a| &a.ints[..])
}

/// `node`'s attribute `name`, if it is an integer (as tract reads it).
pub(crate) fn int(node: &NodeProto, name: &str) -> Option<i64> {
    attribute(node, name).filter(|a| a.r#type == AttributeType::Int as i32).map(|a| a.i)
}

/// `node`'s attribute `name`, if it is a float (as tract reads it).
pub(crate) fn float(node: &NodeProto, name: &str) -> Option<f32> {
    attribute(node, name).filter(|a| a.r#type == AttributeType::Float as i32).map(|a| a.f)
}
