"""What the peers of `googlenet classify` in scripts/bench share: the images of the command
line, decoded and resized by Pillow (bilinear, straight to the input size, as googlenet's
default `caffe` preset) with the mean subtracted in RGB, then BGR and NCHW; and the JSON line
each image's top-5 is printed as, like `googlenet classify --format jsonl`.
"""
import json
import os

import numpy as np
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


def record(path, probabilities):
    top = np.argsort(-probabilities)[:5]
    return json.dumps({"path": path, "predictions": [
        {"rank": r + 1, "index": int(i), "probability": float(probabilities[i])}
        for r, i in enumerate(top)]})
