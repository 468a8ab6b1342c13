"""Benchmark: which render-verification score tells right pose hypotheses from wrong ones.

For every query of a dataset, ``ns-localize-baseline``'s default stages (direct 2D-3D matching,
then the verified retrieval shortlist) run once with ``--verify.every-stage`` hypotheses (each
candidate view alone, further RANSAC models); a trained map (``--map``, any nerfloc run that renders
RGB) renders each distinct hypothesis once, plus the ground-truth pose and the ground truth shifted
2 m sideways.  Every verification setting (score x blur x switch margin) is then replayed on the
same renderings with the pipeline's own decision rule (:class:`RenderVerifier`), so the settings are
compared on exactly the same hypotheses.

Reported per setting: recall at (5 cm, 5 deg) of the verified poses and of the classical default
(no verification), wrong-place poses (> 50 cm) left, queries overruled, how often the ground truth
outscores the 2 m shift, and for a range of ``min_score`` thresholds the wrong-place poses left
confident and the right poses flagged ``unverified``.  Writes ``OUT/verification_scores.json`` and
``.md``.

    python benchmarks/verification_scores.py --data demo_outputs/scenes/gallery \\
        --map demo_outputs/gallery/nerfloc-nerfacto-cpu/demo/config.yml --output-dir benchmarks/results/verify
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tyro

from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.map_sources import pipeline_from_dataset
from nerfloc_plugins.localize.outputs.metrics import WRONG_PLACE_CM
from nerfloc_plugins.localize.pipeline import localize_with_cascade
from nerfloc_plugins.localize.stages.hypotheses import PoseHypothesis
from nerfloc_plugins.localize.stages.map_checks import query_image
from nerfloc_plugins.localize.stages.verification import RenderVerifier, Verification, VerifyConfig
from nerfloc_plugins.nerf.field_renderer import FieldRenderer
from nerfloc_plugins.nerf.render_sampling import RenderSampling
from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically

WRONG_PLACE_M = WRONG_PLACE_CM / 100.0


class CachedRenderer:
    """Renders each (pose, camera) once; later calls with the same pose reuse it."""

    def __init__(self, renderer) -> None:
        self.renderer = renderer
        self.cache: Dict[Tuple[bytes, int, int], dict] = {}
        self.seconds = 0.0
        self.count = 0

    @property
    def model(self):
        return self.renderer.model

    def render(self, c2w, intrinsics, sampling=None):
        key = (np.round(np.asarray(c2w), 9).tobytes(), intrinsics.width, intrinsics.height)
        if key not in self.cache:
            start = time.perf_counter()
            self.cache[key] = self.renderer.render(c2w, intrinsics, sampling=sampling)
            self.seconds += time.perf_counter() - start
            self.count += 1
        return self.cache[key]


class RecordingVerifier:
    """Stands in for the verifier in the pipeline: keeps the candidates, chooses the pipeline's own."""

    def __init__(self) -> None:
        self.candidates: List[PoseHypothesis] = []

    def verify(self, hypotheses, image, intrinsics) -> Verification:
        self.candidates = list(hypotheses)
        hypotheses[0].score = 0.0
        return Verification([hypotheses[0]], 0, True, None)


@dataclass
class VerificationScores:
    data: Path
    """Dataset (scene) folder, read as ``ns-localize-baseline`` reads it (7-Scenes layout)."""
    map: Path
    """config.yml of the trained run that renders the hypotheses."""
    output_dir: Path = Path("benchmarks/results/verification_scores")
    resolution: int = 40
    samples: Optional[Tuple[int, ...]] = None
    """Samples per ray of the renderings (proposal levels, NeRF), e.g. ``16 8 8``; None: the
    verifier's default (``--verify.sample-fraction`` of the run's)."""
    scores: Tuple[str, ...] = ("ncc", "ssim", "gradient-ncc")
    blurs: Tuple[float, ...] = (0.0, 1.0)
    margins: Tuple[float, ...] = (0.0, 0.02, 0.05, 0.1)
    min_scores: Tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
    max_queries: int = 1000

    def main(self) -> dict:
        built = pipeline_from_dataset(self.data)
        pipeline, stages = built.config, built.stages
        pipeline.verify = replace(pipeline.verify, enabled=True, sampling=RenderSampling(samples=self.samples))
        renderer = CachedRenderer(FieldRenderer(self.map))
        recorder = RecordingVerifier()
        queries = []
        for frame in built.query_frames("test", self.max_queries):
            result = localize_with_cascade(stages, frame, pipeline, None, recorder)
            image, intrinsics = query_image(result) if result.w2c is not None else (None, None)
            queries.append((frame, result.w2c is not None, recorder.candidates if result.w2c is not None else [],
                            image, intrinsics))  # fmt: skip
            recorder.candidates = []
        rows = []
        for score in self.scores:
            for blur in self.blurs:
                for margin in self.margins:
                    config = replace(pipeline.verify, score=score, blur_px=blur, switch_margin=margin,
                                     resolution=self.resolution)  # fmt: skip
                    rows.append(self.evaluate(config, queries, renderer))
        out = {
            "data": str(self.data),
            "map": str(self.map),
            "resolution": self.resolution,
            "sampling": RenderVerifier(renderer, pipeline.verify).config.sampling.describe(),
            "num_queries": len(queries),
            "render_s_mean": renderer.seconds / max(renderer.count, 1),
            "settings": rows,
        }
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomically(out, self.output_dir / "verification_scores.json")
        write_text_atomically(markdown(out, self.min_scores), self.output_dir / "verification_scores.md")
        print(markdown(out, self.min_scores))
        return out

    def evaluate(self, config: VerifyConfig, queries, renderer: CachedRenderer) -> dict:
        verifier = RenderVerifier(renderer, config)
        per_query = []
        for frame, localized, candidates, image, intrinsics in queries:
            gt_w2c = invert_rigid(frame.c2w)
            if not localized:
                per_query.append({"name": frame.name, "failed": True})
                continue
            first_err = pose_error(candidates[0].w2c, gt_w2c)
            verification = verifier.verify(copy.deepcopy(candidates), image, intrinsics)
            chosen = verification.hypotheses[verification.chosen]
            err = pose_error(chosen.w2c, gt_w2c)
            small, camera = verifier.query_at_render_size(image, intrinsics)
            true_score, _ = verifier.score_pose(gt_w2c, small, camera)
            shifted = frame.c2w.copy()
            shifted[:3, 3] += 2.0 * shifted[:3, 0]  # 2 m along the camera's x axis
            shift_score, _ = verifier.score_pose(invert_rigid(shifted), small, camera)
            has_right = any(pose_error(h.w2c, gt_w2c)[0] < WRONG_PLACE_M for h in verification.hypotheses)
            per_query.append({
                "name": frame.name, "failed": False, "error_m": err[0], "error_deg": err[1],
                "first_error_m": first_err[0], "first_error_deg": first_err[1], "score": verification.score,
                "overruled": verification.overruled, "right_present": has_right,
                "true_score": true_score, "shift_score": shift_score,
                "hypotheses": [(pose_error(h.w2c, gt_w2c)[0], h.score) for h in verification.hypotheses],
            })  # fmt: skip
        return summarize(config, per_query, self.min_scores)


