#!/usr/bin/env python3
"""The onnxruntime peer of `googlenet classify` for scripts/bench: what a user would otherwise
write. onnxruntime runs the same ONNX model on `--threads` intra-op threads, one image after
another; Pillow decodes (scripts/peer.py). Prints one JSON line per image with its top-5.
"""
import argparse
import sys

import onnxruntime as ort

from peer import images, record, tensor


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all)")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    height, width = feed.shape[2], feed.shape[3]
    for path in images(args.paths):
        probabilities = session.run(None, {feed.name: tensor(path, height, width)})[0][0]
        sys.stdout.write(record(path, probabilities) + "\n")


if __name__ == "__main__":
    main()
