"""12-Scenes dataparser (``twelvescenes-data``).

Layout of a scene directory (e.g. ``apt1/kitchen/``)::

    info.txt        "key = value" lines: m_colorWidth, m_colorHeight, m_depthShift and
                    m_calibrationColorIntrinsic (row-major 4x4; also accepted in data/)
    split.txt       "sequenceK [frames=N] [start=S ; end=E]" lines; as in the 12-Scenes
                    protocol the first sequence is the test (query) split, the rest train
    data/frame-000000.color.jpg, .depth.png (uint16, units of 1/m_depthShift m),
    data/frame-000000.pose.txt (4x4 camera-to-world, OpenCV axes; "INF" = lost tracking)

Frames whose pose file holds INF values (lost tracking) are skipped and counted by the dataset check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Type

import numpy as np

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

_FRAME_INDEX = re.compile(r"frame-(\d+)\.color\.\w+$")


@dataclass
class TwelveScenesDataParserConfig(PosedFramesDataParserConfig):
    """12-Scenes layout."""

    _target: Type = field(default_factory=lambda: TwelveScenesDataParser)


def read_info(root: Path) -> tuple[Intrinsics, float]:
    """Colour intrinsics and metres-per-depth-unit from ``info.txt``."""
    path = root / "info.txt"
    if not path.exists() and (root / "data" / "info.txt").exists():
        path = root / "data" / "info.txt"
    lines = read_lines(path, "calibration file ('key = value' lines)")
    info: dict[str, tuple[str, int]] = {}
    for line_no, line in enumerate(lines, start=1):
        if "=" in line:
            key, value = line.split("=", 1)
            info[key.strip()] = (value.strip(), line_no)

    def number_list(key: str, count: int) -> list[float]:
        if key not in info:
            raise format_error(path, f"missing '{key}'")
        value, line_no = info[key]
        try:
            numbers = [float(v) for v in value.split()]
        except ValueError as err:
            raise format_error(path, f"'{key}' must be numbers, got {value!r}", line_no) from err
        if len(numbers) != count:
            raise format_error(path, f"'{key}' must have {count} numbers, got {len(numbers)}", line_no)
        if not all(np.isfinite(numbers)):
            raise format_error(path, f"'{key}' must be finite numbers, got {value!r}", line_no)
        return numbers

    def positive(key: str) -> float:
        number = number_list(key, 1)[0]
        if number <= 0:
            raise format_error(path, f"'{key}' must be positive, got {number:g}", info[key][1])
        return number

    k = np.array(number_list("m_calibrationColorIntrinsic", 16)).reshape(4, 4)
    width = int(positive("m_colorWidth"))
    height = int(positive("m_colorHeight"))
    depth_shift = positive("m_depthShift") if "m_depthShift" in info else 1000.0
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise format_error(
            path,
            "'m_calibrationColorIntrinsic' must have positive focal lengths",
            info["m_calibrationColorIntrinsic"][1],
        )
    return Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], width, height), 1.0 / depth_shift


def read_test_range(path: Path) -> tuple[int, int]:
    """Inclusive frame-index range of the first sequence (the test split) from ``split.txt``."""
    lines = [line for line in read_lines(path, "split file ('sequence0 [frames=N] ...' lines)") if line.strip()]
    if not lines:
        raise format_error(path, "empty; expected 'sequence0 [frames=N] [start=S ; end=E]'")
    first = lines[0]
    start, end = re.search(r"start\s*=\s*(\d+)", first), re.search(r"end\s*=\s*(\d+)", first)
    if start and end:
        return int(start.group(1)), int(end.group(1))
    frames = re.search(r"frames\s*=\s*(\d+)", first)
    if frames is None:
        raise format_error(path, f"expected 'frames=N' or 'start=S ; end=E', got {first.strip()!r}", 1)
    return 0, int(frames.group(1)) - 1


@dataclass
class TwelveScenesDataParser(PosedFramesDataParser):
    """Reads ``data/`` frames; the first sequence in ``split.txt`` is the query split."""

    config: TwelveScenesDataParserConfig
    layout: str = "twelvescenes-data"
    skips_unknown_poses: bool = True

    def read_frames(self, split: Split) -> list[PosedFrame]:
        root = self.config.data
        intrinsics, self.depth_unit_scale_factor = read_info(root)
        first, last = read_test_range(root / "split.txt")
        data_dir = root / "data"
        images = sorted(p for p in data_dir.glob("frame-*.color.*") if _FRAME_INDEX.search(p.name))
        if not images:
            raise format_error(data_dir, "no frame-*.color.* images")
        frames = []
        for image_path in images:
            index = int(_FRAME_INDEX.search(image_path.name).group(1))
            if (first <= index <= last) != (split == "test"):
                continue
            frames.append(frame_from_pose_file(f"data/{image_path.name}", image_path, intrinsics))
        return with_actual_image_size(frames)
