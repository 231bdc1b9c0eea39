#!/usr/bin/env python3
"""One image's inference time on one thread, for scripts/bench's `core` scenario: the peer's
counterpart of `googlenet inspect --profile --runs N`. The model is compiled for one thread
(onnxruntime: one intra-op and one inter-op thread; OpenVINO: one inference thread and the
LATENCY hint, at f32 with `--precision f32`, else at its default precision), the image decoded
once by Pillow (scripts/peer.py), then one warm-up run and `--runs` timed runs of inference
alone. Prints their mean in milliseconds as one JSON line, `{"ms": ...}`.
"""
import argparse
import json
import time

from peer import tensor


def onnxruntime_session(model):
    """A function that runs the model on a tensor, and the model's input height and width."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    return (lambda x: session.run(None, {feed.name: x})[0][0]), feed.shape[2], feed.shape[3]


def openvino_session(model, precision):
    """As `onnxruntime_session`, for OpenVINO."""
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1}
    if precision == "f32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = ov.Core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    shape = compiled.input(0).shape

    def infer(x):
        request.infer({0: x})
        return request.get_output_tensor(0).data[0]

    return infer, shape[2], shape[3]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", choices=["onnxruntime", "openvino"], required=True)
    parser.add_argument("--precision", choices=["default", "f32"], default="default",
                        help="OpenVINO's inference precision")
    parser.add_argument("--model", required=True)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("path")
    args = parser.parse_args()
    if args.runtime == "onnxruntime":
        infer, height, width = onnxruntime_session(args.model)
    else:
        infer, height, width = openvino_session(args.model, args.precision)
    image = tensor(args.path, height, width)
    infer(image)
    started = time.perf_counter()
    for _ in range(args.runs):
        infer(image)
    mean_ms = (time.perf_counter() - started) * 1000 / args.runs
    print(json.dumps({"ms": mean_ms}))


if __name__ == "__main__":
    main()
