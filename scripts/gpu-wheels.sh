#!/usr/bin/env bash
# Downloads into .whl/ (ignored by git) the Python 3.12 manylinux wheels the lent GPU machine
# lacks, at the versions installed in this environment, and nothing it has; prints their total.
#
# Run it here, where pip reaches a registry, with the Python of the environment whose versions
# should travel (the one the tests pass in):
#     PYTHON=/path/to/.venv/bin/python bash scripts/gpu-wheels.sh
# What the machine has is scripts/gpu_check.py's MACHINE_HAS (from the device documentation);
# what ablate needs is pyproject.toml's [project].dependencies and their closure, read from
# what is installed here (gpu_check.py wheels). A package the machine has at an unrecorded version that a wheel
# requires at a lower bound (typing-extensions) goes to .whl/spare/, installed there only if the
# machine's own version falls short. scripts/gpu-check.sh installs both, without network.
# The working tree that travels, these included, is at most 64 MiB.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(dirname "$HERE")
PY=${PYTHON:-python3}
DEST=${1:-$ROOT/.whl}

LIST=$("$PY" "$HERE/gpu_check.py" wheels)
mapfile -t WHEELS < <("$PY" -c 'import json,sys; print("\n".join(json.load(sys.stdin)["wheels"]))' <<<"$LIST")
mapfile -t SPARES < <("$PY" -c 'import json,sys; print("\n".join(json.load(sys.stdin)["spares"]))' <<<"$LIST")

rm -rf "$DEST"; mkdir -p "$DEST/spare"  # one version of each: two stop the whole install there
# pip matches a manylinux_2_N tag exactly: name every N the machine's glibc may take
PLATFORMS=()
for tag in manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 \
           manylinux_2_17 manylinux2014 manylinux1; do
    PLATFORMS+=(--platform "${tag}_x86_64")
done
download() {
    local dest=$1; shift
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${PLATFORMS[@]}" -d "$dest" "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}
download "$DEST" "${WHEELS[@]}"
[ ${#SPARES[@]} -gt 0 ] && [ -n "${SPARES[0]}" ] && download "$DEST/spare" "${SPARES[@]}"

echo "wheels for the lent machine (Python 3.12, manylinux x86_64) in $DEST:"
(cd "$DEST" && ls -1 *.whl spare/*.whl 2>/dev/null | sed 's/^/  /')
"$PY" - "$DEST" <<'PYEOF'
import sys
from pathlib import Path
files = list(Path(sys.argv[1]).rglob("*.whl"))
total = sum(f.stat().st_size for f in files)
print(f"total: {len(files)} wheels, {total / 2**20:.1f} MiB (the working tree that travels is at most 64 MiB)")
sys.exit(0 if total < 48 * 2**20 else 1)
PYEOF
