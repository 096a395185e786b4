#!/usr/bin/env bash
# The first GPU run of ablate, in one command on a bare lent machine (issue 18).
#
#   bash scripts/gpu-check.sh [OUT]     (OUT: default $OUT, the device tool's folder that comes back, else ./gpu-out)
#
# The lent H200 reaches no package registry and lacks pydantic, optuna, SQLAlchemy, alembic and
# colorlog: scripts/gpu-wheels.sh, run beforehand where pip works, puts them in .whl/ (carry it).
# Steps, most valuable first, each under min(its own cap, what is left of one deadline), skipped
# with under 20 s left:
#   install    .whl/*.whl into a folder put first on PYTHONPATH (pip --no-index --no-deps --target),
#              and a spare (.whl/spare/) for any requirement the machine's own packages miss
#   imports    every ablate module and every command's imports (seconds); the run stops if they fail
#   gate       fused against lone, K = 2, fp32 and bf16, single head and DueHeadNet: losses, gradients,
#              BatchNorm buffers; what the fused convolutions run as (dtype, groups, layout); host
#              syncs in a training epoch (CUDA). Its verdict is the precision of every later step
#   fuse1 fuse4 fuse16   ablate bench --fuse K: seresnet18, 32 px, batch 64 a seed, eager
#              (K = 1 also times all three models alone: loop_over_bare and the DueHeadNet ratios):
#              the figures repeats.fuse's CUDA default is to be set from
#   e2e        a trimmed `ablate run` (per-arm searches, fused repeats, report); every trial checked.
#              Before the compiled steps: the first `ablate run` on CUDA, in about two minutes,
#              where one compile can take minutes
#   compile4   the fused step of K = 4 compiled (default) and with CUDA graphs (reduce-overhead):
#              graph replays (0 when none) and the reasons inductor gave for any graph it skipped
#   compile16 compile1   as compile4, K = 16 and K = 1
#   r50        seresnet50 at 224 px, alone and 4 fused, against the measured bf16 matmul peak
#   workers    4 bench workers on the one GPU at once, against one fused worker (fuse4)
# After every step $OUT holds 3 files: summary.json (every step's status and every figure so
# far), gpu-check.log (this script's lines) and rest.tar.gz (the rest: errors, outputs, the study
# and its report), so a run cut short brings back everything made before the cut.
#
#   GPU_CHECK_TINY=1        the same steps, install included, on the CPU at toy sizes (test_resnet, 16 px,
#                           a few steps; caps and deadline x4): run it first
#   GPU_CHECK_STEPS="..."   only these steps, in this order (default: all of the above)
#   GPU_CHECK_DEADLINE=540  seconds for everything (the device tool stops a command at 600; tiny: 2160)
#   GPU_CHECK_WHEELS=DIR    the wheels (default .whl);  PYTHON=python3
#   GPU_CHECK_KEEP=1        keep the working folder (in $TMPDIR) instead of removing it at the end
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(dirname "$HERE")
OUT=${1:-${OUT:-gpu-out}}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
TINY=${GPU_CHECK_TINY:-0}
SCALE=$([ "$TINY" = 1 ] && echo 4 || echo 1)  # the CPU is slower: tiny caps and deadline x4
DEADLINE=${GPU_CHECK_DEADLINE:-$(( 540 * SCALE ))}
WHEELS=${GPU_CHECK_WHEELS:-$ROOT/.whl}
STEPS=${GPU_CHECK_STEPS:-install imports gate fuse1 fuse4 fuse16 e2e compile4 compile16 compile1 r50 workers}
RESERVE=10 MIN_STEP=20  # seconds kept for the last summary; the least a step is started with
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX"); SITE=$WORK/site; LOG=$OUT/gpu-check.log
[ "${GPU_CHECK_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT  # its files travel in rest.tar.gz
export PYTHONUNBUFFERED=1 ABLATE_CACHE=$WORK/cache PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
STARTED=$(date +%s)
rm -f "$OUT/summary.json" "$OUT/rest.tar.gz"; : > "$LOG"

if [ "$TINY" = 1 ]; then
    DEV=cpu; TINYFLAG=--tiny; BB18=test_resnet; BB50=test_resnet; S32=16; S224=16; B=8
    BENCH_STEPS=(--steps 2 --block-steps 1 --warmup 1); R50_STEPS=("${BENCH_STEPS[@]}"); MODES=(default)
else
    DEV=cuda; TINYFLAG=; BB18=seresnet18; BB50=seresnet50; S32=32; S224=224; B=64
    BENCH_STEPS=(--steps 100 --block-steps 10 --warmup 20); R50_STEPS=(--steps 40 --block-steps 10 --warmup 10)
    MODES=(default reduce-overhead)
fi
PREC=auto  # until the gate says

log() { echo "$*" | tee -a "$LOG"; }
left() { echo $(( DEADLINE - ($(date +%s) - STARTED) )); }
summarize() {
    "$PY" "$HERE/gpu_check.py" summarize "$WORK" "$OUT" > /dev/null 2>> "$WORK/summarize.err" \
        || log "  (summary not written: $(tail -1 "$WORK/summarize.err"))"
}
record() {  # NAME STATUS RC SECONDS LIMIT
    printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$WORK/steps.tsv"
    log "$1: $2 ($4 s, limit $5 s)"
    [ "$3" -ne 0 ] && [ -s "$WORK/$1.err" ] && tail -4 "$WORK/$1.err" | sed 's/^/    /' | tee -a "$LOG"
    summarize
}
# step NAME CAP CMD...: CMD under min(CAP x SCALE, time left) seconds, stdout to WORK/NAME.out and
# stderr to WORK/NAME.err; CMD writes its figures to WORK/NAME.json. Then the summary is rewritten.
step() {
    local name=$1 cap=$(( $2 * SCALE )); shift 2
    local limit=$(( $(left) - RESERVE )); [ "$limit" -gt "$cap" ] && limit=$cap
    if [ "$limit" -lt "$MIN_STEP" ]; then record "$name" "skipped: $(left) s left" 0 0 "$limit"; return 1; fi
    local t0; t0=$(date +%s)
    timeout -k 10 "$limit" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err"
    local rc=$? status=ok
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="timeout"; elif [ $rc -ne 0 ]; then status="failed"; fi
    record "$name" "$status" "$rc" "$(( $(date +%s) - t0 ))" "$limit"
    return $rc
}
helper() { local name=$1; shift; "$PY" "$HERE/gpu_check.py" --out "$WORK/$name.json" "$@"; }
bench() {  # NAME CAP K [flags]: ablate bench --fuse K of seresnet18 at 32 px
    local name=$1 cap=$2 k=$3; shift 3
    step "$name" "$cap" env TORCH_LOGS=perf_hints "$PY" -m ablate bench --device "$DEV" --precision "$PREC" \
        --skip-optuna --json --json-out "$WORK/$name.json" --backbone "$BB18" --image-size "$S32" --batch-size "$B" \
        --fuse "$k" "${BENCH_STEPS[@]}" "$@"
}

run_install() {
    step install 120 "$PY" "$HERE/gpu_check.py" --out "$WORK/install.json" install "$WHEELS" "$SITE"
}
run_imports() {
    step imports 60 "$PY" "$HERE/gpu_check.py" --out "$WORK/imports.json" imports && return 0
    log "ablate does not import here: nothing else can run"; exit 1
}
run_gate() {
    step gate 120 "$PY" "$HERE/gpu_check.py" --out "$WORK/gate.json" gate $TINYFLAG
    local verdict
    verdict=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["verdict"])' "$WORK/gate.json" 2>/dev/null)
    case $verdict in bf16|fp32) PREC=$verdict ;; none) PREC=fp32 ;; *) PREC=auto ;; esac
    log "  gate verdict: ${verdict:-none recorded} (bf16: both models pass in bf16; fp32: in fp32 only; none: neither);" \
        "later steps run in $PREC"
}
run_fuse() {  # K
    local models=(--models single); [ "$1" = 1 ] && models=()
    bench "fuse$1" 90 "$1" "${models[@]}"
}
run_compile() {  # K
    bench "compile$1" 180 "$1" --models single --compile --skip-compiled-loops --compile-modes "${MODES[@]}"
}
run_e2e() {
    local e2e=$WORK/e2e; mkdir -p "$e2e"
    helper e2e-study study "$HERE/gpu-check-study.yaml" "$e2e/study.yaml" --precision "$PREC" $TINYFLAG > /dev/null \
        || { log "e2e: the study could not be written"; return 1; }
    (cd "$e2e" && step e2e 200 "$PY" -m ablate run study.yaml --quiet)
    (cd "$e2e" && step e2e-trials 60 "$PY" "$HERE/gpu_check.py" --out "$WORK/e2e-trials.json" trials study.yaml)
}
run_r50() {
    step peak 60 "$PY" "$HERE/gpu_check.py" --out "$WORK/peak.json" peak $TINYFLAG --backbone "$BB50" --image-size "$S224"
    step r50 150 "$PY" -m ablate bench --device "$DEV" --precision "$PREC" --skip-optuna --json \
        --json-out "$WORK/r50.json" --backbone "$BB50" --image-size "$S224" --batch-size "$B" --fuse 4 --models single \
        "${R50_STEPS[@]}"
}
run_workers() {  # what `ablate run --gpus 0,0,0,0` does, against one fused worker (fuse4)
    step workers 120 "$PY" "$HERE/gpu_check.py" --out "$WORK/workers.json" workers 4 "$WORK" -- \
        "$PY" -m ablate bench --device "$DEV" --precision "$PREC" --skip-optuna --json --backbone "$BB18" \
        --image-size "$S32" --batch-size "$B" --models single "${BENCH_STEPS[@]}"
}

echo "{\"started\": $STARTED, \"deadline_s\": $DEADLINE, \"tiny\": $([ "$TINY" = 1 ] && echo true || echo false), \"steps_asked\": \"$STEPS\"}" \
    > "$WORK/meta.json"
log "gpu-check: $([ "$TINY" = 1 ] && echo "tiny, on the CPU" || echo "on CUDA"); deadline $DEADLINE s; steps: $STEPS"
[ "$TINY" = 1 ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG"
for s in $STEPS; do
    case $s in
        install|imports|gate|e2e|r50|workers) "run_$s" ;;
        fuse*) run_fuse "${s#fuse}" ;;
        compile*) run_compile "${s#compile}" ;;
        *) log "unknown step $s" ;;
    esac
done
summarize
"$PY" "$HERE/gpu_check.py" digest "$WORK" 2>&1 | tee -a "$LOG"
log "gpu-check: $(grep -c $'\tok\t' "$WORK/steps.tsv") of $(wc -l < "$WORK/steps.tsv") steps ok in $(( $(date +%s) - STARTED )) s; figures in $OUT"
! grep -v -q $'\tok\t' "$WORK/steps.tsv"
