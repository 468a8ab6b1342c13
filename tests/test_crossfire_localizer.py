"""CrossFire end to end on a small rendered scene: train on CPU, then recover perturbed poses."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import recover_perturbed_poses

from nerfloc_plugins.localize.pipeline_config import PipelineConfig, RefineConfig
from nerfloc_plugins.methods.crossfire.crossfire_localizer import CrossFireLocalizer, CrossFireLocalizerConfig


@pytest.mark.slow
def test_crossfire_recovers_perturbed_training_poses(tmp_path):
    """Median error after localization well under the 7 cm / 3 deg perturbation.

    CPU training is not run-to-run reproducible (threaded scatter-adds in the hash grid's
    backward): about one run in four trained here ends with a median over 4.24 cm (one seen at
    5.05 cm) where the others reach ~2 cm.  The bound holds for one of two seeds; a map that
    cannot recover poses fails both."""
    from nerfloc_plugins.data.synthetic_scene import write_sevenscenes_scene

    scene = tmp_path / "scene"
    write_sevenscenes_scene(scene, width=128, height=96, frames_per_train_seq=12, frames_test=2, supersample=1)
    outcomes = []
    for seed in (42, 7):
        out = tmp_path / f"out-{seed}"
        cmd = [
            sys.executable, "-m", "nerfstudio.scripts.train", "crossfire-cpu", "--max-num-iterations", "1000",
            "--steps-per-save", "999", "--output-dir", str(out), "--experiment-name", "cf", "--timestamp", "t",
            "--machine.seed", str(seed), "--viewer.quit-on-train-completion", "True",
            "sevenscenes-data", "--data", str(scene),
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        assert result.returncode == 0, result.stderr[-3000:]
        localizer = CrossFireLocalizer(
            out / "cf" / "crossfire-cpu" / "t" / "config.yml", CrossFireLocalizerConfig(render_scale=2)
        )
        # 12 queries: the median of 4 varied too much (2.3 and 2.5 cm over 12 queries; one CI run: 3.9 cm over 4)
        config = PipelineConfig(refine=RefineConfig(iterations=2))
        errors = recover_perturbed_poses(localizer, localizer.map_frames()[::2], config)
        final_t = np.median([e[1][0] for e in errors])
        final_r = np.median([e[1][1] for e in errors])
        prior_t = np.median([e[0][0] for e in errors])
        prior_r = np.median([e[0][1] for e in errors])
        outcomes.append((seed, final_t, final_r, prior_t, prior_r))
        if final_t < 0.6 * prior_t and final_r < 0.5 * prior_r:
            break
    else:
        raise AssertionError(f"no seed recovered the poses: (seed, final m, final deg, prior m, prior deg) {outcomes}")
