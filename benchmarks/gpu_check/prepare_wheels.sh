#!/usr/bin/env bash
# Run HERE (a machine with network to PyPI), before a GPU slot: downloads, for the GPU machine's
# Python 3.12 / manylinux x86_64, the wheels of every package nerfloc's .venv has that the GPU
# image lacks (its package list: /work/.library/device/KINDS.md), same versions, no dependencies;
# plus nerfloc itself. Writes benchmarks/gpu_check/wheels/ (kept under the device tool's 64 MiB per
# call: ray, the dev tools and the CPU-only packages are left out).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=benchmarks/gpu_check/wheels
rm -rf "$OUT" && mkdir -p "$OUT"
PRESENT="torch torchvision numpy scipy matplotlib pillow imageio scikit-image opencv-python-headless rich tensorboard
timm torchmetrics jaxtyping wadler-lindig typing-extensions packaging requests pyyaml msgpack h5py psutil tqdm
pytest hypothesis filelock fsspec jinja2 networkx sympy triton protobuf six python-dateutil"
SKIP="ray ruff nerfloc pip setuptools wheel"
.venv/bin/python -m pip list --format=freeze | while IFS='=' read -r name _ version; do
    lower=$(echo "$name" | tr 'A-Z_' 'a-z-')
    [[ " $PRESENT $SKIP " == *" $lower "* ]] && continue
    [[ "$lower" == nvidia-* || "$lower" == cuda-* ]] && continue
    .venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform any -d "$OUT" "$name==$version" 2>/dev/null \
      || .venv/bin/python -m pip download --quiet --no-deps -d "$OUT" "$name==$version" 2>/dev/null \
      || echo "no wheel for $name==$version (pure-python sdist? install may need it)"
done
.venv/bin/python -m pip wheel --quiet --no-deps -w "$OUT" .
du -sh "$OUT"
