#!/usr/bin/env bash
# Every GPU check of issues 4 and 11, in one go, on one GPU (an H200 when one is lent):
#   1. e2e      `ablate run` end to end on CUDA: a short search, the repeats, the report
#               (digits, offline); then every trial is checked: COMPLETE, on CUDA, attributes there
#   2. fused    ablate.train.train_fused of 4 seeds on CUDA against the 4 seeds one by one
#   3. fuse-K   ablate bench --fuse K, seresnet18, 32 px, batch 64 a seed, K = 1, 4, 8, 16
#               (K = 1 also times all three models: today's loop_over_bare and DueHeadNet ratios)
#   4. r50      seresnet50 at 224 px, fused 4 and alone, and the measured bf16 matmul peak
#   5. compile  the fused step compiled, without and with CUDA graphs (reduce-overhead):
#               compile time, speed, and whether graphs were in fact replayed
#   6. workers  4 bench processes on the one GPU at once, against one fused worker (step 3, K=4)
# Most important first; each step has its own timeout and writes its JSON (and .err) into
# $OUT (default ./gpu-out, or the first argument) the moment it finishes, so a run cut short
# keeps every figure made before the cut. summary.txt says which steps passed.
#
# GPU_CHECK_TINY=1: the same steps on the CPU at toy sizes (test_resnet, 16 px, a few steps):
# run that first, anywhere, so the GPU run works the first time.
# GPU_CHECK_STEPS="e2e fused fuse r50 compile workers": run only these steps (default all).
set -uo pipefail
OUT=${1:-${OUT:-gpu-out}}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(dirname "$HERE")
PY=${PYTHON:-python3}
TINY=${GPU_CHECK_TINY:-0}
STEPS=${GPU_CHECK_STEPS:-e2e fused fuse r50 compile workers}
export PYTHONUNBUFFERED=1 ABLATE_CACHE=${ABLATE_CACHE:-/tmp/ablate-cache} PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
SUMMARY="$OUT/summary.txt"; : > "$SUMMARY"

if [ "$TINY" = 1 ]; then
    DEV=cpu; BB18=test_resnet; BB50=test_resnet; S32=16; S224=16; B=8; KS="1 4"; TIMEOUT_SCALE=3
    BENCH_STEPS=(--steps 2 --block-steps 1 --warmup 1); R50_STEPS=("${BENCH_STEPS[@]}"); TINYFLAG=--tiny
else
    DEV=cuda; BB18=seresnet18; BB50=seresnet50; S32=32; S224=224; B=64; KS="1 4 8 16"; TIMEOUT_SCALE=1
    BENCH_STEPS=(--steps 100 --block-steps 10 --warmup 20); R50_STEPS=(--steps 40 --block-steps 10 --warmup 10); TINYFLAG=
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
fi
want() { [[ " $STEPS " == *" $1 "* ]]; }

# step NAME SECONDS CMD...: CMD's stdout into $OUT/NAME.json (or $OUT/NAME if it has an
# extension), its stderr into $OUT/NAME.err, a line into summary.txt.
step() {
    local name=$1 limit=$(( $2 * TIMEOUT_SCALE )); shift 2
    local t0=$SECONDS file
    [[ $name == *.* ]] && file="$OUT/$name" || file="$OUT/$name.json"
    name=${name%.*}
    timeout "$limit" "$@" > "$file" 2> "$OUT/$name.err"
    local rc=$?
    local verdict=ok; [ $rc -eq 124 ] && verdict="TIMEOUT after ${limit}s"; [ $rc -ne 0 ] && [ $rc -ne 124 ] && verdict="FAILED rc=$rc"
    echo "$name: $verdict ($((SECONDS - t0)) s)" | tee -a "$SUMMARY"
    [ $rc -ne 0 ] && tail -5 "$OUT/$name.err" | sed 's/^/    /'
    return $rc
}

# Key figures of a bench JSON, one line.
show() {
    "$PY" - "$@" <<'PYEOF' | tee -a "$SUMMARY"
import json, sys
for path in sys.argv[1:]:
    try:
        d = json.load(open(path))
    except (OSError, ValueError):
        continue
    keys = ("precision", "fuse", "fused_images_per_second", "fused_over_single", "fused_step_ms", "single_step_ms",
            "loop_over_bare", "dual_frozen_over_single", "dual_trained_over_single", "data_wait_fraction")
    fig = {k: (round(d[k], 4) if isinstance(d[k], float) else d[k]) for k in keys if d.get(k) is not None}
    single = d.get("images_per_second", {}).get("single", {}).get("ours")
    print(f"    {path.rsplit('/', 1)[-1]}: single {single and round(single)} img/s; {fig}")
    for mode, c in (d.get("fused_compiled") or {}).items():
        print(f"      compiled {mode}: over_single {c['over_single']:.3f}, over_eager {c['over_eager']:.3f}, "
              f"compile {c['compile_seconds']:.0f} s, cudagraph_skips {c['cudagraph_skips']}, graphs_replayed {c['graphs_replayed']}")
PYEOF
}

BENCH=("$PY" -m ablate bench --device "$DEV" --precision auto --skip-optuna --json)  # an array: timeout runs no functions