def within(err_m: float, err_deg: float) -> bool:
    return err_m <= 0.05 and err_deg <= 5.0


def summarize(config: VerifyConfig, per_query: Sequence[dict], min_scores: Sequence[float]) -> dict:
    ok = [q for q in per_query if not q["failed"]]
    n = len(per_query)
    thresholds = {}
    for t in min_scores:
        thresholds[f"{t:g}"] = {
            "wrong_place_confident": sum(q["error_m"] > WRONG_PLACE_M and q["score"] >= t for q in ok),
            "right_unverified": sum(q["error_m"] <= WRONG_PLACE_M and q["score"] < t for q in ok),
        }
    return {
        "score": config.score,
        "blur_px": config.blur_px,
        "switch_margin": config.switch_margin,
        "recall_5cm_5deg": sum(within(q["error_m"], q["error_deg"]) for q in ok) / max(n, 1),
        "recall_5cm_5deg_default": sum(within(q["first_error_m"], q["first_error_deg"]) for q in ok) / max(n, 1),
        "wrong_place": sum(q["error_m"] > WRONG_PLACE_M for q in ok),
        "wrong_place_default": sum(q["first_error_m"] > WRONG_PLACE_M for q in ok),
        "wrong_place_with_right_hypothesis": sum(q["error_m"] > WRONG_PLACE_M and q["right_present"] for q in ok),
        "overruled": sum(q["overruled"] for q in ok),
        "true_beats_2m_shift": sum(q["true_score"] > q["shift_score"] for q in ok) / max(len(ok), 1),
        "thresholds": thresholds,
        "queries": list(per_query),
    }


def markdown(out: dict, min_scores: Sequence[float]) -> str:
    lines = [
        f"# Render-verification scores: {out['data']}",
        "",
        f"Map `{out['map']}`, renders {out['resolution']} px wide, samples per ray {out['sampling']} "
        f"({1000 * out['render_s_mean']:.0f} ms each), "
        f"{out['num_queries']} queries. Default: the classical pipeline's own pose. Wrong-place: > 50 cm off. "
        "`true > 2 m`: the ground-truth pose outscores it shifted 2 m sideways. Per min_score: wrong-place "
        "poses left confident / right poses flagged unverified.",
        "",
        "| score | blur px | margin | recall 5cm,5deg (default) | wrong-place (default) | overruled | true > 2 m | "
        + " | ".join(f"min {t:g}" for t in min_scores)
        + " |",
        "|" + " --- |" * (7 + len(min_scores)),
    ]
    for r in out["settings"]:
        cells = [f"{r['thresholds'][f'{t:g}']['wrong_place_confident']} / {r['thresholds'][f'{t:g}']['right_unverified']}"
                 for t in min_scores]  # fmt: skip
        lines.append(
            f"| {r['score']} | {r['blur_px']:g} | {r['switch_margin']:g} | {100 * r['recall_5cm_5deg']:.1f}% "
            f"({100 * r['recall_5cm_5deg_default']:.1f}%) | {r['wrong_place']} ({r['wrong_place_default']}) | "
            f"{r['overruled']} | {100 * r['true_beats_2m_shift']:.0f}% | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    tyro.cli(VerificationScores).main()
