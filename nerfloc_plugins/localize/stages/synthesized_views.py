"""Views nobody captured: the map renders a retrieval database at poses it synthesises.

A query whose nearby mapping views all look elsewhere has nothing to retrieve among the real
images; a field renders any viewpoint.  At every ``stride``-th mapping frame the camera is
turned about the scene's vertical axis to ``headings`` new directions (multiples of
360/(headings+1) deg; pitch, roll and position kept), and the trained field renders RGB and z-depth there with the mapping
camera.  These views join the retrieval database and are matched like mapping frames: the
classical baseline lifts their features with the rendered depth, field localizers render their
own features at the pose.  Renderings are cached beside the run (``<run>/synthesized_views/``,
keyed by the poses, camera, samples per ray and checkpoint), so they are rendered once per map.

Conventions: camera-to-world poses in the dataset's metric frame, OpenCV axes (x right, y
down, z forward); "up" is the mean of the mapping cameras' -y axes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
from rich.progress import Progress

from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.nerf.field_renderer import FieldRenderer
from nerfloc_plugins.nerf.render_sampling import RenderSampling
from nerfloc_plugins.utils.atomic import atomic_path

SYNTHESIZED_PREFIX = "synthesized/"
"""Name prefix of synthesized frames (``synthesized/000012``): never a dataset image."""


@dataclass
class SynthesizedViewsConfig:
    map: Optional[Path] = None
    """config.yml of the trained run that renders the views (default: the localizer's own field).
    Views are synthesised only when ``headings`` > 0."""
    headings: int = 0
    """New viewing directions per synthesised position: the mapping frame turned about the vertical
    by multiples of 360/(headings+1) deg (0: off)."""
    stride: int = 5
    """Synthesise around every ``stride``-th mapping frame."""
    sampling: RenderSampling = field(default_factory=RenderSampling)
    """Samples per ray of the renderings (``.samples``, ``.band-samples``: see render_sampling)."""


@dataclass
class SynthesizedView:
    frame: PosedFrame
    """Its pose and camera; ``image_path`` is empty (nothing on disk)."""
    rgb: np.ndarray
    """``(H, W, 3)`` float RGB in [0, 1]."""
    depth: np.ndarray
    """``(H, W)`` z-depth in metres."""


def up_direction(map_frames: Sequence[PosedFrame]) -> np.ndarray:
    """Unit world "up": the mean of the cameras' -y axes (OpenCV)."""
    up = -np.mean([f.c2w[:3, 1] for f in map_frames], axis=0)
    norm = np.linalg.norm(up)
    if norm < 1e-6:
        raise ValueError("cannot find the vertical from the mapping cameras (their y axes cancel out)")
    return up / norm


def rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation by ``angle`` radians about unit ``axis``."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def synthesized_poses(map_frames: Sequence[PosedFrame], headings: int, stride: int) -> List[np.ndarray]:
    """``headings`` c2w poses at each ``stride``-th mapping frame's position, turned about the
    vertical by multiples of 360/``headings`` deg (the frame's own heading, turn 0, is left out)."""
    if headings <= 0:
        return []
    if stride <= 0:
        raise ValueError(f"--retrieval.synthesize.stride {stride}: expected a positive integer")
    up = up_direction(map_frames)
    poses = []
    for frame in map_frames[::stride]:
        for turn in range(1, headings + 1):
            angle = 2 * np.pi * turn / (headings + 1)
            c2w = frame.c2w.copy()
            c2w[:3, :3] = rotation_about(up, angle) @ frame.c2w[:3, :3]
            poses.append(c2w)
    return poses


def cache_key(poses: Sequence[np.ndarray], frame: PosedFrame, sampling: RenderSampling, checkpoint: str) -> str:
    digest = hashlib.sha1()
    digest.update(np.ascontiguousarray(np.array(poses), dtype=np.float64).tobytes())
    intr = frame.intrinsics
    digest.update(repr((intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height, sampling, checkpoint)).encode())
    return digest.hexdigest()[:16]


def synthesize_views(
    renderer: FieldRenderer, map_frames: Sequence[PosedFrame], config: SynthesizedViewsConfig
) -> List[SynthesizedView]:
    """Render (or read back from the run's cache) the views of :func:`synthesized_poses`."""
    poses = synthesized_poses(map_frames, config.headings, config.stride)
    if not poses:
        return []
    camera = map_frames[0]
    cache_dir = renderer.run_dir / "synthesized_views"
    cache = cache_dir / f"{cache_key(poses, camera, config.sampling, str(renderer.checkpoint))}.npz"
    frames = [
        replace(camera, name=f"{SYNTHESIZED_PREFIX}{i:06d}", image_path=Path(), depth_path=None, c2w=c2w)
        for i, c2w in enumerate(poses)
    ]
    if cache.is_file():
        with np.load(cache) as stored:
            return [SynthesizedView(f, rgb, depth) for f, rgb, depth in zip(frames, stored["rgb"], stored["depth"])]
    rgbs, depths = [], []
    with Progress() as progress:
        task = progress.add_task("synthesizing views", total=len(poses))
        for frame in frames:
            out = renderer.render(frame.c2w, frame.intrinsics, sampling=config.sampling)
            rgbs.append(np.clip(out["rgb"], 0, 1).astype(np.float32))
            depths.append(out["depth"].astype(np.float32))
            progress.advance(task)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, rgb=np.stack(rgbs), depth=np.stack(depths))
    return [SynthesizedView(f, rgb, depth) for f, rgb, depth in zip(frames, rgbs, depths)]
