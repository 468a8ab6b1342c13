#!/usr/bin/env bash
# End-to-end demo on the shipped example scene (CPU): train nerfloc-nerfacto, render held-out views.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${NERFLOC_DEMO_OUT:-demo_outputs}
SCENE=examples/demo_room
CONFIG="$OUT/demo_room/nerfloc-nerfacto-cpu/demo/config.yml"

echo "== 1/2 train nerfloc-nerfacto (CPU preset) on $SCENE"
rm -rf "$OUT/demo_room/nerfloc-nerfacto-cpu/demo"
start=$(date +%s)
ns-train nerfloc-nerfacto-cpu --output-dir "$OUT" --experiment-name demo_room --timestamp demo \
    --viewer.quit-on-train-completion True \
    sevenscenes-data --data "$SCENE"
echo "training took $(( $(date +%s) - start )) s"

echo "== 2/2 render held-out query views (ground truth | RGB | depth | GT depth)"
nerfloc-render-views --load-config "$CONFIG" --output-dir "$OUT/renders" --num-views 4

echo "demo done: config $CONFIG, renders and metrics.json in $OUT/renders"
