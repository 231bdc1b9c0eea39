#!/usr/bin/env python3
"""The OpenVINO peer of `googlenet classify` for scripts/bench, run as OpenVINO's documentation
advises: the ONNX model read directly and compiled for the CPU on `--threads` threads with the
THROUGHPUT performance hint, the images sent through an AsyncInferQueue of the number of
requests the compiled model asks for while Pillow decodes the next ones (scripts/peer.py); or,
with `--hint latency`, the LATENCY hint and one request at a time. `--precision f32` pins the
inference precision to f32; by default OpenVINO picks its own, bf16 on CPUs with AVX512_BF16
or AMX. Prints one JSON line per image with its top-5, in input order.
"""
import argparse
import sys

import openvino as ov

from peer import images, record, tensor


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=0, help="inference threads (0: all)")
    parser.add_argument("--hint", choices=["throughput", "latency"], default="throughput")
    parser.add_argument("--precision", choices=["default", "f32"], default="default")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    config = {"PERFORMANCE_HINT": args.hint.upper()}
    if args.precision == "f32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    if args.threads:
        config["INFERENCE_NUM_THREADS"] = args.threads
    compiled = ov.Core().compile_model(args.model, "CPU", config)
    height, width = compiled.input(0).shape[2], compiled.input(0).shape[3]
    paths = list(images(args.paths))
    lines = [None] * len(paths)

    def done(request, index):
        lines[index] = record(paths[index], request.get_output_tensor(0).data[0].copy())

    queue = ov.AsyncInferQueue(compiled, 0 if args.hint == "throughput" else 1)
    queue.set_callback(done)
    for index, path in enumerate(paths):
        queue.start_async({0: tensor(path, height, width)}, index)
    queue.wait_all()
    sys.stdout.write("".join(line + "\n" for line in lines))


if __name__ == "__main__":
    main()
