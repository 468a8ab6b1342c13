"""Shared fixtures: tiny datasets written by the tests themselves."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nerfloc_plugins.data.synthetic_scene import look_at_c2w


def write_image(path: Path, width: int, height: int, seed: int = 0, suffix_format: str | None = None) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)).save(path, format=suffix_format)


def circle_poses(n: int, radius: float = 1.0, height: float = 1.0, phase: float = 0.0) -> list[np.ndarray]:
    """OpenCV c2w poses on a circle, looking at the origin."""
    out = []
    for i in range(n):
        a = phase + 2 * np.pi * i / n
        eye = np.array([radius * np.cos(a), radius * np.sin(a), height])
        out.append(look_at_c2w(eye, np.zeros(3)))
    return out


@pytest.fixture
def sevenscenes_dir(tmp_path: Path) -> Path:
    """2 train sequences (3 frames each) + 1 test sequence (2 frames), 64x48 images."""
    root = tmp_path / "chess"
    sequences = {1: circle_poses(3, phase=0.0), 2: circle_poses(3, phase=0.5), 3: circle_poses(2, phase=0.25)}
    for seq, seq_poses in sequences.items():
        for i, c2w in enumerate(seq_poses):
            stem = root / f"seq-{seq:02d}" / f"frame-{i:06d}"
            write_image(Path(f"{stem}.color.png"), 64, 48, seed=seq * 10 + i)
            depth = np.full((48, 64), 1500, dtype=np.uint16)
            depth[0, 0] = 65535
            depth[0, 1] = 0
            Image.fromarray(depth).save(f"{stem}.depth.png")
            np.savetxt(f"{stem}.pose.txt", c2w)
    (root / "TrainSplit.txt").write_text("sequence1\nsequence2\n")
    (root / "TestSplit.txt").write_text("sequence3\n")
    return root


def train_small_run(
    root: Path, name: str, size: tuple, frames: int, iterations: int, rays: int = 512, **scene_options
) -> Path:
    """Train nerfloc-nerfacto-cpu on a rendered scene written under ``root`` (``scene_options``:
    of ``write_sevenscenes_scene``, e.g. ``room="gallery"``); its config.yml."""
    from nerfloc_plugins.data.synthetic_scene import write_sevenscenes_scene

    scene = root / "scene"
    scene_options = {"frames_test": 2, **scene_options}
    write_sevenscenes_scene(
        scene, width=size[0], height=size[1], frames_per_train_seq=frames, supersample=1, **scene_options
    )
    out_dir = root / "out"
    cmd = [
        sys.executable, "-m", "nerfstudio.scripts.train", "nerfloc-nerfacto-cpu",
        "--max-num-iterations", str(iterations), "--steps-per-save", str(iterations - 1), "--output-dir", str(out_dir),
        "--experiment-name", name, "--timestamp", "t", "--viewer.quit-on-train-completion", "True",
        "--pipeline.datamanager.train-num-rays-per-batch", str(rays),
        "sevenscenes-data", "--data", str(scene),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return out_dir / name / "nerfloc-nerfacto-cpu" / "t" / "config.yml"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """config.yml of a 20-iteration nerfloc-nerfacto-cpu run on a tiny rendered scene (48x36)."""
    return train_small_run(tmp_path_factory.mktemp("tiny_run"), "tiny", (48, 36), frames=6, iterations=20)


@pytest.fixture(scope="session")
def small_nerf_run(tmp_path_factory) -> Path:
    """config.yml of a 300-iteration depth-supervised nerfloc-nerfacto-cpu run (64x48 images):
    opaque enough that rendered points are valid (NeRFMatch training needs covisible points)."""
    return train_small_run(tmp_path_factory.mktemp("small_nerf_run"), "small", (64, 48), frames=8, iterations=300)


@pytest.fixture(scope="session")
def gallery_map(tmp_path_factory) -> Path:
    """config.yml of a 400-iteration nerfloc-nerfacto-cpu map of the gallery room (80x60 images,
    2 x 15 loop frames + 24 close-ups of the first copies; queries: 4 + 4 facing a second copy)."""
    return train_small_run(tmp_path_factory.mktemp("gallery_map"), "gallery", (80, 60), frames=15, iterations=400,
                           rays=1024, room="gallery", frames_test=4, repeated_queries=4)  # fmt: skip


def train_pipeline_steps(config, steps: int):
    """Set up ``config.pipeline`` on the CPU (seeded) and return it with a function running
    ``n`` plain optimisation steps of its training losses (no schedulers) and returning each
    step's loss values (``[{name: float}]``)."""
    import torch
    from nerfstudio.engine.optimizers import Optimizers

    torch.manual_seed(0)
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    optimizers = Optimizers(config.optimizers, pipeline.get_param_groups())

    def run() -> list:
        history = []
        for step in range(steps):
            _, loss_dict, _ = pipeline.get_train_loss_dict(step)
            optimizers.zero_grad_all()
            sum(loss_dict.values()).backward()
            optimizers.optimizer_step_all()
            history.append({k: float(v.detach()) for k, v in loss_dict.items()})
        return history

    return pipeline, run


@pytest.fixture
def pipeline_trainer():
    """:func:`train_pipeline_steps` for tests."""
    return train_pipeline_steps


class FixedPrior:
    """Prior source returning a given pose for every query."""

    verifies = False

    def __init__(self, frame):
        self.frame = frame

    def __call__(self, query, image):
        return [self.frame]


def recover_perturbed_poses(localizer, frames, config) -> list:
    """Localize each frame from its pose moved by ~7 cm / ~3 deg; ``[(prior_err, final_err)]``
    with errors ``(metres, degrees)`` (``inf`` where localization failed)."""
    from dataclasses import replace

    import torch

    from nerfloc_plugins.geometry.pose_errors import pose_error
    from nerfloc_plugins.geometry.poses import invert_rigid
    from nerfloc_plugins.localize.pipeline import localize_query
    from nerfloc_plugins.localize.stages.refine import perturb

    errors = []
    for frame in frames:
        xi = torch.tensor([0.05, -0.04, 0.03, 0.03, -0.03, 0.04])
        start = np.eye(4)
        start[:3] = perturb(torch.tensor(frame.c2w[:3]).float(), xi).double().numpy()
        res = localize_query(localizer, frame, FixedPrior(replace(frame, c2w=start)), config)
        prior_err = pose_error(invert_rigid(start), invert_rigid(frame.c2w))
        err = pose_error(res.w2c, invert_rigid(frame.c2w)) if res.w2c is not None else (np.inf, np.inf)
        errors.append((prior_err, err))
    return errors
