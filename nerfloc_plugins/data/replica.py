"""Replica dataparser (``replica-data``), NICE-SLAM layout.

Layout of a sequence directory (e.g. ``Replica/room0/``)::

    results/frame000000.jpg       RGB (1200x680)
    results/depth000000.png       uint16 depth, metres = value / 6553.5, 0 = invalid
    traj.txt                      one camera-to-world pose per line, 16 numbers row-major,
                                  OpenCV axes, metres

Intrinsics default to NICE-SLAM's Replica camera (fx = fy = 600, cx = 599.5, cy = 339.5
for 1200x680) and are rescaled to the stored images.  Queries come from a second sequence
of the same scene (``--test-data``, the protocol of NeuraLoc / PNeRFLoc) or, without it,
from every ``holdout-every``-th frame, which is then left out of the training split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Type

import numpy as np

from nerfloc_plugins.data.frames import (
    Intrinsics,
    PosedFrame,
    format_error,
    with_actual_image_size,
)
from nerfloc_plugins.data.posed_frames_dataparser import (
    PosedFramesDataParser,
    PosedFramesDataParserConfig,
    Split,
)
from nerfloc_plugins.data.text_files import read_lines


@dataclass
class ReplicaDataParserConfig(PosedFramesDataParserConfig):
    """NICE-SLAM Replica layout."""

    _target: Type = field(default_factory=lambda: ReplicaDataParser)
    test_data: Optional[Path] = None
    """Second sequence (same layout) used as the query split."""
    holdout_every: int = 10
    """Without ``test_data``: every n-th frame is a query and not used for training."""
    fx: float = 600.0
    fy: float = 600.0
    cx: float = 599.5
    cy: float = 339.5
    intrinsics_width: int = 1200
    intrinsics_height: int = 680
    depth_scale: float = 6553.5
    """Stored depth units per metre."""


def read_trajectory(path: Path) -> list[tuple[np.ndarray, int]]:
    """``traj.txt`` -> ``(4x4 c2w, line number)`` per pose line (checked by the dataset check)."""
    poses = []
    for line_no, line in enumerate(read_lines(path, "trajectory (16 numbers per line)"), start=1):
        if not line.strip():
            continue
        try:
            values = np.array([float(v) for v in line.split()])
        except ValueError as err:
            raise format_error(path, "expected 16 numbers (row-major 4x4 camera-to-world)", line_no) from err
        if values.size != 16:
            raise format_error(path, f"expected 16 numbers (row-major 4x4 camera-to-world), got {values.size}", line_no)
        poses.append((values.reshape(4, 4), line_no))
    return poses


@dataclass
class ReplicaDataParser(PosedFramesDataParser):
    """Reads one NICE-SLAM sequence (plus an optional query sequence)."""

    config: ReplicaDataParserConfig
    layout: str = "replica-data"

    def _sequence(self, seq_dir: Path, name_prefix: str) -> list[PosedFrame]:
        cfg = self.config
        intrinsics = Intrinsics(cfg.fx, cfg.fy, cfg.cx, cfg.cy, cfg.intrinsics_width, cfg.intrinsics_height)
        images = [
            p
            for p in sorted((seq_dir / "results").glob("frame*.jpg")) + sorted((seq_dir / "results").glob("frame*.png"))
            if p.stem[len("frame") :].isdigit()
        ]
        traj = seq_dir / "traj.txt"
        poses = read_trajectory(traj)
        if not images:
            raise format_error(seq_dir / "results", "no frameNNNNNN.jpg images")
        frames = []
        for image_path in images:
            digits = image_path.stem[len("frame") :]
            if int(digits) >= len(poses):
                raise format_error(
                    traj, f"{len(poses)} poses, but image {image_path.name} needs pose line {int(digits) + 1}"
                )
            c2w, line_no = poses[int(digits)]
            frames.append(
                PosedFrame(
                    name=f"{name_prefix}results/{image_path.name}",
                    image_path=image_path,
                    c2w=c2w,
                    intrinsics=intrinsics,
                    depth_path=seq_dir / "results" / f"depth{digits}.png",
                    pose_file=f"{traj}:{line_no}",
                )
            )
        return with_actual_image_size(frames)

    def read_frames(self, split: Split) -> list[PosedFrame]:
        self.depth_unit_scale_factor = 1.0 / self.config.depth_scale
        if self.config.test_data is not None:
            if split == "train":
                return self._sequence(self.config.data, "")
            return self._sequence(self.config.test_data, f"{self.config.test_data.name}/")
        every = self.config.holdout_every
        frames = self._sequence(self.config.data, "")
        return [f for i, f in enumerate(frames) if (i % every == every - 1) == (split == "test")]
