#!/usr/bin/env python3
"""Writes the fuzzers' seed inputs into fuzz/seeds/: small images in every format and colour
type the decoder meets, a tiny Inception-style ONNX model, and one small model for each operator
tract-onnx registers. Needs Pillow, numpy and onnx (pip install pillow numpy onnx);
scripts/bench's venv plus onnx will do."""

import io
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

HERE = pathlib.Path(__file__).parent / "seeds"


def images():
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = {
        "rgb.png": (rgb, "PNG", {}),
        "gray.png": (rgb.convert("L"), "PNG", {}),
        "la.png": (rgb.convert("LA"), "PNG", {}),
        "palette.png": (rgb.convert("P"), "PNG", {}),
        "rgba.png": (rgb.convert("RGBA"), "PNG", {}),
        "gray16.png": (Image.fromarray(rng.integers(0, 65535, (8, 8), dtype=np.uint16)), "PNG", {}),
        "rgb.jpg": (rgb, "JPEG", {"quality": 80}),
        "progressive.jpg": (rgb, "JPEG", {"progressive": True}),
        "exif6.jpg": (rgb, "JPEG", {"exif": exif.tobytes()}),
        "cmyk.jpg": (rgb.convert("CMYK"), "JPEG", {}),
        "gray.jpg": (rgb.convert("L"), "JPEG", {}),
        "rgb.gif": (rgb, "GIF", {}),
        "rgb.bmp": (rgb, "BMP", {}),
        "rgb.tif": (rgb, "TIFF", {}),
        "rgb.webp": (rgb, "WEBP", {"quality": 80}),
        "lossless.webp": (rgb, "WEBP", {"lossless": True}),
    }
    for name, (image, fmt, options) in out.items():
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        yield name, buffer.getvalue()
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    yield "animated.gif", buffer.getvalue()


def conv(name, inputs, out, k, pad=0):
    return helper.make_node("Conv", [inputs, f"{name}_w", f"{name}_b"], [out], name=name,
                            kernel_shape=[k, k], pads=[pad] * 4)


