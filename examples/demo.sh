#!/usr/bin/env bash
# End-to-end demo on the shipped example scene (CPU). Localizes the query sequence with the
# classical baseline and, through the shared ns-localize pipeline, with each method, every report
# beside the baseline:
#   crossfire  train crossfire-cpu (Nerfacto + descriptor field + query CNN), render held-out views,
#              localize (3 iterations)                                               ~11 min
#   nerfmatch  train nerfloc-nerfacto-cpu (the frozen NeRF), train nerfmatch-mini-cpu on it,
#              localize with photometric refinement + re-match                       ~18 min
#   neuraloc   train neuraloc-cpu (SDF map + descriptor / context fields distilled from ALIKED),
#              localize (matching graph + Hungarian + PnP)                           ~12 min
#   posemap    (re)uses the nerfmatch stage's NeRF (trains it if that stage did not run), trains
#              NeRF-P (posemap-nerf-cpu), APRNet (posemap-apr-cpu) and the self-supervised alignment
#              (posemap-align-cpu), localizes with the APR alone and as CrossFire's prior  ~15 min
# NERFLOC_DEMO_METHODS="crossfire nerfmatch neuraloc posemap" (the default) picks the methods to run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${NERFLOC_DEMO_OUT:-demo_outputs}
METHODS=${NERFLOC_DEMO_METHODS:-crossfire nerfmatch neuraloc posemap}
SCENE=examples/demo_room
BASELINE="$OUT/localize-baseline/metrics.json"
has() { [[ " $METHODS " == *" $1 "* ]]; }

echo "== baseline: localize the query sequence with the classical baseline (SIFT lifted by depth)"
ns-localize-baseline --data "$SCENE" --output-dir "$OUT/localize-baseline"

if has crossfire; then
    CONFIG="$OUT/demo_room/crossfire-cpu/demo/config.yml"
    echo "== crossfire 1/3: train crossfire-cpu on $SCENE"
    rm -rf "$OUT/demo_room/crossfire-cpu/demo"
    start=$(date +%s)
    ns-train crossfire-cpu --output-dir "$OUT" --experiment-name demo_room --timestamp demo \
        --viewer.quit-on-train-completion True \
        sevenscenes-data --data "$SCENE"
    echo "training took $(( $(date +%s) - start )) s"
    echo "== crossfire 2/3: render held-out query views (ground truth | RGB | depth | GT depth)"
    nerfloc-render-views --load-config "$CONFIG" --output-dir "$OUT/renders" --num-views 4
    echo "== crossfire 3/3: localize with CrossFire (3 iterations), reported beside the baseline"
    # the example's queries are 160x120: render the map at 2x the CNN map (80x60, see docs/crossfire.md)
    ns-localize --load-config "$CONFIG" --output-dir "$OUT/localize-crossfire" --crossfire.render-scale 2 \
        --baseline-metrics "$BASELINE"
fi

if has nerfmatch; then
    NERF="$OUT/demo_room/nerfloc-nerfacto-cpu/demo/config.yml"
    MATCHER="$OUT/demo_room/nerfmatch-mini-cpu/demo/config.yml"
    echo "== nerfmatch 1/3: train the frozen NeRF (nerfloc-nerfacto-cpu) on $SCENE"
    rm -rf "$OUT/demo_room/nerfloc-nerfacto-cpu/demo" "$OUT/demo_room/nerfmatch-mini-cpu/demo"
    ns-train nerfloc-nerfacto-cpu --output-dir "$OUT" --experiment-name demo_room --timestamp demo \
        --viewer.quit-on-train-completion True \
        sevenscenes-data --data "$SCENE"
    echo "== nerfmatch 2/3: train NeRFMatch-Mini (CPU preset) on the frozen NeRF's features"
    ns-train nerfmatch-mini-cpu --data "$NERF" --output-dir "$OUT" --experiment-name demo_room --timestamp demo \
        --viewer.quit-on-train-completion True
    echo "== nerfmatch 3/3: localize with NeRFMatch-Mini + photometric refinement + re-match, beside the baseline"
    ns-localize --load-config "$MATCHER" --output-dir "$OUT/localize-nerfmatch-mini" \
        --refine.iterations 0 --refine.photometric.steps 50 --baseline-metrics "$BASELINE"
fi

