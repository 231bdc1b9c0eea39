#!/usr/bin/env python3
"""Writes variants of the operator seeds (fuzz/seeds/model/op-*.onnx) into OUT_DIR, each with
one thing changed, for the loader to be tried on one by one, and each model that loads to be
run on a real photo:

    python3 fuzz/sweep.py /tmp/sweep
    fuzz/run-sweep.sh /tmp/sweep

A mutating fuzzer reaches such values slowly: an attribute must be both named and set. Every
integer attribute (but `axis` and `axes`) gets 0, -1, 2^31, 2^40 and -2^40 (all its values, or
the first); every float attribute and float initializer 0, -1, NaN, +-inf and 1e30; every
integer initializer -1, 2^31, 2^62, the int64 extremes and 3 (clamped to its type; all, or the
first). Structure is swept too: `axis` and `axes` get values past any rank; type attributes
(`to`, `dtype`) and each initializer's and the input's element type get every ONNX type (an
initializer both converted and merely relabelled over its old bytes); each initializer becomes a
scalar or gains a dimension; each node input is dropped, blanked, doubled, or replaced by a
stand-in: an empty tensor, a scalar, a vector, a matrix, or a tensor of rank 3 or 5 (see
STAND_INS), or by a tensor of its own shape but for one length, known only at run time; each
initializer of up to 192 values is computed from the image instead (times 1 and 10^9: indices,
counts and shapes known only at run time); and the default opset becomes each version from 1 to
24. These sweeps leave alone the last four nodes of each seed (Reshape, Cast, Reshape, Concat),
which only wire the operator's output to `prob_1` and are the same in every seed. Last, the
graph as a whole is changed (GRAPH_CHANGES, MODEL_CHANGES): cycles, names used twice or never
made, declared inputs and outputs of other shapes and types, initializers stored outside the
file, attributes of the wrong type, odd opsets and IR versions. And the seed's own nodes are
moved into the branches of an If and the body of a Scan (SUBGRAPHS), as they are, with the
subgraph changed as a whole, and with each sweep of one node made there again. Needs onnx and
numpy."""

import copy
import itertools
import math
import pathlib
import sys

import numpy as np
import onnx
from onnx import AttributeProto, numpy_helper

SEEDS = pathlib.Path(__file__).parent / "seeds" / "model"
INT_ATTRIBUTE = [0, -1, 1 << 31, 1 << 40, -(1 << 40)]
FLOAT = [0.0, -1.0, math.nan, math.inf, -math.inf, 1e30]
INT_INITIALIZER = [-1, 1 << 31, 1 << 62, (1 << 63) - 1, -(1 << 63), 3]
AXIS = [4, -5, 64, -65, 1 << 31, -(1 << 40)]
TYPE_ATTRIBUTES = ("to", "dtype")
ELEMENT_TYPES = [*onnx.TensorProto.DataType.values(), 99]
HARNESS_NODES = 4
STAND_IN_VALUES = 1 << 20
OPSETS = [1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 24]


def operator_nodes(model):
    """(index, node) for the seed's own nodes, without the harness that ends every seed."""
    return list(enumerate(model.graph.node))[:-HARNESS_NODES]


def operator_initializers(model):
    """(index, initializer) for the initializers the seed's own nodes read."""
    read = {name for _, target in operator_nodes(model) for name in target.input}
    return [(ii, init) for ii, init in enumerate(model.graph.initializer) if init.name in read]


def attribute_values(attr):
    """The values to sweep an attribute through, and the field they go in, or None."""
    if attr.type in (AttributeProto.INT, AttributeProto.INTS):
        if attr.name in ("axis", "axes"):
            return AXIS, "ints"
        if attr.name in TYPE_ATTRIBUTES:
            return ELEMENT_TYPES, "ints"
        return INT_ATTRIBUTE, "ints"
    if attr.type in (AttributeProto.FLOAT, AttributeProto.FLOATS):
        return FLOAT, "floats"
    return None


def attribute_variants(model):
    """(name, model) for each extreme value of each numeric attribute."""
    for ni, target in operator_nodes(model):
        for ai, attr in enumerate(target.attribute):
            swept = attribute_values(attr)
            if swept is None:
                continue
            values, field = swept
            for vi, v in enumerate(values):
                for tag in ("all", "first"):
                    repeated = getattr(attr, field)
                    if tag == "first" and len(repeated) < 2:
                        continue
                    variant = copy.deepcopy(model)
                    target = variant.graph.node[ni].attribute[ai]
                    if attr.type in (AttributeProto.INT, AttributeProto.FLOAT):
                        setattr(target, "i" if field == "ints" else "f", v)
                    elif tag == "all":
                        getattr(target, field)[:] = [v] * len(repeated)
                    else:
                        getattr(target, field)[0] = v
                    yield f"{ni}.{attr.name}.{tag}{vi}", variant


