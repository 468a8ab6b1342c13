"""Render verification of pose hypotheses (localize/stages/hypotheses.py, localize/stages/verification.py) in the
shared pipeline, with the synthetic rooms' exact ray caster standing in for a map (fast), and the
report files it changes.  Tests with a trained map: tests/test_render_verification_map.py."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nerfloc_plugins.data.frames import Intrinsics, PosedFrame
from nerfloc_plugins.data.synthetic_scene import (
    ROOMS,
    first_copy_closeups,
    look_at_c2w,
    render_view,
    repeated_picture_query_poses,
    repeated_pictures,
)
from nerfloc_plugins.features.local_features import LocalFeatures
from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.interface.localizer import QueryDescription
from nerfloc_plugins.localize.outputs.metrics import build_metrics
from nerfloc_plugins.localize.outputs.report import write_report
from nerfloc_plugins.localize.stages.hypotheses import PoseHypothesis, distinct_hypotheses, further_models
from nerfloc_plugins.localize.stages.map_checks import refine_by_render_match
from nerfloc_plugins.localize.stages.pnp import PnPConfig, solve_pnp
from nerfloc_plugins.localize.stages.query_result import QueryResult, StageTimer
from nerfloc_plugins.localize.stages.render_match import RenderMatchResult
from nerfloc_plugins.localize.stages.verification import RenderVerifier, VerifyConfig, ncc, windowed_ssim

CAMERA = Intrinsics(525.0, 525.0, 320.0, 240.0, 640, 480).scaled_to(160, 120)


class ExactRenderer:
    """Stands in for a trained map: the room rendered exactly by the scene generator's ray caster."""

    def __init__(self, room: str = "gallery") -> None:
        self.boxes = ROOMS[room]()
        self.calls = 0

    def render(self, c2w, intrinsics, outputs=(), sampling=None):
        self.calls += 1
        rgb, depth = render_view(self.boxes, c2w, intrinsics, supersample=1)
        return {"rgb": rgb.astype(np.float32), "depth": depth}