# 1. end to end: search, repeats (TODO(lead): fused, once repeats.fuse exists), report
if want e2e; then
    E2E="$OUT/e2e"; rm -rf "$E2E"; mkdir -p "$E2E"
    if [ "$TINY" = 1 ]; then
        "$PY" "$HERE/gpu_check.py" tiny-study "$HERE/gpu-check-study.yaml" "$E2E/study.yaml" > /dev/null
    else
        cp "$HERE/gpu-check-study.yaml" "$E2E/study.yaml"
    fi
    (cd "$E2E" && step e2e-run.txt 300 "$PY" -m ablate run study.yaml --quiet)
    tail -4 "$OUT/e2e-run.txt" 2>/dev/null | sed 's/^/    /'
    (cd "$E2E" && step e2e-trials 60 "$PY" "$HERE/gpu_check.py" trials study.yaml)
    "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print('    trials:', d['trials'], *d['problems'], sep='\n    ')" \
        "$OUT/e2e-trials.json" 2>/dev/null | tee -a "$SUMMARY"
fi

# 2. train_fused itself on the device
if want fused; then
    step fused-train 180 "$PY" "$HERE/gpu_check.py" fused 4 $TINYFLAG
    "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print('    fused', d['k'], 'seeds:', round(d['fused_seconds'],1), 's; one by one:', round(d['lone_seconds'],1), 's')" \
        "$OUT/fused-train.json" 2>/dev/null | tee -a "$SUMMARY"
fi

# 3. fused seeds, seresnet18 at 32 px
if want fuse; then
    for K in $KS; do
        models=(--models single); [ "$K" = 1 ] && models=()
        step "bench-fuse$K" 150 "${BENCH[@]}" --backbone "$BB18" --image-size "$S32" --batch-size "$B" --fuse "$K" \
            "${models[@]}" "${BENCH_STEPS[@]}"
        show "$OUT/bench-fuse$K.json"
    done
fi

# 4. seresnet50 at 224 px, and the peak it is a fraction of
if want r50; then
    step peak 90 "$PY" "$HERE/gpu_check.py" peak $TINYFLAG --backbone "$BB50" --image-size "$S224"
    step bench-r50-224 240 "${BENCH[@]}" --backbone "$BB50" --image-size "$S224" --batch-size "$B" --fuse 4 --models single \
        "${R50_STEPS[@]}"
    show "$OUT/bench-r50-224.json"
    "$PY" - "$OUT/peak.json" "$OUT/bench-r50-224.json" <<'PYEOF' | tee -a "$SUMMARY"
import json, sys
try:
    peak, bench = (json.load(open(p)) for p in sys.argv[1:])
except (OSError, ValueError):
    sys.exit(0)
flops = peak["train_gflop_per_image"] * 1e9
for label, ips in (("alone", bench["images_per_second"]["single"]["ours"]), ("fused 4", bench["fused_images_per_second"])):
    print(f"    {bench['backbone']} {bench['image_size']} px {label}: {ips:,.0f} img/s = "
          f"{ips * flops / 1e12:.1f} TFLOP/s = {ips * flops / 1e12 / peak['bf16_peak_tflops']:.1%} of the measured "
          f"bf16 matmul peak {peak['bf16_peak_tflops']:.0f} TFLOP/s")
PYEOF
fi

# 5. the fused step compiled, without and with CUDA graphs
if want compile; then
    step bench-compile 600 "${BENCH[@]}" --backbone "$BB18" --image-size "$S32" --batch-size "$B" --fuse 4 --models single \
        --compile --compile-modes default reduce-overhead "${BENCH_STEPS[@]}"
    show "$OUT/bench-compile.json"
fi

# 6. several workers on one GPU (what `ablate run --gpus 0,0,0,0` does) against one fused worker.
# Each worker's rate is timed while the others run, only roughly: a worker that starts its timed
# rounds before the others are up shows as faster (seen on the CPU: 173 against 3 x 53 img/s).
if want workers; then
    pids=()
    for i in 1 2 3 4; do
        CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} ABLATE_THREADS=$(( $(nproc) / 4 > 0 ? $(nproc) / 4 : 1 )) \
            timeout $(( 240 * TIMEOUT_SCALE )) "${BENCH[@]}" --backbone "$BB18" --image-size "$S32" --batch-size "$B" --models single "${BENCH_STEPS[@]}" \
            > "$OUT/bench-worker$i.json" 2> "$OUT/bench-worker$i.err" &
        pids+=($!)
    done
    ok=0; for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
    echo "workers: $ok of 4 finished" | tee -a "$SUMMARY"
    step workers 30 "$PY" "$HERE/gpu_check.py" workers 4 "$OUT"/bench-worker[1-4].json
    "$PY" -c "import json,sys; w=json.load(open(sys.argv[1])); f=json.load(open(sys.argv[2])); print(f\"    4 workers: {w['aggregate_images_per_second']:,.0f} img/s; one worker, 4 seeds fused: {f['fused_images_per_second']:,.0f} img/s\")" \
        "$OUT/workers.json" "$OUT/bench-fuse4.json" 2>/dev/null | tee -a "$SUMMARY"
fi

echo "figures in $OUT"; cat "$SUMMARY" | grep -c ': ok' | xargs -I{} echo "{} steps ok"
! grep -q -E 'FAILED|TIMEOUT' "$SUMMARY"
