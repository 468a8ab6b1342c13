#!/usr/bin/env bash
# End-to-end demo on the shipped example scene (CPU): train nerfloc-nerfacto, render held-out views,
# localize the query sequence with the classical baseline through the shared pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${NERFLOC_DEMO_OUT:-demo_outputs}
SCENE=examples/demo_room
CONFIG="$OUT/demo_room/nerfloc-nerfacto-cpu/demo/config.yml"

echo "== 1/3 train nerfloc-nerfacto (CPU preset) on $SCENE"
rm -rf "$OUT/demo_room/nerfloc-nerfacto-cpu/demo"
start=$(date +%s)
ns-train nerfloc-nerfacto-cpu --output-dir "$OUT" --experiment-name demo_room --timestamp demo \
    --viewer.quit-on-train-completion True \
    sevenscenes-data --data "$SCENE"
echo "training took $(( $(date +%s) - start )) s"

echo "== 2/3 render held-out query views (ground truth | RGB | depth | GT depth)"
nerfloc-render-views --load-config "$CONFIG" --output-dir "$OUT/renders" --num-views 4

echo "== 3/3 localize the query sequence with the classical baseline (shared ns-localize pipeline)"
ns-localize-baseline --data "$SCENE" --output-dir "$OUT/localize-baseline"

echo "demo done:"
echo "  map:          $CONFIG"
echo "  renders:      $OUT/renders (panels + metrics.json)"
echo "  localization: $OUT/localize-baseline/report.md (poses.txt, metrics.json, per_query.csv, plots/)"
