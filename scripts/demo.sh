#!/usr/bin/env bash
# `make demo`: the whole path on the generated sample data, on the CPU (time and accuracy measured
# in benchmarks/README.md): sample tree -> shards -> training -> evaluation -> export ->
# prediction -> learning curves -> the HTML report.
set -euo pipefail
PY=${1:-.venv/bin/python}
OUT=${2:-demo}
rm -rf "$OUT"
mkdir -p "$OUT"
step() { printf '\n=== %s\n' "$*"; }

step "1/8 sample ImageNet-shaped tree (10 classes, dirty and broken files included)"
"$PY" -m sample.make_sample_data --output_dir "$OUT/imagenet"
step "2/8 stage 1: validate, repair, resize and shard"
"$PY" -m preprocess.build_shards --input_dir "$OUT/imagenet" --output_dir "$OUT/shards"
step "3/8 stage 2: train the paper's AlexNet for 10 epochs (CPU settings: train/demo.flags)"
"$PY" -m train.main --flagfile=train/alexnet.flags --flagfile=train/demo.flags --shards "$OUT/shards" --model_dir "$OUT/model"
step "4/8 evaluate every validation image, ten crops"
"$PY" -m train.evaluate --shards "$OUT/shards" --model_dir "$OUT/model" --split validation --ten_crop
step "5/8 export a SavedModel that takes JPEG bytes"
"$PY" -m train.export --model_dir "$OUT/model" --output "$OUT/saved_model"
step "6/8 predict three validation photos"
first() { find "$OUT/imagenet/val/$1" -type f | sort | head -n 1; }
"$PY" -m train.predict --model "$OUT/saved_model" \
  "$(first n02123045)" "$(first n07920052)" "$(first n03773504)"
step "7/8 learning curves"
"$PY" -m train.plot --model_dir "$OUT/model" --output "$OUT/curves.png"
step "8/8 the report: what the network learned and where it fails"
REPORT=$("$PY" -m train.report --model_dir "$OUT/model" --shards "$OUT/shards" --output "$OUT/report.html")
printf '\nDone: shards in %s/shards, model in %s/model, curves in %s/curves.png\n' "$OUT" "$OUT" "$OUT"
printf 'Report: %s (open it in a browser)\n' "$REPORT"
