#!/usr/bin/env python3
"""Writes the fuzzers' seed inputs into fuzz/seeds/: small images in every format and colour
type the decoder meets, and a tiny Inception-style ONNX model. Needs Pillow, numpy and onnx
(pip install pillow numpy onnx); scripts/bench's venv plus onnx will do."""

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


def main():
    for kind in ("decode", "model"):
        (HERE / kind).mkdir(parents=True, exist_ok=True)
    for name, data in images():
        (HERE / "decode" / name).write_bytes(data)
    (HERE / "model" / "tiny-inception.onnx").write_bytes(model())


if __name__ == "__main__":
    main()
