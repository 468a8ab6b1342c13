"""7-Scenes dataparser (``sevenscenes-data``).

Layout of a scene directory::

    TrainSplit.txt, TestSplit.txt     lines "sequenceN" -> folder seq-0N
    seq-01/frame-000000.color.png     RGB
    seq-01/frame-000000.depth.png     uint16 depth in millimetres, 65535 (and 0) = invalid
    seq-01/frame-000000.pose.txt      4x4 camera-to-world, OpenCV axes, metres

Intrinsics are not stored with the dataset: they default to the Kinect RGB camera
(f = 525 px, principal point at the centre, for 640x480 images) and are rescaled to the
stored image size.  The depth camera of 7-Scenes is not registered to the RGB camera; its
maps are used as given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Type

from nerfloc_plugins.data.frames import (
    Intrinsics,
    PosedFrame,
    format_error,
    frame_from_pose_file,
    with_actual_image_size,
)
from nerfloc_plugins.data.posed_frames_dataparser import (
    PosedFramesDataParser,
    PosedFramesDataParserConfig,
    Split,
)
from nerfloc_plugins.data.text_files import read_lines

_SEQUENCE_LINE = re.compile(r"^sequence\s*(\d+)$", re.IGNORECASE)


@dataclass
class SevenScenesDataParserConfig(PosedFramesDataParserConfig):
    """7-Scenes layout (also used by nerfloc's rendered example scene)."""

    _target: Type = field(default_factory=lambda: SevenScenesDataParser)
    fx: float = 525.0
    """Focal length x in pixels, for images of ``intrinsics_width`` pixels."""
    fy: float = 525.0
    """Focal length y in pixels, for images of ``intrinsics_height`` pixels."""
    cx: float = 320.0
    """Principal point x in pixels."""
    cy: float = 240.0
    """Principal point y in pixels."""
    intrinsics_width: int = 640
    """Image width the intrinsics above refer to (rescaled to the stored images)."""
    intrinsics_height: int = 480
    """Image height the intrinsics above refer to."""


def read_split_file(path: Path) -> list[str]:
    """``TrainSplit.txt`` / ``TestSplit.txt`` -> sequence folder names (``seq-0N``)."""
    folders: dict = {}
    for line_no, line in enumerate(read_lines(path, "split file (lines 'sequenceN')"), start=1):
        if not line.strip():
            continue
        match = _SEQUENCE_LINE.match(line.strip())
        if match is None:
            raise format_error(path, f"expected a line 'sequenceN', got {line.strip()[:80]!r}", line_no)
        folder = f"seq-{int(match.group(1)):02d}"
        if folder in folders:
            raise format_error(path, f"{line.strip()!r} is listed twice (first at line {folders[folder]})", line_no)
        folders[folder] = line_no
    if not folders:
        raise format_error(path, "lists no sequence (expected lines 'sequenceN')")
    return list(folders)


@dataclass
class SevenScenesDataParser(PosedFramesDataParser):
    """Reads 7-Scenes sequences listed in the split files."""

    config: SevenScenesDataParserConfig
    depth_unit_scale_factor: float = 1e-3
    depth_invalid_values: tuple = (0.0, 65535.0)
    layout: str = "sevenscenes-data"

    def read_frames(self, split: Split) -> list[PosedFrame]:
        root = self.config.data
        split_file = root / ("TrainSplit.txt" if split == "train" else "TestSplit.txt")
        cfg = self.config
        intrinsics = Intrinsics(cfg.fx, cfg.fy, cfg.cx, cfg.cy, cfg.intrinsics_width, cfg.intrinsics_height)
        frames = []
        for folder in read_split_file(split_file):
            seq_dir = root / folder
            if not seq_dir.is_dir():
                raise format_error(split_file, f"sequence folder {seq_dir} does not exist")
            images = sorted(seq_dir.glob("frame-*.color.png"))
            if not images:
                raise format_error(seq_dir, "no frame-*.color.png images")
            frames += [frame_from_pose_file(f"{folder}/{p.name}", p, intrinsics) for p in images]
        return with_actual_image_size(frames)
