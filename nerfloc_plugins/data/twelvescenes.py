"""12-Scenes dataparser (``twelvescenes-data``).

Layout of a scene directory (e.g. ``apt1/kitchen/``)::

    info.txt        "key = value" lines: m_colorWidth, m_colorHeight, m_depthShift and
                    m_calibrationColorIntrinsic (row-major 4x4; also accepted in data/)
    split.txt       "sequenceK [frames=N] [start=S ; end=E]" lines; as in the 12-Scenes
                    protocol the first sequence is the test (query) split, the rest train
    data/frame-000000.color.jpg, .depth.png (uint16, units of 1/m_depthShift m),
    data/frame-000000.pose.txt (4x4 camera-to-world, OpenCV axes; "INF" = lost tracking)

Frames whose pose file holds INF values are skipped.
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
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise format_error(path, f"cannot read ({err.strerror}); expected 'key = value' lines") from err
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
        return numbers

    k = np.array(number_list("m_calibrationColorIntrinsic", 16)).reshape(4, 4)
    width = int(number_list("m_colorWidth", 1)[0])
    height = int(number_list("m_colorHeight", 1)[0])
    depth_shift = number_list("m_depthShift", 1)[0] if "m_depthShift" in info else 1000.0
    return Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], width, height), 1.0 / depth_shift


def read_test_range(path: Path) -> tuple[int, int]:
    """Inclusive frame-index range of the first sequence (the test split) from ``split.txt``."""
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except OSError as err:
        raise format_error(path, f"cannot read ({err.strerror}); expected 'sequence0 [frames=N] ...' lines") from err
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

    def read_frames(self, split: Split) -> list[PosedFrame]:
        root = self.config.data
        intrinsics, self.depth_unit_scale_factor = read_info(root)
        first, last = read_test_range(root / "split.txt")
        data_dir = root / "data"
        images = sorted(data_dir.glob("frame-*.color.*"))
        if not images:
            raise format_error(data_dir, "no frame-*.color.* images")
        frames = []
        for image_path in images:
            index = int(_FRAME_INDEX.search(image_path.name).group(1))
            if (first <= index <= last) != (split == "test"):
                continue
            frame = frame_from_pose_file(f"data/{image_path.name}", image_path, intrinsics)
            if frame is not None:
                frames.append(frame)
        return with_actual_image_size(frames)