def gallery_query(index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A query facing the second copy of a repeated picture: its c2w and its image (160x120)."""
    c2w = repeated_picture_query_poses(ROOMS["gallery"](), index + 1)[index]
    image, _ = render_view(ROOMS["gallery"](), c2w, CAMERA, supersample=2)
    return c2w, image.astype(np.float32)


def at_other_copy(c2w: np.ndarray) -> np.ndarray:
    """The same view of the first copy: the room turned half a turn about its vertical axis (the
    gallery's copies sit half a turn apart), i.e. a confident wrong-place pose."""
    turn = np.diag([-1.0, -1.0, 1.0, 1.0])
    return turn @ c2w


def test_scores_are_one_for_equal_images_and_ignore_gain_and_offset():
    rng = np.random.default_rng(0)
    a = rng.random((30, 40)).astype(np.float32)
    mask = np.ones_like(a, dtype=bool)
    assert ncc(a, a) == pytest.approx(1.0)
    assert ncc(a, 0.5 * a + 0.2) == pytest.approx(1.0)
    assert ncc(a, 1.0 - a) == pytest.approx(-1.0)
    assert windowed_ssim(a, 0.5 * a + 0.2, mask, (4, 3)) == pytest.approx(1.0, abs=1e-6)
    assert abs(ncc(a, rng.random((30, 40)))) < 0.1
    flat = np.full_like(a, 0.5)
    assert ncc(a, flat) == 0.0
    assert windowed_ssim(a, rng.random((30, 40)).astype(np.float32), mask, (4, 3)) < 0.2


def test_distinct_hypotheses_keep_the_pipelines_choice_first_then_inliers():
    base = np.eye(4)
    near, far, farther = base.copy(), base.copy(), base.copy()
    near[:3, 3] = [0.1, 0, 0]
    far[:3, 3] = [2.0, 0, 0]
    farther[:3, 3] = [0, 3.0, 0]
    hyps = [
        PoseHypothesis(base, 10, 20, "first"),
        PoseHypothesis(near, 90, 100, "near"),
        PoseHypothesis(far, 30, 40, "far"),
        PoseHypothesis(farther, 50, 60, "farther"),
    ]
    kept = distinct_hypotheses(hyps, limit=5, distance_m=0.3, angle_deg=10)
    assert [h.source for h in kept] == ["first", "farther", "far"]
    assert [h.source for h in distinct_hypotheses(hyps, limit=2, distance_m=0.3, angle_deg=10)] == ["first", "farther"]


def test_further_models_find_the_second_place_of_a_repeated_texture():
    """Matches to two copies of a texture: the first PnP model explains one copy, the second model
    the other (sequential RANSAC), each within 1 cm of its pose."""
    rng = np.random.default_rng(1)
    true_c2w = look_at_c2w(np.array([0.0, 0.0, 1.4]), np.array([2.5, 0.0, 1.2]))
    copy_c2w = at_other_copy(true_c2w)
    uv = np.stack([rng.uniform(5, 155, 160), rng.uniform(5, 115, 160)], axis=1)
    depth = rng.uniform(2.0, 3.0, 160)
    rays = np.concatenate([(uv - [CAMERA.cx, CAMERA.cy]) / [CAMERA.fx, CAMERA.fy], np.ones((160, 1))], axis=1)
    cam = rays * depth[:, None]
    true_points = cam[:90] @ true_c2w[:3, :3].T + true_c2w[:3, 3]
    copy_points = cam[90:] @ copy_c2w[:3, :3].T + copy_c2w[:3, 3]
    points = np.concatenate([true_points, copy_points])
    first = solve_pnp(uv, points, CAMERA, PnPConfig())
    models = further_models(uv, points, CAMERA, first, PnPConfig(), count=2, min_inliers=12)
    assert pose_error(first.w2c, invert_rigid(true_c2w))[0] < 0.01
    assert len(models) == 1
    assert pose_error(models[0].w2c, invert_rigid(copy_c2w))[0] < 0.01
    assert models[0].num_inliers == 70 and not (models[0].inliers & first.inliers).any()


def test_gallery_hangs_each_repeated_picture_twice_and_maps_only_the_first_closely():
    boxes = ROOMS["gallery"]()
    groups = repeated_pictures(boxes)
    assert [len(g) for g in groups] == [2, 2]
    def centre(box):
        return (np.asarray(box.lo[:2]) + np.asarray(box.hi[:2])) / 2

    firsts, seconds = [centre(g[0]) for g in groups], [centre(g[1]) for g in groups]
    def nearest(c2w, centres):
        return min(np.linalg.norm(c2w[:2, 3] - c) for c in centres)

    for c2w in first_copy_closeups(boxes, 8):  # nearest picture: a first copy, within 1.6 m
        assert nearest(c2w, firsts) < min(1.6, nearest(c2w, seconds))
    for c2w in repeated_picture_query_poses(boxes, 4):  # nearest picture: a second copy
        assert nearest(c2w, seconds) < min(1.6, nearest(c2w, firsts))


def test_verification_overrules_a_wrong_copy_and_the_true_pose_beats_a_2m_shift():
    verifier = RenderVerifier(ExactRenderer(), VerifyConfig(enabled=True))
    for index in range(4):
        c2w, image = gallery_query(index)
        wrong = PoseHypothesis(invert_rigid(at_other_copy(c2w)), 150, 160, "direct")
        right = PoseHypothesis(invert_rigid(c2w), 40, 60, "view:x")
        v = verifier.verify([wrong, right], image, CAMERA)
        assert v.overruled and v.chosen == 1 and v.verified, (index, [h.score for h in v.hypotheses])
        assert v.hypotheses[1].score > v.hypotheses[0].score + 0.05
        shifted = c2w.copy()
        shifted[:3, 3] += 2.0 * c2w[:3, 0]
        small, camera = verifier.query_at_render_size(image, CAMERA)
        true_score, _ = verifier.score_pose(invert_rigid(c2w), small, camera)
        shift_score, _ = verifier.score_pose(invert_rigid(shifted), small, camera)
        assert true_score > 0.9 and true_score > shift_score + 0.3


def test_only_wrong_hypotheses_give_an_unverified_pose_and_a_close_one_is_not_overruled():
    verifier = RenderVerifier(ExactRenderer(), VerifyConfig(enabled=True, min_score=0.5))
    c2w, image = gallery_query(1)
    shifted = c2w.copy()
    shifted[:3, 3] += 2.0 * c2w[:3, 0]
    v = verifier.verify([PoseHypothesis(invert_rigid(shifted), 80, 90, "direct")], image, CAMERA)
    assert not v.verified and v.score < 0.5 and v.margin is None
    # a pose 2 cm off is the same place: deduplicated away, the pipeline's choice stays
    near = c2w.copy()
    near[:3, 3] += 0.02
    first = PoseHypothesis(invert_rigid(c2w), 50, 60, "direct")
    v = verifier.verify([first, PoseHypothesis(invert_rigid(near), 90, 99, "views")], image, CAMERA)
    assert len(v.hypotheses) == 1 and not v.overruled and v.verified


def test_a_pose_scoring_above_one_minus_the_margin_is_kept_without_rendering_the_others():
    renderer = ExactRenderer()
    verifier = RenderVerifier(renderer, VerifyConfig(enabled=True, switch_margin=0.05))
    c2w, image = gallery_query(3)
    right = PoseHypothesis(invert_rigid(c2w), 50, 60, "direct")
    wrong = PoseHypothesis(invert_rigid(at_other_copy(c2w)), 40, 60, "views")
    v = verifier.verify([right, wrong], image, CAMERA)
    assert v.score > 0.95 and renderer.calls == 1 and v.unrendered == 1 and len(v.hypotheses) == 1
    assert not v.overruled and v.verified and v.margin is None


class PoseRefiner:
    """Stands in for render-and-match: 'refines' every pose to a given one."""

    def __init__(self, w2c: np.ndarray) -> None:
        self.w2c = w2c

    def describe(self, query):
        return LocalFeatures(np.zeros((0, 2)), np.zeros((0, 8), dtype=np.float32))

    def refine(self, w2c, query, features):
        return RenderMatchResult(self.w2c, 50, 1, view=object(), matches=np.zeros((0, 2), int), inliers=np.zeros(0))


def verified_result(c2w: np.ndarray, image: np.ndarray, verifier: RenderVerifier) -> QueryResult:
    frame = PosedFrame("q.png", Path("q.png"), c2w, CAMERA)
    query = QueryDescription(np.zeros((0, 2)), None, CAMERA, image=image)
    w2c = invert_rigid(c2w)
    result = QueryResult(frame, w2c, [], 60, 50, 0, StageTimer().per_stage(), query=query, stage="direct")
    result.verification = verifier.verify([PoseHypothesis(w2c, 50, 60, "direct")], image, CAMERA)
    return result


def test_a_refinement_that_lowers_the_score_is_not_kept(monkeypatch):
    verifier = RenderVerifier(ExactRenderer(), VerifyConfig(enabled=True))
    c2w, image = gallery_query(2)
    worse = c2w.copy()
    worse[:3, 3] += 0.4 * c2w[:3, 0]
    result = verified_result(c2w, image, verifier)
    out = refine_by_render_match(result, PoseRefiner(invert_rigid(worse)), verifier)
    assert pose_error(out.w2c, invert_rigid(c2w))[0] < 1e-9 and "+render-match" not in out.stage
    # a refinement the map confirms (here: to the true pose from 40 cm off) is kept
    result = verified_result(worse, image, verifier)
    out = refine_by_render_match(result, PoseRefiner(invert_rigid(c2w)), verifier)
    assert pose_error(out.w2c, invert_rigid(c2w))[0] < 1e-9 and out.stage.endswith("+render-match")


def test_unverified_lands_in_per_query_csv_and_metrics(tmp_path):
    verifier = RenderVerifier(ExactRenderer(), VerifyConfig(enabled=True, min_score=0.5))
    results = []
    for index in range(3):
        c2w, image = gallery_query(index)
        estimate = at_other_copy(c2w) if index == 0 else c2w  # the first one only at the wrong copy
        results.append(verified_result(estimate, image, verifier))
        results[-1].frame = replace(results[-1].frame, name=f"q{index}.png", c2w=c2w)
    metrics, errors = build_metrics(results, "test", "gallery", 0, 0.0)
    write_report(tmp_path, results, metrics, errors, np.zeros((1, 3)))
    rows = list(csv.DictReader(open(tmp_path / "per_query.csv")))
    assert [r["status"] for r in rows] == ["unverified", "localized", "localized"]
    assert float(rows[0]["verify_score"]) < 0.5 < float(rows[1]["verify_score"])
    assert float(rows[0]["confidence"]) < float(rows[1]["confidence"])
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["verification"]["num_unverified"] == 1
    assert saved["verification"]["wrong_place_unverified"] == 1 and saved["verification"]["wrong_place_confident"] == 0
    assert saved["num_wrong_place"] == 1
    figures = sorted(p.name for p in (tmp_path / "plots").glob("verify_*.png"))
    assert len(figures) == 3
    assert "verify_q0.png" in (tmp_path / "report.md").read_text()
