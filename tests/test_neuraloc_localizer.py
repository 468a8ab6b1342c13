"""NeuraLoc end to end on a small rendered scene: train on CPU, then recover perturbed poses."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.metrics import pose_error
from nerfloc_plugins.localize.neuraloc_localizer import NeuraLocLocalizer, NeuraLocLocalizerConfig
from nerfloc_plugins.localize.pipeline import PipelineConfig, RefineConfig, localize_query
from nerfloc_plugins.localize.refine import perturb


class FixedPrior:
    def __init__(self, frame):
        self.frame = frame

    def __call__(self, query, image):
        return [self.frame]


@pytest.mark.slow
def test_neuraloc_recovers_perturbed_training_poses(tmp_path, monkeypatch):
    from nerfloc_plugins.data.synthetic_scene import write_sevenscenes_scene

    monkeypatch.setenv("NERFLOC_CACHE_DIR", str(tmp_path / "cache"))
    scene = tmp_path / "scene"
    write_sevenscenes_scene(scene, width=128, height=96, frames_per_train_seq=12, frames_test=2, supersample=1)
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "nerfstudio.scripts.train", "neuraloc-cpu", "--max-num-iterations", "800",
        "--steps-per-save", "799", "--output-dir", str(out), "--experiment-name", "nl", "--timestamp", "t",
        "--viewer.quit-on-train-completion", "True", "sevenscenes-data", "--data", str(scene),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr[-3000:]
    localizer = NeuraLocLocalizer(
        out / "nl" / "neuraloc-cpu" / "t" / "config.yml", NeuraLocLocalizerConfig(render_stride=2)
    )
    # the map stores weights only: two hash grids and the decoders
    assert 1.0 < localizer.map_size_bytes() / 2**20 < 16.0
    query = localizer.describe_query(localizer.map_frames()[0])
    assert query.context is not None and query.context.shape[0] == len(query.keypoints) > 20
    config = PipelineConfig(refine=RefineConfig(iterations=2))
    errors = []
    for frame in localizer.map_frames()[::2]:
        xi = torch.tensor([0.05, -0.04, 0.03, 0.03, -0.03, 0.04])  # ~7 cm, ~3 deg
        start = np.eye(4)
        start[:3] = perturb(torch.tensor(frame.c2w[:3]).float(), xi).double().numpy()
        res = localize_query(localizer, frame, FixedPrior(replace(frame, c2w=start)), config)
        prior_err = pose_error(invert_rigid(start), invert_rigid(frame.c2w))
        err = pose_error(res.w2c, invert_rigid(frame.c2w)) if res.w2c is not None else (np.inf, np.inf)
        errors.append((prior_err, err))
    final_t = np.median([e[1][0] for e in errors])
    final_r = np.median([e[1][1] for e in errors])
    prior_t = np.median([e[0][0] for e in errors])
    prior_r = np.median([e[0][1] for e in errors])
    # measured here: 4.5 cm / 1.9 deg from 7.1 cm / 3.3 deg (12 queries, 800 CPU iterations)
    assert all(np.isfinite(e[1][0]) for e in errors), errors
    assert final_t < 0.75 * prior_t and final_r < 0.75 * prior_r, errors
