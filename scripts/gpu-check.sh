#!/usr/bin/env bash
# The GPU checks of issue 4, as one script for a lent GPU machine (see README, Performance):
# seresnet18 and seresnet50 training throughput at 32 and 224 px, ablate's loop against a
# bare bf16 loop, and a short end-to-end search on CUDA. Results go to $OUT (or ./gpu-out).
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 ABLATE_CACHE=/tmp/ablate-cache PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for spec in "seresnet18 32" "seresnet50 32" "seresnet18 224" "seresnet50 224"; do
    set -- $spec
    timeout 100 python3 -m ablate bench --device cuda --backbone "$1" --image-size "$2" --skip-optuna --json \
        > "$OUT/bench-$1-$2.json" 2> "$OUT/bench-$1-$2.err" || echo "bench $1 $2 failed: $(tail -3 "$OUT/bench-$1-$2.err")"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1], {k: d[k] for k in ('loop_over_bare','dual_frozen_over_single','dual_trained_over_single','data_wait_fraction')}, d['images_per_second'])" "$OUT/bench-$1-$2.json" || true
done
cat > /tmp/gpu-study.yaml <<'YAML'
name: gpu-smoke
dataset: {name: digits, image_size: 32}
train: {epochs: 3, batch_size: 64, device: cuda}
model: {kind: dual, backbone: seresnet18, model1: {init: stage1, freeze: true, lr: 4.0e-4}}
search:
  n_trials: 3
  sampler: {name: random, seed: 0}
  space:
    model.constraint.on: {choices: [true, false]}
    train.lr: {low: 1.0e-4, high: 3.0e-3, log: true}
YAML
timeout 120 python3 -m ablate run /tmp/gpu-study.yaml --quiet 2>&1 | tail -12 | tee "$OUT/e2e.txt"