def model():
    """data [1,3,16,16] -> conv 3x3 -> relu -> LRN -> one Inception module -> GAP -> Gemm ->
    Softmax, with the zoo's pinned-batch Reshape."""
    rng = np.random.default_rng(2)
    weights = {}

    def w(name, shape):
        weights[name] = numpy_helper.from_array(rng.normal(0, 0.1, shape).astype(np.float32), name)

    w("conv1_w", (8, 3, 3, 3)); w("conv1_b", (8,))
    for name, cin, cout, k in [("b1", 8, 4, 1), ("b3r", 8, 4, 1), ("b3", 4, 6, 3),
                               ("b5r", 8, 2, 1), ("b5", 2, 3, 5), ("bp", 8, 3, 1)]:
        w(f"{name}_w", (cout, cin, k, k)); w(f"{name}_b", (cout,))
    w("fc_w", (10, 16)); w("fc_b", (10,))
    weights["shape"] = numpy_helper.from_array(np.array([1, 16], dtype=np.int64), "shape")
    nodes = [
        conv("conv1", "data_0", "c1", 3, 1), helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("LRN", ["r1"], ["n1"], size=5, alpha=1e-4, beta=0.75, bias=1.0),
        conv("b1", "n1", "o1", 1), helper.make_node("Relu", ["o1"], ["a1"]),
        conv("b3r", "n1", "o3r", 1), helper.make_node("Relu", ["o3r"], ["a3r"]),
        conv("b3", "a3r", "o3", 3, 1), helper.make_node("Relu", ["o3"], ["a3"]),
        conv("b5r", "n1", "o5r", 1), helper.make_node("Relu", ["o5r"], ["a5r"]),
        conv("b5", "a5r", "o5", 5, 2), helper.make_node("Relu", ["o5"], ["a5"]),
        helper.make_node("MaxPool", ["n1"], ["p"], kernel_shape=[3, 3], pads=[1] * 4),
        conv("bp", "p", "op", 1), helper.make_node("Relu", ["op"], ["ap"]),
        helper.make_node("Concat", ["a1", "a3", "a5", "ap"], ["cat"], axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"]),
        helper.make_node("Reshape", ["gap", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc"], transB=1),
        helper.make_node("Softmax", ["fc"], ["prob_1"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_inception",
        [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("prob_1", TensorProto.FLOAT, [1, 10])],
        list(weights.values()))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


# One seed per operator: data_0 [1,3,8,8] through the operator (and what it needs first), then
# its output cast to float, flattened and concatenated after the flattened input, so that every
# seed is a one-input, one-output model the loader takes as far as the operator allows. A run
# then starts at every operator instead of finding their names one mutation at a time.
ONNX, MS, ML = "", "com.microsoft", "ai.onnx.ml"
F = np.float32
UNARY = """Abs Acos Acosh Asin Asinh Atan Atanh Ceil Celu Cos Cosh Dropout Elu Erf Exp Floor
    GlobalAveragePool GlobalLpPool GlobalMaxPool Hardmax HardSigmoid HardSwish Identity IsInf
    IsNaN LeakyRelu Log LogSoftmax LpNormalization MeanVarianceNormalization Mish Neg NonZero
    Reciprocal Relu Round Selu Shape Shrink Sigmoid Sign Sin
    Sinh Size Softmax Softplus Softsign Sqrt Tan Tanh ThresholdedRelu""".split()
BINARY = "Add Sub Mul Div Pow Max Min Mean Sum".split()
COMPARE = "Equal Greater Less GreaterOrEqual LessOrEqual".split()
REDUCE = """ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
    ReduceMin ReduceProd ReduceSumSquare""".split()


class Graph:
    """Nodes and initializers of one seed; arrays given as inputs become initializers."""

    def __init__(self):
        self.nodes, self.weights, self.count = [], [], 0
        self.reshaped, self.quantized = {}, None

    def name(self):
        self.count += 1
        return f"t{self.count}"

    def value(self, v):
        if isinstance(v, str):
            return v
        name = self.name()
        self.weights.append(numpy_helper.from_array(np.asarray(v), name))
        return name

    def add(self, op, *inputs, outputs=1, domain=ONNX, node_name=None, **attrs):
        names = [self.name() for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, [self.value(v) for v in inputs], names,
                                           name=node_name, domain=domain or None, **attrs))
        return names[0] if outputs == 1 else names

    def reshape(self, x, *shape):
        """`x` reshaped to `shape`, wired once per shape."""
        if (x, shape) not in self.reshaped:
            self.reshaped[x, shape] = self.add("Reshape", x, i64(*shape))
        return self.reshaped[x, shape]

    def quantize(self, x):
        """`x` as uint8 (scale 0.1, zero point 128), wired once."""
        if self.quantized is None:
            self.quantized = self.add("QuantizeLinear", x, scalar(0.1, F),
                                      scalar(128, np.uint8))
        return self.quantized


def f32(*shape, seed=3):
    return np.random.default_rng(seed).normal(0, 0.5, shape).astype(F)


def i64(*values):
    return np.array(values, np.int64)


def u8(*shape):
    return np.random.default_rng(4).integers(0, 255, shape, dtype=np.uint8)


def scalar(v, dtype):
    return np.array(v, dtype)


def rnn_weights(gates):
    return f32(1, gates * 4, 8), f32(1, gates * 4, 4), f32(1, gates * 8)


def logic(g, op, x):
    return g.add(op, g.add("Greater", x, scalar(0, F)), g.add("Less", x, scalar(0.5, F)))


def bitwise(g, op, x):
    return g.add(op, g.add("Cast", x, to=TensorProto.INT32), np.array([5], np.int32))


TREE = dict(nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
            nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_values=[0.0, 0.0, 0.0],
            nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0], class_treeids=[0, 0],
            class_nodeids=[1, 2], class_ids=[0, 1], class_weights=[1.0, 1.0],
            classlabels_int64s=[0, 1])

# Each operator's wiring onto the input `x`: returns the tensor the seed outputs.
OPERATORS = {
    **{op: lambda g, op, x: g.add(op, x) for op in UNARY},
    **{op: lambda g, op, x: g.add(op, x, np.abs(f32(1, 3, 1, 1)) + 0.5) for op in BINARY},
    **{op: lambda g, op, x: g.add(op, x, np.zeros(1, F)) for op in COMPARE},
    **{op: lambda g, op, x: g.add(op, x, axis=1) for op in ("ArgMax", "ArgMin")},
    **{op: lambda g, op, x: g.add(op, x, axes=[2, 3]) for op in REDUCE},
    **{op: logic for op in ("And", "Or", "Xor")},
    **{op: bitwise for op in ("BitwiseAnd", "BitwiseOr", "BitwiseXor")},
    "ArrayFeatureExtractor": lambda g, op, x: g.add(
        op, g.reshape(x, 3, 64), i64(0, 5), domain=ML),
    "Attention": lambda g, op, x: g.add(op, x, x, x),
    "AveragePool": lambda g, op, x: g.add(
        op, x, kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4),
    "BatchNormalization": lambda g, op, x: g.add(
        op, x, *[np.abs(f32(3, seed=s)) for s in range(4)]),
    "BiasGelu": lambda g, op, x: g.add(op, x, f32(8), domain=MS),
    "BitShift": lambda g, op, x: g.add(
        op, g.add("Cast", x, to=TensorProto.UINT8), np.array([1], np.uint8), direction="LEFT"),
    "BitwiseNot": lambda g, op, x: g.add(op, g.add("Cast", x, to=TensorProto.INT32)),
    "BlackmanWindow": lambda g, op, x: g.add(op, scalar(16, np.int64)),
    "Cast": lambda g, op, x: g.add(op, x, to=TensorProto.INT64),
    "CastLike": lambda g, op, x: g.add(op, x, i64(1)),
    "CategoryMapper": lambda g, op, x: g.add(
        op, np.array(["a", "b", "c"], dtype=object), cats_strings=["a", "b"],
        cats_int64s=[1, 2], default_int64=-1, domain=ML),
    "Clip": lambda g, op, x: g.add(op, x, scalar(-0.5, F), scalar(0.5, F)),
    "Compress": lambda g, op, x: g.add(op, x, np.array([True, False, True]), axis=1),
    "Concat": lambda g, op, x: g.add(op, x, x, axis=1),
    "Constant": lambda g, op, x: g.add(op, value=numpy_helper.from_array(f32(4), "value")),
    "ConstantLike": lambda g, op, x: g.add(op, x, value=2.0),
    "ConstantOfShape": lambda g, op, x: g.add(
        op, i64(2, 3), value=numpy_helper.from_array(np.array([0.5], F), "value")),
    "Conv": lambda g, op, x: g.add(op, x, f32(4, 3, 3, 3), f32(4), pads=[1] * 4),
    "ConvInteger": lambda g, op, x: g.add(
        op, g.quantize(x), u8(4, 3, 3, 3), scalar(128, np.uint8)),
    "ConvTranspose": lambda g, op, x: g.add(op, x, f32(3, 4, 3, 3), f32(4), strides=[2, 2]),
    "CumSum": lambda g, op, x: g.add(op, x, scalar(3, np.int64)),
    "DFT": lambda g, op, x: g.add(op, g.reshape(x, 1, 192, 1), axis=1),
    "DepthToSpace": lambda g, op, x: g.add(
        op, g.add("SpaceToDepth", x, blocksize=2), blocksize=2, mode="CRD"),
    "DequantizeLinear": lambda g, op, x: g.add(
        op, g.quantize(x), scalar(0.1, F), scalar(128, np.uint8)),
    "DynamicQuantizeLinear": lambda g, op, x: g.add(op, x, outputs=3)[0],
    "Einsum": lambda g, op, x: g.add(op, x, equation="bchw->bc"),
    "Expand": lambda g, op, x: g.add(op, x, i64(2, 3, 8, 8)),
    "EyeLike": lambda g, op, x: g.add(op, g.reshape(x, 3, 64)),
    "FastGelu": lambda g, op, x: g.add(op, x, domain=MS),
    "Flatten": lambda g, op, x: g.add(op, x, axis=2),
    "GRU": lambda g, op, x: g.add(op, g.reshape(x, 3, 8, 8), *rnn_weights(3), hidden_size=4),
    "Gather": lambda g, op, x: g.add(op, x, i64(0, 2), axis=1),
    "GatherBlockQuantized": lambda g, op, x: g.add(
        op, u8(4, 16), i64(0, 2), np.abs(f32(4, 1)), block_size=32, domain=MS),
    "GatherElements": lambda g, op, x: g.add(op, x, np.zeros((1, 3, 8, 2), np.int64), axis=3),
    "GatherND": lambda g, op, x: g.add(op, x, i64(0, 1).reshape(1, 2)),
    "Gelu": lambda g, op, x: g.add(op, x, approximate="tanh"),
    "Gemm": lambda g, op, x: g.add(op, g.reshape(x, 3, 64), f32(64, 4), f32(4)),
    "GridSample": lambda g, op, x: g.add(op, x, np.clip(f32(1, 4, 4, 2), -1, 1)),
    "GroupNormalization": lambda g, op, x: g.add(op, x, f32(3), f32(3), num_groups=3),
    "GroupQueryAttention": lambda g, op, x: g.add(
        op, g.reshape(x, 1, 24, 8), g.add("Slice", g.reshape(x, 1, 24, 8), i64(0), i64(4),
                                          i64(2)),
        g.add("Slice", g.reshape(x, 1, 24, 8), i64(4), i64(8), i64(2)), "", "",
        np.array([23], np.int32), scalar(24, np.int32), num_heads=2, kv_num_heads=1,
        domain=MS, outputs=3)[0],
    "HammingWindow": lambda g, op, x: g.add(op, scalar(16, np.int64)),
    "HannWindow": lambda g, op, x: g.add(op, scalar(16, np.int64)),
    "If": lambda g, op, x: g.add(
        op, g.add("Greater", g.add("ReduceSum", x, keepdims=0), scalar(0, F)),
        then_branch=branch("Identity", x), else_branch=branch("Neg", x)),
    "InstanceNormalization": lambda g, op, x: g.add(op, x, f32(3), f32(3)),
    "LRN": lambda g, op, x: g.add(op, x, size=3),
    "LSTM": lambda g, op, x: g.add(op, g.reshape(x, 3, 8, 8), *rnn_weights(4), hidden_size=4),
    "LayerNormalization": lambda g, op, x: g.add(op, x, f32(8), f32(8), axis=-1),
    "LinearClassifier": lambda g, op, x: g.add(
        op, g.reshape(x, 3, 64), coefficients=f32(128).tolist(), classlabels_ints=[0, 1],
        domain=ML, outputs=2)[1],
    "LinearRegressor": lambda g, op, x: g.add(
        op, g.reshape(x, 3, 64), coefficients=f32(64).tolist(), intercepts=[0.5], domain=ML),
    "MatMul": lambda g, op, x: g.add(op, x, f32(8, 4)),
    "MatMulInteger": lambda g, op, x: g.add(op, g.quantize(x), u8(8, 4), scalar(128, np.uint8)),
    "MatMulNBits": lambda g, op, x: g.add(
        op, x, u8(4, 1, 8), np.abs(f32(4)), K=8, N=4, bits=4, block_size=16, domain=MS),
    "MaxPool": lambda g, op, x: g.add(op, x, kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4),
    "MelWeightMatrix": lambda g, op, x: g.add(
        op, scalar(4, np.int64), scalar(32, np.int64), scalar(16000, np.int64), scalar(0, F),
        scalar(8000, F)),
    "Mod": lambda g, op, x: g.add(op, x, np.abs(f32(1, 3, 1, 1)) + 0.5, fmod=1),
    "MultiHeadAttention": lambda g, op, x: g.add(
        op, *[g.reshape(x, 1, 24, 8)] * 3, num_heads=2, domain=MS),
    "Multinomial": lambda g, op, x: g.add(op, g.reshape(x, 3, 64), sample_size=5),
    "NonMaxSuppression": lambda g, op, x: g.add(
        op, np.sort(np.abs(f32(1, 6, 4)), axis=2), np.abs(f32(1, 1, 6)), i64(3),
        np.array([0.5], F), np.array([0.1], F)),
    "Normalizer": lambda g, op, x: g.add(op, g.reshape(x, 3, 64), norm="L2", domain=ML),
    "Not": lambda g, op, x: g.add(op, g.add("Greater", x, scalar(0, F))),
    "OneHot": lambda g, op, x: g.add(op, i64(0, 2, 1), i64(4), np.array([0, 1], F)),
    "PRelu": lambda g, op, x: g.add(op, x, f32(3, 1, 1)),
    "Pad": lambda g, op, x: g.add(op, x, i64(0, 0, 1, 1, 0, 0, 1, 1), mode="reflect"),
    "ParametricSoftplus": lambda g, op, x: g.add(op, x, alpha=0.5, beta=2.0),
    "QLinearConv": lambda g, op, x: g.add(
        op, g.quantize(x), scalar(0.1, F), scalar(128, np.uint8), u8(4, 3, 3, 3),
        scalar(0.05, F), scalar(0, np.uint8), scalar(0.2, F), scalar(128, np.uint8)),
    "QLinearMatMul": lambda g, op, x: g.add(
        op, g.quantize(x), scalar(0.1, F), scalar(128, np.uint8), u8(8, 4), scalar(0.05, F),
        scalar(0, np.uint8), scalar(0.2, F), scalar(128, np.uint8)),
    "QuantizeLinear": lambda g, op, x: g.quantize(x),
    "QuickGelu": lambda g, op, x: g.add(op, x, alpha=1.702, domain=MS),
    "RMSNormalization": lambda g, op, x: g.add(op, x, f32(8), axis=-1),
    "RNN": lambda g, op, x: g.add(op, g.reshape(x, 3, 8, 8), *rnn_weights(1), hidden_size=4),
    # tract 0.23.9 tells the *Like forms apart by the node's name, not its op_type.
    **{op: lambda g, op, x: g.add(op, x, node_name=op)
       for op in ("RandomNormalLike", "RandomUniformLike")},
    "RandomNormal": lambda g, op, x: g.add(op, shape=[2, 3], seed=1.0),
    "RandomUniform": lambda g, op, x: g.add(op, shape=[2, 3], seed=1.0),
    "Range": lambda g, op, x: g.add(op, scalar(0, F), scalar(5, F), scalar(1, F)),
    "ReduceSum": lambda g, op, x: g.add(op, x, i64(2, 3)),
    "Reshape": lambda g, op, x: g.add(op, x, i64(1, 3, 64)),
    "Resize": lambda g, op, x: g.add(op, x, "", np.array([1, 1, 2, 2], F), mode="linear"),
    "RotaryEmbedding": lambda g, op, x: g.add(op, x, f32(1, 8, 4), f32(1, 8, 4, seed=5)),
    "Rsqrt": lambda g, op, x: g.add(op, g.add("Abs", x)),
    "STFT": lambda g, op, x: g.add(
        op, g.reshape(x, 1, 192, 1), scalar(16, np.int64), np.hanning(32).astype(F),
        scalar(32, np.int64)),
    "Scan": lambda g, op, x: g.add(
        op, np.zeros(8, F), g.reshape(x, 24, 8), body=scan_body(), num_scan_inputs=1,
        outputs=2)[1],
    "ScaledTanh": lambda g, op, x: g.add(op, x, alpha=0.5, beta=2.0),
    "Scatter": lambda g, op, x: g.add(
        op, x, np.zeros((1, 3, 8, 2), np.int64), f32(1, 3, 8, 2), axis=3),
    "ScatterElements": lambda g, op, x: g.add(
        op, x, np.zeros((1, 3, 8, 2), np.int64), f32(1, 3, 8, 2), axis=3, reduction="add"),
    "ScatterND": lambda g, op, x: g.add(op, x, i64(0, 1).reshape(1, 2), f32(1, 8, 8)),
    "SimplifiedLayerNormalization": lambda g, op, x: g.add(op, x, f32(8), axis=-1),
    "SkipLayerNormalization": lambda g, op, x: g.add(
        op, *[g.reshape(x, 1, 24, 8)] * 2, f32(8), f32(8), domain=MS),
    "Slice": lambda g, op, x: g.add(op, x, i64(0), i64(4), i64(2)),
    "SpaceToDepth": lambda g, op, x: g.add(op, x, blocksize=2),
    "Split": lambda g, op, x: g.add(op, x, i64(1, 2), axis=1, outputs=2)[1],
    "Squeeze": lambda g, op, x: g.add(op, x, i64(0)),
    "Swish": lambda g, op, x: g.add(op, x),
    "Tile": lambda g, op, x: g.add(op, x, i64(1, 2, 1, 1)),
    "TopK": lambda g, op, x: g.add(op, x, i64(3), outputs=2)[0],
    "Transpose": lambda g, op, x: g.add(op, x, perm=[0, 2, 3, 1]),
    "TreeEnsembleClassifier": lambda g, op, x: g.add(
        op, g.reshape(x, 3, 64), domain=ML, outputs=2, **TREE)[1],
    "Trilu": lambda g, op, x: g.add(op, x, upper=1),
    "Unsqueeze": lambda g, op, x: g.add(op, x, i64(0)),
    "Where": lambda g, op, x: g.add(
        op, g.add("Greater", x, scalar(0, F)), x, np.zeros(1, F)),
}


def branch(op, x):
    """A subgraph of one node on the outer graph's `x`, for If."""
    out = helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, [1, 3, 8, 8])
    return helper.make_graph([helper.make_node(op, [x], ["branch_out"])], f"{op}_branch", [],
                             [out])


def scan_body():
    """Scan's body: a running sum over rows of 8."""
    value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [8])
    return helper.make_graph(
        [helper.make_node("Add", ["sum_in", "row"], ["sum_out"]),
         helper.make_node("Identity", ["sum_out"], ["row_out"])],
        "scan_body", [value("sum_in"), value("row")], [value("sum_out"), value("row_out")])


def operator_seed(op, opset):
    """The seed model for `op`, as ONNX bytes."""
    g = Graph()
    y = OPERATORS[op](g, op, "data_0")
    flat = [g.reshape("data_0", 1, -1), g.reshape(g.add("Cast", y, to=TensorProto.FLOAT), 1, -1)]
    g.nodes.append(helper.make_node("Concat", flat, ["prob_1"], axis=1))
    graph = helper.make_graph(
        g.nodes, op, [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("prob_1", TensorProto.FLOAT, [1, "n"])], g.weights)
    opsets = [helper.make_opsetid(ONNX, opset), helper.make_opsetid(MS, 1),
              helper.make_opsetid(ML, 3)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


# Operators whose seed needs an opset other than 17: the one that introduced or last changed
# the form used above.
OPSETS = {"Scatter": 10, "BitwiseAnd": 18, "BitwiseNot": 18, "BitwiseOr": 18,
          "BitwiseXor": 18, "Mish": 18, "Gelu": 20, "GroupNormalization": 21, "Attention": 23,
          "RMSNormalization": 23, "RotaryEmbedding": 23, "Swish": 24}


def operator_seeds():
    """(operator, ONNX bytes) for every operator in OPERATORS."""
    for op in sorted(OPERATORS):
        yield op, operator_seed(op, OPSETS.get(op, 17))


def main():
    for kind in ("decode", "model"):
        (HERE / kind).mkdir(parents=True, exist_ok=True)
    for name, data in images():
        (HERE / "decode" / name).write_bytes(data)
    (HERE / "model" / "tiny-inception.onnx").write_bytes(model())
    for op, data in operator_seeds():
        (HERE / "model" / f"op-{op}.onnx").write_bytes(data)


if __name__ == "__main__":
    main()