def initializer_variants(model):
    """(name, model) for each extreme value of each numeric initializer."""
    for ii, init in operator_initializers(model):
        array = numpy_helper.to_array(init)
        if array.dtype.kind == "f":
            values = FLOAT
        elif array.dtype.kind in "iu":
            info = np.iinfo(array.dtype)
            values = [min(max(v, info.min), info.max) for v in INT_INITIALIZER]
        else:
            continue
        for vi, v in enumerate(values):
            for tag in ("all", "first"):
                if tag == "first" and array.size < 2:
                    continue
                changed = array.copy()
                if tag == "all":
                    changed[...] = v
                else:
                    changed.reshape(-1)[0] = v
                variant = copy.deepcopy(model)
                variant.graph.initializer[ii].CopyFrom(numpy_helper.from_array(changed, init.name))
                yield f"init{ii}.{tag}{vi}", variant


def variant_with(model, change):
    """A deep copy of `model` with `change` applied to it."""
    variant = copy.deepcopy(model)
    change(variant)
    return variant


def element_type_variants(model):
    """(name, model) for each element type of each initializer and of the input."""
    for ii, init in operator_initializers(model):
        array = numpy_helper.to_array(init)
        for t in ELEMENT_TYPES:

            def relabel(m, ii=ii, t=t):
                m.graph.initializer[ii].data_type = t

            yield f"init{ii}.relabel{t}", variant_with(model, relabel)
            try:
                converted = numpy_helper.from_array(
                    array.astype(onnx.helper.tensor_dtype_to_np_dtype(t)), init.name
                )
            except (KeyError, TypeError, ValueError, NotImplementedError):
                continue

            def convert(m, ii=ii, converted=converted):
                m.graph.initializer[ii].CopyFrom(converted)

            yield f"init{ii}.convert{t}", variant_with(model, convert)
    for t in ELEMENT_TYPES:

        def retype(m, t=t):
            m.graph.input[0].type.tensor_type.elem_type = t

        yield f"input.type{t}", variant_with(model, retype)


def initializer_shape_variants(model):
    """(name, model) for each initializer as a scalar and with one more dimension."""
    for ii, init in operator_initializers(model):
        array = numpy_helper.to_array(init)
        if array.size == 0:
            continue
        shapes = {
            "scalar": array.reshape(-1)[:1].reshape(()),
            "lifted": array.reshape((1, *array.shape)),
        }
        for tag, changed in shapes.items():

            def reshape(m, ii=ii, changed=changed, name=init.name):
                m.graph.initializer[ii].CopyFrom(numpy_helper.from_array(changed, name))

            yield f"init{ii}.{tag}", variant_with(model, reshape)


def inferred(model):
    """`model`'s graph after ONNX's shape inference, where it can run, for `element_types` and
    `shapes` to read."""
    try:
        return onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - a seed ONNX cannot check still has the types it declares
        return model.graph


def typed_values(graph):
    """The values of `graph` that carry a type: its inputs, inferred values and outputs."""
    return [*graph.input, *graph.value_info, *graph.output]


def element_types(graph):
    """The element type of each value of an `inferred` graph that ONNX's shape inference can
    tell."""
    types = {init.name: init.data_type for init in graph.initializer}
    for value in typed_values(graph):
        if value.type.tensor_type.elem_type:
            types[value.name] = value.type.tensor_type.elem_type
    return types


def shapes(graph):
    """The shape of each value of an `inferred` graph whose every length ONNX's shape inference
    can tell."""
    known = {init.name: list(init.dims) for init in graph.initializer}
    for value in typed_values(graph):
        tensor = value.type.tensor_type
        if tensor.HasField("shape") and all(d.HasField("dim_value") for d in tensor.shape.dim):
            known[value.name] = [d.dim_value for d in tensor.shape.dim]
    return known


def node(op, inputs, output, **attributes):
    return onnx.helper.make_node(op, inputs, [output], **attributes)


