#!/usr/bin/env bash
# The GPU check, run ON the GPU machine as ONE command from the repository root (no network there):
#   device tool:  run(command="bash benchmarks/gpu_check/run.sh", carry=["benchmarks/gpu_check/wheels"], timeout_s=600)
# Before it, HERE: .venv/bin/python benchmarks/gpu_check/kit.py   (the wheels, ~34 MiB of the 64 MiB a command carries)
# Installs the kit into /tmp (no index, no dependencies; the image's own torch, numpy, ... stay), then
# runs gpu_check.py within its budget: at most 60 s + 480 s, under the command's 600 s. Results:
# ${OUT}/gpu_check.json and gpu_check.md (two files; scenes, runs and logs stay in /tmp).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
DEST=${OUT:-benchmarks/results/gpu_check}
SITE=${NERFLOC_SITE:-/tmp/nerfloc_site}
mkdir -p "$DEST"
start=$(date +%s)
timeout 60 $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --upgrade \
    --target "$SITE" benchmarks/gpu_check/wheels/*.whl benchmarks/gpu_check/wheels/*.tar.gz \
    || { echo "installing the kit failed (benchmarks/gpu_check/wheels: run kit.py here first)"; exit 1; }
echo "kit installed in $(( $(date +%s) - start )) s"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec timeout 510 $PY benchmarks/gpu_check/gpu_check.py --output-dir "$DEST" --budget-s 480 "$@"
