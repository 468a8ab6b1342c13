#!/usr/bin/env bash
# Demo on the shipped example scene (CPU). `make demo` (under 10 minutes): the classical baseline
# (SIFT lifted by depth, top-1 VLAD retrieval) and the classical default (direct 2D-3D matching, then
# a geometrically verified top-5-of-20 shortlist), each report beside the other, on examples/demo_room;
# then the neural map's part: on a generated room that hangs the same pictures twice (`gallery`), the
# classical default beside the same pipeline with render verification by a small NeRF map the demo
# trains (~5 min), every pose hypothesis rendered and the one the query shows kept.
# `make demo-all` adds a harder generated room (`office`, 16 queries whose nearby mapping views look
# elsewhere) and the five-method tour below.
# `make demo-all` adds the five-method tour through the shared ns-localize pipeline (about an hour):
#   crossfire  train crossfire-cpu (Nerfacto + descriptor field + query CNN), render held-out views,
#              localize (3 iterations)                                               ~11 min
#   nerfmatch  train nerfloc-nerfacto-cpu (the frozen NeRF), train nerfmatch-mini-cpu on it,
#              localize with photometric refinement + re-match                       ~18 min
#   neuraloc   train neuraloc-cpu (SDF map + descriptor / context fields distilled from ALIKED),
#              localize (matching graph + Hungarian + PnP)                           ~12 min
#   posemap    (re)uses the nerfmatch stage's NeRF (trains it if that stage did not run), trains
#              NeRF-P (posemap-nerf-cpu), APRNet (posemap-apr-cpu) and the self-supervised alignment
#              (posemap-align-cpu), localizes with the APR alone and as CrossFire's prior  ~15 min
# NERFLOC_DEMO_METHODS="crossfire nerfmatch neuraloc posemap" picks the methods of the tour (empty: none).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${NERFLOC_DEMO_OUT:-demo_outputs}
METHODS=${NERFLOC_DEMO_METHODS:-}
SCENE=examples/demo_room
BASELINE="$OUT/localize-baseline/metrics.json"
has() { [[ " $METHODS " == *" $1 "* ]]; }

echo "== baseline: localize the query sequence with the classical baseline (SIFT lifted by depth, top-1 retrieval)"
ns-localize-baseline --data "$SCENE" --output-dir "$OUT/localize-baseline" --map-matching views --retrieval.top-k 1 --retrieval.verify 0
echo "== best pipeline: the same features, top-5 of a 20-frame shortlist verified by PnP inliers, beside the baseline"
ns-localize-baseline --data "$SCENE" --output-dir "$OUT/localize-best" --baseline-metrics "$BASELINE"

OFFICE="$OUT/scenes/office"
if [[ -n "$METHODS" ]]; then
    if [[ ! -f "$OFFICE/hard_queries.txt" ]]; then
        echo "== a harder room: render 'office' with 16 hard queries (nearby mapping views look elsewhere)"
        nerfloc-make-scene --room office --hard-queries 16 --output-dir "$OFFICE"
    fi
    echo "== baseline and classical default on the office room (hard queries reported apart)"
    ns-localize-baseline --data "$OFFICE" --output-dir "$OUT/office/localize-baseline" --map-matching views \
        --retrieval.top-k 1 --retrieval.verify 0
    ns-localize-baseline --data "$OFFICE" --output-dir "$OUT/office/localize-best" \
        --baseline-metrics "$OUT/office/localize-baseline/metrics.json"
fi

GALLERY="$OUT/scenes/gallery"
GALLERY_MAP="$OUT/gallery/nerfloc-nerfacto-cpu/demo/config.yml"
if [[ ! -f "$GALLERY/hard_queries.txt" ]]; then
    echo "== the map settles the pose: render 'gallery' (the same pictures hung twice; 16 queries face a second copy)"
    nerfloc-make-scene --room gallery --hard-queries 8 --repeated-queries 16 --output-dir "$GALLERY"
fi
echo "== gallery: the classical default (direct 2D-3D matching, then the verified shortlist)"
ns-localize-baseline --data "$GALLERY" --output-dir "$OUT/gallery/localize-classical"
if [[ ! -f "$GALLERY_MAP" ]]; then
    echo "== gallery: train a small NeRF map (nerfloc-nerfacto-cpu, ${NERFLOC_DEMO_MAP_ITERATIONS:-400} iterations, ~4 min on 2 CPU cores)"
    ns-train nerfloc-nerfacto-cpu --output-dir "$OUT" --experiment-name gallery --timestamp demo \
        --max-num-iterations "${NERFLOC_DEMO_MAP_ITERATIONS:-400}" --viewer.quit-on-train-completion True \
        sevenscenes-data --data "$GALLERY"
fi
echo "== gallery: the same pipeline, every pose hypothesis rendered by the map and the one the query shows kept"
ns-localize-baseline --data "$GALLERY" --output-dir "$OUT/gallery/localize-verified" --verify.map "$GALLERY_MAP" \
    --baseline-metrics "$OUT/gallery/localize-classical/metrics.json"

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

echo "demo done:"
echo "  example room: $OUT/localize-best/report.md (best pipeline beside the baseline, $OUT/localize-baseline/report.md)"
[[ -n "$METHODS" ]] && echo "  office room:  $OUT/office/localize-best/report.md (hard queries apart)"
echo "  gallery:      $OUT/gallery/localize-verified/report.md (render-verified, beside the classical default"
echo "                $OUT/gallery/localize-classical/report.md; plots/verify_*.png: query | map at the chosen pose | runner-up)"
echo "  the gallery's map in the viewer: ns-viewer --load-config $GALLERY_MAP"
if [[ -z "$METHODS" ]]; then
    echo "  the five-method tour: make demo-all (about an hour)"
fi
has crossfire && echo "  crossfire:    $OUT/localize-crossfire/report.md; ns-viewer --load-config $OUT/demo_room/crossfire-cpu/demo/config.yml" \
    "(descriptor_pca, descriptor_similarity); renders in $OUT/renders"
has nerfmatch && echo "  nerfmatch:    $OUT/localize-nerfmatch-mini/report.md; ns-viewer --load-config $OUT/demo_room/nerfloc-nerfacto-cpu/demo/config.yml"
has neuraloc && echo "  neuraloc:     $OUT/localize-neuraloc/report.md; ns-viewer --load-config $OUT/demo_room/neuraloc-cpu/demo/config.yml" \
    "(descriptor_pca, context_pca, normals)"
has posemap && echo "  posemap:      $OUT/localize-posemap/report.md (PMNet alone), .../localize-posemap-aligned/ (PMNet_ud)" \
    "and $OUT/localize-posemap-crossfire/report.md (APR prior + CrossFire, when the crossfire stage ran)"
echo "  each report: poses.txt, metrics.json, per_query.csv, report.md, plots/"
