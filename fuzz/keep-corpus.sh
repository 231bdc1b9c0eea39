#!/usr/bin/env bash
# Refreshes fuzz/regressions/TARGET from the corpus a fuzzing run grew in fuzz/corpus/TARGET
# (which is not committed, so a fresh clone starts from what this keeps):
# - a smallest set of inputs that together reach every edge the run reached (libFuzzer's
#   greedy set cover over edges, not hit counts), so the next run starts at the frontier;
# - the smallest input of every distinct outcome (examples/select_regressions.rs);
# - every input that once crashed, hung or ran out of memory (crash-*, slow-unit-*, timeout-*,
#   oom-*).
# Needs the fuzz build: cargo +nightly fuzz build -O -s none
set -euo pipefail
target=${1:?usage: fuzz/keep-corpus.sh decode|model}
cd "$(dirname "$0")/.."
fuzzer=fuzz/target/x86_64-unknown-linux-gnu/release/$target
kept=fuzz/regressions/$target
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/all" "$work/cover" "$work/outcomes"
cp "$kept"/* "$work/all/"
cp -n fuzz/corpus/"$target"/* "$work/all/"
# The corpus may hold a kept failure again under its bare SHA-1; keep it once, by its prefix.
for failure in "$kept"/crash-* "$kept"/slow-unit-* "$kept"/timeout-* "$kept"/oom-*; do
    rm -f "$work/all/${failure##*-}"
done
# The seeds go in first, so the cover only adds what they do not reach; they are committed
# already and are taken out again.
cp fuzz/seeds/"$target"/* "$work/cover/"
"$fuzzer" -set_cover_merge=1 -use_counters=0 -timeout=60 -rss_limit_mb=4096 \
    "$work/cover" "$work/all" 2> "$work/merge.log" ||
    { tail -n 20 "$work/merge.log" >&2; exit 1; }
for seed in fuzz/seeds/"$target"/*; do rm "$work/cover/$(basename "$seed")"; done
cargo run --quiet --release --example select_regressions -- "$target" "$work/all" "$work/outcomes" > /dev/null
find "$kept" -type f ! -name 'crash-*' ! -name 'slow-unit-*' ! -name 'timeout-*' ! -name 'oom-*' \
    -delete
cp -n "$work/cover"/* "$work/outcomes"/* "$kept/"
echo "$kept: $(find "$work/cover" -type f | wc -l) covering every edge," \
    "$(find "$work/outcomes" -type f | wc -l) distinct outcomes, $(find "$kept" -type f | wc -l) files in all"
