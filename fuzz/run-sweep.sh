#!/usr/bin/env bash
# Runs `googlenet classify` once on each model in DIR (written by fuzz/sweep.py) and a real
# photo, with a labels file of as many classes as the model scores, so that every model which
# loads also runs. Prints each model that ends other than with exit code 0, 1 or 2 (a crash:
# 134 an abort, 139 a segmentation fault, 137 killed at the 20 s timeout) or takes over 3 s,
# then how many ran. Needs `cargo build --release`.
set -uo pipefail
dir=${1:?usage: fuzz/run-sweep.sh DIR}
cd "$(dirname "$0")/.."
googlenet=target/release/googlenet
photo=assets/chelsea.png
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
classify() {
    timeout -s KILL 20 "$googlenet" classify --model "$1" "${@:2}" "$photo" >/dev/null 2>"$work/err"
}
total=0 ran=0 reported=0
for model in "$dir"/*.onnx; do
    total=$((total + 1))
    start=$(date +%s%N)
    classify "$model"
    code=$?
    classes=$(grep -o 'the model scores [0-9]* classes' "$work/err" | grep -o '[0-9]*')
    if [ -n "$classes" ]; then
        seq "$classes" | sed 's/^/class /' >"$work/labels"
        classify "$model" --labels "$work/labels"
        code=$?
    fi
    ms=$((($(date +%s%N) - start) / 1000000))
    [ "$code" = 0 ] && ran=$((ran + 1))
    if [ "$code" -gt 2 ] || [ "$ms" -gt 3000 ]; then
        reported=$((reported + 1))
        echo "$model: exit code $code in $ms ms: $(head -c 200 "$work/err")"
    fi
done
echo "$total models, $ran ran on the photo, $reported reported"
