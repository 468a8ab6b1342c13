"""NeuraLoc end to end on a small rendered scene: train on CPU, then recover perturbed poses."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import recover_perturbed_poses

from nerfloc_plugins.localize.pipeline_config import PipelineConfig, RefineConfig
from nerfloc_plugins.methods.neuraloc.neuraloc_localizer import NeuraLocLocalizer, NeuraLocLocalizerConfig


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
    errors = recover_perturbed_poses(localizer, localizer.map_frames()[::2], config)
    final_t = np.median([e[1][0] for e in errors])
    final_r = np.median([e[1][1] for e in errors])
    prior_t = np.median([e[0][0] for e in errors])
    prior_r = np.median([e[0][1] for e in errors])
    # measured here: 4.5 cm / 1.9 deg, and in another training run 5.4 cm, from 7.1 cm / 3.3 deg (12 queries,
    # 800 CPU iterations; CPU training is not reproducible run to run): the bound is a 20 % improvement
    assert all(np.isfinite(e[1][0]) for e in errors), errors
    assert final_t < 0.8 * prior_t and final_r < 0.8 * prior_r, errors
