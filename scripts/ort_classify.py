#!/usr/bin/env python3
"""The peer of `googlenet classify` for scripts/bench: what a user would otherwise write.

onnxruntime runs the same ONNX model; Pillow decodes and resizes (bilinear, straight to the
input size, as googlenet's default `caffe` preset); mean subtraction in RGB, then BGR, NCHW.
Prints one JSON line per image with its top-5, like `googlenet classify --format jsonl`.
"""
import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

MEAN_RGB = np.array([123.68, 116.779, 103.939], dtype=np.float32)
EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def images(paths):
    for path in paths:
        if os.path.isdir(path):
            for root, _, files in sorted(os.walk(path)):
                for name in sorted(files):
                    if os.path.splitext(name)[1].lower() in EXTENSIONS:
                        yield os.path.join(root, name)
        else:
            yield path


def tensor(path, height, width):
    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((width, height), Image.BILINEAR)
    pixels = np.asarray(rgb, dtype=np.float32) - MEAN_RGB
    return pixels[:, :, ::-1].transpose(2, 0, 1)[np.newaxis].copy()


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
    out = sys.stdout
    for path in images(args.paths):
        probabilities = session.run(None, {feed.name: tensor(path, height, width)})[0][0]
        top = np.argsort(-probabilities)[:5]
        record = {"path": path, "predictions": [
            {"rank": r + 1, "index": int(i), "probability": float(probabilities[i])}
            for r, i in enumerate(top)]}
        out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
