"""Render verification with a trained map (slow: a 400-iteration map of the gallery room at 80x60,
the session's ``gallery_map``).

A first stage forced to return a wrong-place pose (most of its 2D-3D matches point at the room
turned half a turn, where the same pictures hang, the rest at the true place) is overruled by the
trained map; the true pose outscores a 2 m shifted pose; ``ns-localize-baseline --verify.map``
writes the verification columns and metrics, and resumes them; the Python API verifies."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nerfloc_plugins.data.synthetic_scene import gallery_room, nearest_hits
from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.interface.localizer import QueryDescription, SceneCoordinateLocalizer
from nerfloc_plugins.localize.pipeline import localize_with_cascade
from nerfloc_plugins.localize.pipeline_config import PipelineConfig
from nerfloc_plugins.localize.stages.verification import RenderVerifier, VerifyConfig
from nerfloc_plugins.nerf.field_renderer import FieldRenderer

pytestmark = pytest.mark.slow

HALF_TURN = np.diag([-1.0, -1.0, 1.0, 1.0])
"""The gallery turned half a turn about the vertical axis through its centre (its copies swap)."""


class ForcedWrongPlace(SceneCoordinateLocalizer):
    """A scene-coordinate stage whose matches are 70 % consistent with a wrong place (the true
    place's points turned half a turn) and 30 % with the true place: its PnP pose is confidently
    wrong, the true one is only a further model of the same matches."""

    name = "forced"

    def __init__(self, frames) -> None:
        self.frames = {f.name: f for f in frames}
        self.current = None

    def map_frames(self):
        return list(self.frames.values())

    def query_frames(self, split):
        return list(self.frames.values())

    def describe_query(self, frame):
        from nerfloc_plugins.data.images import load_rgb

        self.current = frame  # the pipeline describes a query, then regresses its matches
        return QueryDescription(np.zeros((0, 2)), None, frame.intrinsics, image=load_rgb(frame.image_path))

    def regress_correspondences(self, query):
        frame = self.current
        intr = query.intrinsics
        rng = np.random.default_rng(0)
        uv = np.stack([rng.uniform(1, intr.width - 1, 200), rng.uniform(1, intr.height - 1, 200)], axis=1)
        rays = np.concatenate([(uv - [intr.cx, intr.cy]) / [intr.fx, intr.fy], np.ones((200, 1))], axis=1)
        dirs = rays @ frame.c2w[:3, :3].T
        depth, _, _ = nearest_hits(gallery_room(), np.broadcast_to(frame.c2w[:3, 3], dirs.shape), dirs)
        points = frame.c2w[:3, 3] + dirs * depth[:, None]
        wrong = np.arange(200) < 140
        points[wrong] = points[wrong] @ HALF_TURN[:3, :3].T
        return uv, points


def test_a_forced_wrong_place_pose_is_overruled_by_a_trained_map(gallery_map):
    renderer = FieldRenderer(gallery_map)
    frames = renderer.frames("train")[::4] + renderer.frames("test")
    config = PipelineConfig(verify=VerifyConfig(enabled=True))
    verifier = RenderVerifier(renderer, config.verify)
    stage = ForcedWrongPlace(frames)
    true_errors, first_errors, margins = [], [], []
    for frame in frames:
        result = localize_with_cascade([(stage, None)], frame, config, None, verifier)
        v = result.verification
        truth = invert_rigid(frame.c2w)
        first_errors.append(pose_error(v.hypotheses[0].w2c, truth)[0])
        true_errors.append(pose_error(result.w2c, truth)[0])
        margins.append(v.margin)
    assert min(first_errors) > 0.5, first_errors  # the stage's own pose is at the wrong place
    assert max(true_errors) < 0.01, (true_errors, margins)  # the map chose the true place every time
    assert min(margins) > 0.05


def test_the_true_pose_outscores_a_2m_shifted_pose_with_a_trained_map(gallery_map):
    renderer = FieldRenderer(gallery_map)
    verifier = RenderVerifier(renderer, VerifyConfig(enabled=True))
    wins, gaps = 0, []
    frames = renderer.frames("train")[::4] + renderer.frames("test")
    from nerfloc_plugins.data.images import load_rgb

    for frame in frames:
        small, camera = verifier.query_at_render_size(load_rgb(frame.image_path), frame.intrinsics)
        true_score, _ = verifier.score_pose(invert_rigid(frame.c2w), small, camera)
        for axis in (0, 2):  # 2 m sideways, 2 m forwards
            shifted = frame.c2w.copy()
            shifted[:3, 3] += 2.0 * frame.c2w[:3, axis]
            shift_score, _ = verifier.score_pose(invert_rigid(shifted), small, camera)
            wins += true_score > shift_score
            gaps.append(true_score - shift_score)
    assert wins == 2 * len(frames), gaps
    assert np.median(gaps) > 0.2


def test_ns_localize_baseline_verify_map_writes_and_resumes_verification(gallery_map, tmp_path):
    scene = Path(gallery_map).parents[4] / "scene"
    out = tmp_path / "verified"
    cmd = [
        sys.executable, "-m", "nerfloc_plugins.scripts.localize_baseline", "--data", str(scene),
        "--output-dir", str(out), "--verify.map", str(gallery_map),
        "--split", "train", "--max-queries", "6", "--sift.contrast-threshold", "0.01",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "per_query.csv")))
    metrics = json.loads((out / "metrics.json").read_text())
    assert "verified by nerfloc-nerfacto-cpu map" in metrics["method"]
    localized = [r for r in rows if r["status"] != "failed"]
    assert len(rows) == 6 and localized
    for r in localized:  # mapping frames: the map renders them well, their poses are right
        assert r["status"] == "localized" and float(r["verify_score"]) > 0.5, r
        assert int(r["hypotheses"]) >= 1 and float(r["translation_cm"]) < 5
    assert metrics["verification"]["num_verified_queries"] == len(localized)
    assert metrics["verification"]["num_unverified"] == 0 and metrics["verification"]["wrong_place_confident"] == 0
    assert metrics["timings"]["render_verify"]["mean_s"] > 0
    # a rerun resumes every query with its verification
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "resuming: 6 finished queries" in again.stdout, again.stdout[-2000:]
    assert list(csv.DictReader(open(out / "per_query.csv")))[0]["verify_score"] == rows[0]["verify_score"]


def test_python_api_verifies_with_a_map(gallery_map):
    from nerfloc_plugins import load_localizer
    from nerfloc_plugins.features.local_features import SiftConfig
    from nerfloc_plugins.localize.pipeline_config import best_baseline_pipeline

    scene = Path(gallery_map).parents[4] / "scene"
    pipeline = replace(best_baseline_pipeline(), verify=VerifyConfig(map=Path(gallery_map)))
    loc = load_localizer(scene, pipeline=pipeline, sift=SiftConfig(contrast_threshold=0.01))
    frame = loc.localizer.map_frames()[3]
    result = loc.localize(frame.image_path, camera=frame.intrinsics)
    assert result.status == "localized" and result.verify_score > 0.5, result
    assert pose_error(result.w2c, invert_rigid(frame.c2w))[0] < 0.05
