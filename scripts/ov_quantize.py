#!/usr/bin/env python3
"""Quantises the model for the `openvino-nncf` peer of scripts/bench, as OpenVINO's
documentation advises for post-training quantisation: `nncf.quantize` on the ONNX model read by
OpenVINO, calibrated on 300 of the shared Flickr photos (the first 300 by name), each
preprocessed as the peers preprocess (scripts/peer.py), and saved as OpenVINO IR.

Usage: ov_quantize.py --model MODEL.onnx --photos DIR --out MODEL.xml
"""
import argparse
from pathlib import Path

import nncf
import openvino as ov

from peer import images, tensor

CALIBRATION_PHOTOS = 300


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--photos", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    model = ov.Core().read_model(args.model)
    height, width = model.input(0).shape[2], model.input(0).shape[3]
    photos = sorted(images([args.photos]))[:CALIBRATION_PHOTOS]
    dataset = nncf.Dataset(photos, lambda path: tensor(path, height, width))
    quantised = nncf.quantize(model, dataset, subset_size=len(photos))
    ov.save_model(quantised, str(Path(args.out)))


if __name__ == "__main__":
    main()