def int64s(name, *values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def photo_values(count, shape, output):
    """Nodes and initializers that make `output`: the input's first `count` values, shaped
    `shape` (the photo's, when `googlenet classify` runs the model)."""
    return [
        node("Reshape", ["data_0", "minus_one"], "flat"),
        node("Slice", ["flat", "zero", "count"], "part"),
        node("Reshape", ["part", "shape"], output),
    ], [int64s("minus_one", -1), int64s("zero", 0), int64s("count", count), int64s("shape", *shape)]


# What stands in for a node input: (nodes, initializers) that make `stand_in` from the input
# `data_0` (all zeros when the fuzz target runs). "nonzero" shapes are ones tract cannot know
# before it runs: the entries of NonZero.
STAND_INS = {
    "empty-constant": ([], []),
    "empty-sliced": photo_values(0, (0,), "x"),
    "empty-nonzero": (
        [node("NonZero", ["data_0"], "where"), node("Reshape", ["where", "minus_one"], "x")],
        [int64s("minus_one", -1)],
    ),
    "scalar": ([node("ReduceMax", ["data_0"], "x", keepdims=0)], []),
    "vector-nonzero": (
        [
            node("Add", ["data_0", "one"], "ones"),
            node("NonZero", ["ones"], "where"),
            node("Reshape", ["where", "minus_one"], "x"),
        ],
        [numpy_helper.from_array(np.array(1, np.float32), "one"), int64s("minus_one", -1)],
    ),
    "matrix-nonzero": (
        [node("Add", ["data_0", "one"], "ones"), node("NonZero", ["ones"], "x")],
        [numpy_helper.from_array(np.array(1, np.float32), "one")],
    ),
    "rank3-nonzero": (
        [
            node("Add", ["data_0", "one"], "ones"),
            node("NonZero", ["ones"], "where"),
            node("Reshape", ["where", "rank3"], "x"),
        ],
        [numpy_helper.from_array(np.array(1, np.float32), "one"), int64s("rank3", 1, 4, -1)],
    ),
    "rank3": ([node("Reshape", ["data_0", "rank3"], "x")], [int64s("rank3", 1, 3, -1)]),
    "rank5": ([node("Reshape", ["data_0", "rank5"], "x")], [int64s("rank5", 1, 1, 3, 8, 8)]),
}


def prepend(graph, nodes, initializers):
    """Adds `initializers` to `graph`, and `nodes` before its own, in order."""
    graph.initializer.extend(initializers)
    for offset, wiring in enumerate(nodes):
        graph.node.insert(offset, wiring)


def stand_in_wiring(how, element_type):
    """Nodes and initializers that make `stand_in`, of `element_type`, as STAND_INS says."""
    if how == "empty-constant":
        empty = np.zeros(0, onnx.helper.tensor_dtype_to_np_dtype(element_type))
        return [], [numpy_helper.from_array(empty, "stand_in")]
    nodes, initializers = STAND_INS[how]
    return [*nodes, node("Cast", ["x"], "stand_in", to=element_type)], initializers


def with_stand_in(model, ni, k, nodes, initializers):
    """A copy of `model` whose node `ni` reads its input `k` from `stand_in`, which `nodes` and
    `initializers`, put first, make."""

    def stand_in(m):
        m.graph.node[ni].input[k] = "stand_in"
        prepend(m.graph, nodes, initializers)

    return variant_with(model, stand_in)


def stand_in_variants(model):
    """(name, model) for each input of the seed's own nodes replaced by each of STAND_INS, of
    its element type: many operators read a scalar from an input (a count, an axis, a
    condition), or take the channels or window of a tensor of a rank they expect."""
    types = element_types(inferred(model))
    for ni, target in operator_nodes(model):
        for k, name in enumerate(target.input):
            element_type = types.get(name)
            if not name or not element_type or element_type == onnx.TensorProto.STRING:
                continue
            for how in STAND_INS:
                nodes, initializers = stand_in_wiring(how, element_type)
                yield f"{ni}.input{k}.{how}", with_stand_in(model, ni, k, nodes, initializers)


def image_value_variants(model):
    """(name, model) for each initializer the seed's own nodes read, of up to 192 values,
    replaced by that many values of the image, times 1 and times 10^9, cast to its type: indices,
    counts and shapes known only at run time, as a model fed real photos computes them (the fuzz
    target runs on zeros, so run these through `googlenet classify`)."""
    for ii, init in operator_initializers(model):
        array = numpy_helper.to_array(init)
        if not 0 < array.size <= 192 or array.dtype.kind not in "fiub":
            continue
        for scale in (1, 10**9):
            nodes, initializers = photo_values(array.size, array.shape, "shaped")
            nodes += [
                node("Mul", ["shaped", "scale"], "scaled"),
                node("Cast", ["scaled"], init.name, to=init.data_type),
            ]
            initializers.append(numpy_helper.from_array(np.array(scale, np.float32), "scale"))

            def from_image(m, ii=ii, nodes=nodes, initializers=initializers):
                del m.graph.initializer[ii]
                prepend(m.graph, nodes, initializers)

            yield f"init{ii}.image{scale}", variant_with(model, from_image)


def sum_output(model):
    """Ends the seed's own nodes with the sum of their output, as one float, for the harness
    to score instead of each value: an output whose length is known only at run time cannot be
    classified."""
    graph = model.graph
    at = len(graph.node) - HARNESS_NODES
    graph.node.insert(at, node("Cast", [seed_output(model)], "summands", to=onnx.TensorProto.FLOAT))
    graph.node.insert(at + 1, node("ReduceSum", ["summands"], "summed", keepdims=1))
    graph.node[-HARNESS_NODES + 1].input[0] = "summed"


def run_time_length(shape, axis, length):
    """Nodes and initializers that make `x`, an int64 tensor of `shape` but for `axis`, whose
    length is `length`, known to tract only as the model runs (a NonZero counts it). Its values
    count 0, 1, ... along that axis: a tensor of one value, tract would fold away."""
    column = [1] * len(shape)
    column[axis] = -1
    spread = list(shape)
    spread[axis] = 1
    return [
        node("ReduceSum", ["data_0"], "length_sum", keepdims=0),
        node("Abs", ["length_sum"], "length_abs"),
        node("Add", ["length_abs", "length_one"], "length_positive"),
        node("Expand", ["length_positive", "length_count"], "length_ones"),
        node("NonZero", ["length_ones"], "length_where"),
        node("Reshape", ["length_where", "length_column"], "length_counted"),
        node("Add", ["length_counted", "length_zeros"], "x"),
    ], [
        numpy_helper.from_array(np.array(1, np.float32), "length_one"),
        int64s("length_count", length),
        int64s("length_column", *column),
        numpy_helper.from_array(np.zeros(spread, np.int64), "length_zeros"),
    ]


def run_time_length_variants(model):
    """(name, model) for each input of the seed's own nodes, of a shape ONNX can infer, replaced
    by a tensor of that shape but for one axis, whose length tract can know only as the model
    runs (see `run_time_length`): none, 1, one fewer, the same length, and longer. An operator
    that sizes its work from the facts and trusts the tensors to match (as tract's matrix
    products did) reads past one of them; one that checks fails the image. The harness scores
    the sum of the output."""
    graph = inferred(model)
    types, known = element_types(graph), shapes(graph)
    for ni, target in operator_nodes(model):
        for k, name in enumerate(target.input):
            element_type, shape = types.get(name), known.get(name)
            if not shape or not element_type or element_type == onnx.TensorProto.STRING:
                continue
            for axis, length in enumerate(shape):
                for changed in sorted({0, 1, max(length - 1, 0), length, 2 * length + 3}):
                    if math.prod(shape[:axis] + [changed] + shape[axis + 1 :]) > STAND_IN_VALUES:
                        continue
                    nodes, initializers = run_time_length(shape, axis, changed)
                    nodes.append(node("Cast", ["x"], "stand_in", to=element_type))
                    variant = with_stand_in(model, ni, k, nodes, initializers)
                    sum_output(variant)
                    yield f"{ni}.input{k}.axis{axis}.length{changed}", variant


def node_input_variants(model):
    """(name, model) for each node input dropped, blanked to "" and doubled."""
    for ni, target in operator_nodes(model):
        for k in range(len(target.input)):

            def drop(m, ni=ni, k=k):
                del m.graph.node[ni].input[k]

            def blank(m, ni=ni, k=k):
                m.graph.node[ni].input[k] = ""

            def double(m, ni=ni, k=k):
                m.graph.node[ni].input.insert(k, m.graph.node[ni].input[k])

            for tag, change in (("drop", drop), ("blank", blank), ("double", double)):
                yield f"{ni}.input{k}.{tag}", variant_with(model, change)


def opset_variants(model):
    """(name, model) for each version of the default opset."""
    for version in OPSETS:

        def set_opset(m, version=version):
            for opset in m.opset_import:
                if opset.domain in ("", "ai.onnx"):
                    opset.version = version

        yield f"opset{version}", variant_with(model, set_opset)


def first_initializer(graph):
    """The name of `graph`'s first initializer (there is none in a few seeds)."""
    if not graph.initializer:
        raise IndexError("no initializer")
    return graph.initializer[0].name


def external_data(graph, location, length=None):
    """Moves the first initializer's bytes out of the file, to `location`."""
    tensor = graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    if length is not None:
        tensor.external_data.add(key="length", value=str(length))


def reverse_nodes(graph):
    nodes = list(graph.node)[::-1]
    graph.ClearField("node")
    graph.node.extend(nodes)


def set_dim(graph, axis, **dim):
    graph.input[0].type.tensor_type.shape.dim[axis].CopyFrom(onnx.TensorShapeProto.Dimension(**dim))


def retype_attributes(graph, retype):
    for attr in graph.node[0].attribute:
        attr.type = retype.get(attr.type, attr.type)


def value_info(graph, element_type, shape):
    graph.value_info.append(
        onnx.helper.make_tensor_value_info(graph.node[0].output[0], element_type, shape)
    )


SWAPPED = {
    AttributeProto.INT: AttributeProto.INTS,
    AttributeProto.INTS: AttributeProto.INT,
    AttributeProto.FLOAT: AttributeProto.FLOATS,
    AttributeProto.FLOATS: AttributeProto.FLOAT,
}

# Changes to a seed's graph as a whole: its wiring, its declared inputs and outputs, its
# initializers' storage and its first node's attributes. Each takes the graph to change.
GRAPH_CHANGES = {
    "self-loop": lambda g: g.node[0].input.__setitem__(0, g.node[0].output[0]),
    "cycle": lambda g: g.node[0].input.__setitem__(0, g.node[-1].output[0]),
    "reversed": reverse_nodes,
    "output-twice": lambda g: g.node[-2].output.__setitem__(0, g.node[0].output[0]),
    "output-is-input": lambda g: g.node[0].output.__setitem__(0, "data_0"),
    "output-is-initializer": lambda g: g.node[0].output.__setitem__(0, first_initializer(g)),
    "dangling-input": lambda g: g.node[0].input.__setitem__(0, "nowhere"),
    "blank-output": lambda g: g.node[0].output.__setitem__(0, ""),
    "no-node-outputs": lambda g: g.node[0].ClearField("output"),
    "duplicate-node": lambda g: g.node.append(copy.deepcopy(g.node[0])),
    "graph-output-nowhere": lambda g: setattr(g.output[0], "name", "nowhere"),
    "graph-output-is-input": lambda g: setattr(g.output[0], "name", "data_0"),
    "graph-output-is-initializer": lambda g: setattr(g.output[0], "name", first_initializer(g)),
    "two-graph-outputs": lambda g: g.output.append(copy.deepcopy(g.output[0])),
    "two-graph-inputs": lambda g: g.input.append(copy.deepcopy(g.input[0])),
    "no-nodes": lambda g: g.ClearField("node"),
    "no-graph-outputs": lambda g: g.ClearField("output"),
    "no-graph-inputs": lambda g: g.ClearField("input"),
    "initializer-is-input": lambda g: setattr(g.initializer[0], "name", "data_0"),
    "initializer-twice": lambda g: g.initializer.append(copy.deepcopy(g.initializer[0])),
    "external-file": lambda g: external_data(g, "/etc/passwd"),
    "external-zero": lambda g: external_data(g, "../../../../dev/zero", 1 << 40),
    "segment": lambda g: g.initializer[0].segment.CopyFrom(
        onnx.TensorProto.Segment(begin=0, end=1 << 40)
    ),
    "input-no-shape": lambda g: g.input[0].type.tensor_type.ClearField("shape"),
    "input-no-type": lambda g: g.input[0].ClearField("type"),
    "input-rank-5": lambda g: g.input[0].type.tensor_type.shape.dim.add(dim_value=1),
    "input-height-0": lambda g: set_dim(g, 2, dim_value=0),
    "input-height-negative": lambda g: set_dim(g, 2, dim_value=-8),
    "input-height-2^40": lambda g: set_dim(g, 2, dim_value=1 << 40),
    "input-height-symbol": lambda g: set_dim(g, 2, dim_param="h"),
    "input-batch-symbol": lambda g: set_dim(g, 0, dim_param="N"),
    "input-batch-8": lambda g: set_dim(g, 0, dim_value=8),
    "input-sequence": lambda g: g.input[0].type.CopyFrom(
        onnx.helper.make_sequence_type_proto(g.input[0].type)
    ),
    "output-int64": lambda g: setattr(g.output[0].type.tensor_type, "elem_type", 7),
    "value-info-wrong": lambda g: value_info(g, onnx.TensorProto.INT64, [2, 2]),
    "value-info-huge": lambda g: value_info(g, onnx.TensorProto.FLOAT, [1 << 40, 1 << 40]),
    "value-info-scalar": lambda g: value_info(g, onnx.TensorProto.FLOAT, []),
    "unknown-domain": lambda g: setattr(g.node[0], "domain", "com.example"),
    **{
        f"attributes-as-{kind}": lambda g, t=t: retype_attributes(g, dict.fromkeys(SWAPPED, t))
        for kind, t in [
            ("strings", AttributeProto.STRING),
            ("tensors", AttributeProto.TENSOR),
            ("undefined", AttributeProto.UNDEFINED),
        ]
    },
    "attributes-swapped": lambda g: retype_attributes(g, SWAPPED),
    "attributes-twice": lambda g: g.node[0].attribute.extend(copy.deepcopy(g.node[0].attribute)),
    "attributes-referenced": lambda g: [
        setattr(attr, "ref_attr_name", "x") for attr in g.node[0].attribute
    ],
    "no-attributes": lambda g: g.node[0].ClearField("attribute"),
    "stray-subgraph": lambda g: g.node[0].attribute.append(
        onnx.helper.make_attribute("body", onnx.helper.make_graph([], "body", [], []))
    ),
}

# Changes to a seed's model around its graph: opsets and IR version.
MODEL_CHANGES = {
    "no-opsets": lambda m: m.ClearField("opset_import"),
    "two-default-opsets": lambda m: m.opset_import.append(onnx.helper.make_opsetid("", 9)),
    "opset-negative": lambda m: setattr(m.opset_import[0], "version", -1),
    "opset-2^40": lambda m: setattr(m.opset_import[0], "version", 1 << 40),
    "ir-1": lambda m: setattr(m, "ir_version", 1),
    "ir-99": lambda m: setattr(m, "ir_version", 99),
}


def graph_variants(model):
    """(name, model) for each of GRAPH_CHANGES and MODEL_CHANGES that applies to the seed."""
    changes = {name: lambda m, c=c: c(m.graph) for name, c in GRAPH_CHANGES.items()}
    for name, change in {**changes, **MODEL_CHANGES}.items():
        try:
            yield name, variant_with(model, change)
        except IndexError:
            continue


def seed_output(model):
    """The value the harness reads: what the seed's own nodes make."""
    return model.graph.node[-HARNESS_NODES + 1].input[0]


def moved_into(model, name, inputs=(), initializers=False):
    """A subgraph `name` holding the seed's own nodes (taken out of `model`), with `inputs` and
    the seed's output, which it names "moved". With `initializers`, the ones the nodes read move
    in too; otherwise the nodes read them, and the input, from the enclosing graph."""
    graph = model.graph
    output = seed_output(model)
    element_type = element_types(inferred(model)).get(output, onnx.TensorProto.FLOAT)
    own = [target for _, target in operator_nodes(model)]
    moved_initializers = [init for _, init in operator_initializers(model)] if initializers else []
    for init in moved_initializers:
        graph.initializer.remove(init)
    for target in own:
        graph.node.remove(target)
    body = onnx.helper.make_graph(
        [*own, node("Identity", [output], "moved")],
        name,
        list(inputs),
        [onnx.helper.make_tensor_value_info("moved", element_type, None)],
        moved_initializers,
    )
    graph.node[-HARNESS_NODES + 1].input[0] = "made"
    return body


def if_condition(how):
    """Nodes and initializers that make `condition` for an If: a constant, or one known only
    when the model runs (true for a photo, false for the fuzz target's zeros)."""
    if how == "constant":
        return [], [numpy_helper.from_array(np.array(True), "condition")]
    return [
        node("ReduceSum", ["data_0"], "total", keepdims=0),
        node("Greater", ["total", "zero_f"], "condition"),
    ], [numpy_helper.from_array(np.array(0, np.float32), "zero_f")]


def in_if(model, how, initializers):
    """Moves the seed's own nodes into both branches of an If."""
    then_branch = moved_into(model, "then", initializers=initializers)
    else_branch = copy.deepcopy(then_branch)
    else_branch.name = "else"
    nodes, inits = if_condition(how)
    nodes.append(
        node("If", ["condition"], "made", then_branch=then_branch, else_branch=else_branch)
    )
    prepend(model.graph, nodes, inits)
    return then_branch.name


def in_scan(model):
    """Moves the seed's own nodes, and the initializers they read, into the body of a Scan
    over the input's first two values, which stacks the seed's output. The input is the Scan's
    state, passed through, and the nodes read it plus the step. tract's optimiser fails on a
    body that reads the input from the enclosing graph, on constant steps, and on a scan input
    the output does not depend on: none of them would reach the nodes' run."""
    data = copy.deepcopy(model.graph.input[0])
    data.name = "data_in"
    body = moved_into(
        model,
        "body",
        inputs=[data, onnx.helper.make_tensor_value_info("step", onnx.TensorProto.FLOAT, [1])],
        initializers=True,
    )
    for target in body.node:
        target.input[:] = ["stepped" if name == "data_0" else name for name in target.input]
    prepend(
        body,
        [
            node("ReduceSum", ["step"], "step_sum", keepdims=0),
            node("Add", ["data_in", "step_sum"], "stepped"),
            node("Identity", ["data_in"], "data_out"),
        ],
        [],
    )
    data_out = copy.deepcopy(data)
    data_out.name = "data_out"
    body.output.insert(0, data_out)
    scan = onnx.helper.make_node(
        "Scan", ["data_0", "steps"], ["data_end", "made"], body=body, num_scan_inputs=1
    )
    nodes, initializers = photo_values(2, (2, 1), "steps")
    prepend(model.graph, [*nodes, scan], initializers)
    return body.name


# Ways to move a seed's own nodes into a subgraph. Each changes the model it is given and
# returns the name of the subgraph that holds them.
SUBGRAPHS = {
    "if-constant": lambda m: in_if(m, "constant", initializers=False),
    "if-run-time": lambda m: in_if(m, "run-time", initializers=True),
    "scan": in_scan,
}


def subgraph(model, name):
    """The subgraph called `name` in the attributes of `model`'s top-level nodes."""
    for target in model.graph.node:
        for attr in target.attribute:
            if attr.type == AttributeProto.GRAPH and attr.g.name == name:
                return attr.g
    raise LookupError(name)


# The sweeps of one node's attributes, inputs and initializers. Each is made again inside the
# subgraphs whose nodes tract keeps as a body of their own (a constant If is folded away).
NODE_SWEEPS = (
    attribute_variants,
    initializer_variants,
    initializer_shape_variants,
    node_input_variants,
    stand_in_variants,
    image_value_variants,
    run_time_length_variants,
)
BODIES = ("if-run-time", "scan")


def subgraph_variants(model):
    """(name, model) for the seed's own nodes moved into each of SUBGRAPHS: as they are, with
    each of GRAPH_CHANGES made to the subgraph, and (in BODIES) after each of NODE_SWEEPS. tract
    parses, wires and types a subgraph apart from its enclosing graph, and the values it reads
    from there are its inputs."""
    for kind, move in SUBGRAPHS.items():
        moved = copy.deepcopy(model)
        name = move(moved)
        yield f"{kind}", moved
        for change_name, change in GRAPH_CHANGES.items():
            try:
                yield f"{kind}.{change_name}", variant_with(
                    moved, lambda m, c=change: c(subgraph(m, name))
                )
            except IndexError:
                continue
        if kind not in BODIES:
            continue
        for sweep in NODE_SWEEPS:
            for variant_name, variant in sweep(model):
                move(variant)
                yield f"{kind}.{variant_name}", variant


def main():
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(SEEDS.glob("op-*.onnx")):
        model = onnx.load(path)
        op = path.stem.removeprefix("op-")
        sweeps = (*NODE_SWEEPS, element_type_variants, opset_variants, graph_variants)
        for name, variant in itertools.chain(
            *(sweep(model) for sweep in sweeps), subgraph_variants(model)
        ):
            (out / f"{op}.{name}.onnx").write_bytes(variant.SerializeToString())
            count += 1
    print(f"{count} models in {out}")


if __name__ == "__main__":
    main()
