#!/usr/bin/env python3
"""Writes variants of the operator seeds (fuzz/seeds/model/op-*.onnx) into OUT_DIR, each with
one attribute or initializer set to an extreme value, for the loader to be tried on one by one:

    python3 fuzz/sweep.py /tmp/sweep
    for f in /tmp/sweep/*.onnx; do
        timeout -s KILL 15 fuzz/target/x86_64-unknown-linux-gnu/release/model \\
            -rss_limit_mb=6000 -timeout=12 "$f" >/dev/null 2>&1 || echo "$f"
    done

A mutating fuzzer reaches such values slowly: an attribute must be both named and set. Every
integer attribute (but `axis` and `axes`) gets 0, -1, 2^31, 2^40 and -2^40 (all its values, or
the first); every float attribute and float initializer 0, -1, NaN, +-inf and 1e30; every
integer initializer -1, 2^31, 2^62, the int64 extremes and 3 (clamped to its type; all, or the
first). Needs onnx and numpy."""

import copy
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


def attribute_variants(model):
    """(name, model) for each extreme value of each numeric attribute."""
    for ni, node in enumerate(model.graph.node):
        for ai, attr in enumerate(node.attribute):
            if attr.type in (AttributeProto.INT, AttributeProto.INTS):
                if attr.name in ("axis", "axes"):
                    continue
                values, field = INT_ATTRIBUTE, "ints"
            elif attr.type in (AttributeProto.FLOAT, AttributeProto.FLOATS):
                values, field = FLOAT, "floats"
            else:
                continue
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
    for ii, init in enumerate(model.graph.initializer):
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


def main():
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(SEEDS.glob("op-*.onnx")):
        model = onnx.load(path)
        op = path.stem.removeprefix("op-")
        for name, variant in [*attribute_variants(model), *initializer_variants(model)]:
            (out / f"{op}.{name}.onnx").write_bytes(variant.SerializeToString())
            count += 1
    print(f"{count} models in {out}")


if __name__ == "__main__":
    main()
