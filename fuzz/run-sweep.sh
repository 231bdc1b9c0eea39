#!/usr/bin/env bash
# Runs `googlenet classify` once on each model in DIR (written by fuzz/sweep.py) and a real
# photo, with a labels file of as many classes as the model scores, so that every model which
# loads also runs. Prints each model that ends other than with exit code 0, 1 or 2 (a crash:
# 134 an abort, 139 a segmentation fault, 137 killed at the 20 s timeout) or takes over 3 s,
# then how many ran. Needs `cargo build --release`.
#
# With --memcheck, the run that counts (with the labels, where the model needs them) is made
# under Valgrind's memcheck, which checks every read and write and every use of a value never
# written, in tract-linalg's assembly kernels too. A read past a tensor that does not crash
# ends that run with exit code 99, and memcheck's first finding is printed. Findings judged not
# to be defects are suppressed in fuzz/memcheck.supp, each with its reason. The timeout is then
# 600 s, and time is not reported. About 2.5 s a model; needs valgrind.
set -uo pipefail
usage='usage: fuzz/run-sweep.sh DIR [--memcheck]'
dir=${1:?$usage}
mode=${2:-}
case $mode in
    "" | --memcheck) ;;
    *) echo "$usage" >&2 && exit 1 ;;
esac
cd "$(dirname "$0")/.."
googlenet=target/release/googlenet
photo=assets/chelsea.png
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
classify() {
    timeout -s KILL 20 "$googlenet" classify --model "$@" "$photo" >/dev/null 2>"$work/err"
}
memcheck() {
    timeout -s KILL 600 valgrind -q --error-exitcode=99 --partial-loads-ok=no \
        --suppressions=fuzz/memcheck.supp \
        "$googlenet" classify --model "$@" "$photo" >/dev/null 2>"$work/err"
}
finding() {
    if grep -q '^==[0-9]*== ' "$work/err"; then
        grep -m1 -A4 '^==[0-9]*== [A-Z]' "$work/err" | tr '\n' ' ' | head -c 600
    else
        head -c 200 "$work/err"
    fi
}
total=0 ran=0 reported=0
for model in "$dir"/*.onnx; do
    total=$((total + 1))
    start=$(date +%s%N)
    classify "$model"
    code=$?
    classes=$(grep -o 'the model scores [0-9]* classes' "$work/err" | grep -o '[0-9]*')
    labels=()
    if [ -n "$classes" ]; then
        seq "$classes" | sed 's/^/class /' >"$work/labels"
        labels=(--labels "$work/labels")
    fi
    if [ "$mode" = --memcheck ]; then
        memcheck "$model" "${labels[@]}"
        code=$?
    elif [ -n "$classes" ]; then
        classify "$model" "${labels[@]}"
        code=$?
    fi
    ms=$((($(date +%s%N) - start) / 1000000))
    [ "$code" = 0 ] && ran=$((ran + 1))
    if [ "$code" -gt 2 ] || { [ "$ms" -gt 3000 ] && [ "$mode" != --memcheck ]; }; then
        reported=$((reported + 1))
        echo "$model: exit code $code in $ms ms: $(finding)"
    fi
done
echo "$total models, $ran ran on the photo, $reported reported"