if has neuraloc; then
    CONFIG="$OUT/demo_room/neuraloc-cpu/demo/config.yml"
    echo "== neuraloc 1/2: train neuraloc-cpu (SDF geometry grid + semantic grid distilled from ALIKED) on $SCENE"
    rm -rf "$OUT/demo_room/neuraloc-cpu/demo"
    start=$(date +%s)
    ns-train neuraloc-cpu --output-dir "$OUT" --experiment-name demo_room --timestamp demo \
        --viewer.quit-on-train-completion True \
        sevenscenes-data --data "$SCENE"
    echo "training took $(( $(date +%s) - start )) s"
    echo "== neuraloc 2/2: localize (context-filtered matching graph, Hungarian, PnP), beside the baseline"
    ns-localize --load-config "$CONFIG" --output-dir "$OUT/localize-neuraloc" --refine.iterations 1 \
        --baseline-metrics "$BASELINE"
fi

if has posemap; then
    NERF="$OUT/demo_room/nerfloc-nerfacto-cpu/demo/config.yml"
    NERF_P="$OUT/demo_room/posemap-nerf-cpu/demo/config.yml"
    APR="$OUT/demo_room/posemap-apr-cpu/demo/config.yml"
    ALIGNED="$OUT/demo_room/posemap-align-cpu/demo/config.yml"
    if [[ ! -f "$NERF" ]]; then
        echo "== posemap 0/4: train the stage-1 NeRF (nerfloc-nerfacto-cpu) on $SCENE"
        ns-train nerfloc-nerfacto-cpu --output-dir "$OUT" --experiment-name demo_room --timestamp demo \
            --viewer.quit-on-train-completion True \
            sevenscenes-data --data "$SCENE"
    fi
    rm -rf "$OUT/demo_room/posemap-nerf-cpu/demo" "$OUT/demo_room/posemap-apr-cpu/demo" "$OUT/demo_room/posemap-align-cpu/demo"
    echo "== posemap 1/4: NeRF-P stage 2 (pose branch + decoder on the frozen NeRF)"
    ns-train posemap-nerf-cpu --data "$NERF" --output-dir "$OUT" --experiment-name demo_room --timestamp demo \
        --viewer.quit-on-train-completion True
    echo "== posemap 2/4: APRNet with L_pose + L_image + L_posemap + L_rvs (PMNet)"
    ns-train posemap-apr-cpu --data "$NERF_P" --output-dir "$OUT" --experiment-name demo_room --timestamp demo \
        --viewer.quit-on-train-completion True
    echo "== posemap 3/4: self-supervised alignment on unlabelled query images (PMNet_ud)"
    ns-train posemap-align-cpu --data "$APR" --output-dir "$OUT" --experiment-name demo_room --timestamp demo \
        --viewer.quit-on-train-completion True
    echo "== posemap 4/4: localize with the APR alone (PMNet, PMNet_ud), and PMNet as CrossFire's pose prior, beside the baseline"
    ns-localize --load-config "$APR" --output-dir "$OUT/localize-posemap" --baseline-metrics "$BASELINE"
    ns-localize --load-config "$ALIGNED" --output-dir "$OUT/localize-posemap-aligned" --baseline-metrics "$BASELINE"
    CROSSFIRE="$OUT/demo_room/crossfire-cpu/demo/config.yml"
    if [[ -f "$CROSSFIRE" ]]; then
        ns-localize --load-config "$CROSSFIRE" --pose-prior "$APR" --output-dir "$OUT/localize-posemap-crossfire" \
            --crossfire.render-scale 2 --baseline-metrics "$BASELINE"
    fi
fi

echo "demo done ($METHODS):"
echo "  baseline:     $OUT/localize-baseline/report.md"
has crossfire && echo "  crossfire:    $OUT/localize-crossfire/report.md; map $OUT/demo_room/crossfire-cpu/demo/config.yml" \
    "(ns-viewer: descriptor_pca, descriptor_similarity); renders in $OUT/renders"
has nerfmatch && echo "  nerfmatch:    $OUT/localize-nerfmatch-mini/report.md; matcher $OUT/demo_room/nerfmatch-mini-cpu/demo/config.yml"
has neuraloc && echo "  neuraloc:     $OUT/localize-neuraloc/report.md; map $OUT/demo_room/neuraloc-cpu/demo/config.yml" \
    "(ns-viewer: descriptor_pca, context_pca, normals)"
has posemap && echo "  posemap:      $OUT/localize-posemap/report.md (PMNet alone), .../localize-posemap-aligned/ (PMNet_ud)" \
    "and $OUT/localize-posemap-crossfire/report.md (APR prior + CrossFire, when the crossfire stage ran)"
echo "  each report: poses.txt, metrics.json, per_query.csv, report.md (beside the baseline), plots/"
