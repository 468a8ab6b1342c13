#!/usr/bin/env bash
# Run ON the GPU machine (PyTorch + CUDA, no network), from the repository root, as ONE command:
#   bash benchmarks/gpu_check/run.sh            (the device tool: carry benchmarks/gpu_check/wheels)
# Installs the carried wheels into the machine's Python (no index, no dependencies), checks the
# README's GPU install (tiny-cuda-nn built with --no-build-isolation against the installed torch,
# when its source is carried in benchmarks/gpu_check/tiny-cuda-nn), then runs gpu_check.py, which
# writes ${OUT:-benchmarks/results/gpu_check}/gpu_check.json step by step (< 8 min on one H200).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
DEST=${OUT:-benchmarks/results/gpu_check}
mkdir -p "$DEST"
$PY -m pip install --quiet --no-index --no-deps benchmarks/gpu_check/wheels/*.whl 2>&1 | tail -3
if [[ -d benchmarks/gpu_check/tiny-cuda-nn/bindings/torch ]]; then
    (cd benchmarks/gpu_check/tiny-cuda-nn/bindings/torch && timeout 300 $PY -m pip install --quiet --no-build-isolation . ) \
        > "$DEST/tcnn_build.log" 2>&1 && echo "tiny-cuda-nn built" || echo "tiny-cuda-nn build failed (see $DEST/tcnn_build.log)"
fi
exec timeout 480 $PY benchmarks/gpu_check/gpu_check.py --output-dir "$DEST"
