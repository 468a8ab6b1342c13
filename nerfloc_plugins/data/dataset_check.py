"""Pre-flight check of a dataset split: every frame's image, pose and depth map, once, before any
map is built or query is run.

What is checked (headers and file ends only, plus a few decoded depth maps, so a 4000-frame
7-Scenes split takes about a second):

* image: exists, is not empty, its header opens, the file is complete (a PNG ends with its
  ``IEND`` chunk, a JPEG with its end-of-image marker), its size is the frame's camera size;
* pose: finite, a rotation (orthonormal, det +1; re-orthonormalised), the camera centre within
  ``max_translation`` units;
* depth: when any frame of the split has a depth map, every frame must have its own (never a
  silent switch of the whole map to no depth); each one opens, is complete, is single-channel
  16-bit (PNG) or a 2-D number array (``.npy``), all share one size whose aspect ratio is the
  image's; up to :data:`UNIT_SAMPLE` maps are decoded and their median valid depth must be a
  plausible distance in metres (catches a wrong unit, e.g. metres read as millimetres);
* names: each frame once (a split file listing a sequence twice doubles it).

Policy: a bad frame is an error listing every problem (file and what was expected); with
``--bad-frames skip`` bad frames are left out and their number reported.  Frames with an
unknown pose in datasets where that is the layout's own convention (12-Scenes ``INF`` poses,
Cambridge entries without a usable quaternion) are always skipped and reported.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, List, Literal, Optional, Sequence, Tuple

import numpy as np
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image

from nerfloc_plugins.data.errors import DatasetFormatError
from nerfloc_plugins.data.frames import PosedFrame, load_depth_meters, orthonormalised, pose_problem

BadFramePolicy = Literal["error", "skip"]

UNIT_SAMPLE = 8
"""Depth maps decoded per split for the unit check."""
PLAUSIBLE_MEDIAN_DEPTH_M = (0.05, 500.0)
"""Median valid depth, in metres, a depth map of a real or rendered scene falls in."""
LISTED = 12
"""Problems listed in an error message (the rest are counted)."""

_PNG_END = b"IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"


@dataclass(frozen=True)
class FrameProblem:
    """One problem of one frame: the file it is in and what was expected."""

    frame: str
    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


def file_end_problem(path: Path) -> Optional[str]:
    """Why ``path`` (PNG / JPEG) is cut short, or ``None``: its last bytes must be the format's end marker."""
    suffix = path.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        return None
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 4096))
        tail = handle.read()
    if suffix == ".png" and not tail.rstrip(b"\x00").endswith(_PNG_END):
        return "PNG file is truncated (no IEND chunk at its end)"
    if suffix in (".jpg", ".jpeg") and _JPEG_END not in tail:
        return "JPEG file is truncated (no end-of-image marker)"
    return None


def image_problems(path: Path, expected_size: Tuple[int, int]) -> List[str]:
    """Problems of a colour image: missing, empty, unreadable header, truncated, wrong size."""
    if not path.is_file():
        return ["image not found"]
    if path.stat().st_size == 0:
        return ["image file is empty (0 bytes)"]
    try:
        with Image.open(path) as img:
            size = img.size
    except (OSError, ValueError) as err:
        return [f"cannot read image ({err})"]
    problems = [p for p in [file_end_problem(path)] if p]
    if tuple(size) != tuple(expected_size):
        problems.append(f"image is {size[0]}x{size[1]}, expected {expected_size[0]}x{expected_size[1]} like its camera")
    return problems


def depth_header(path: Path) -> Tuple[Optional[Tuple[int, int]], List[str]]:
    """``((width, height), problems)`` of a depth map from its header."""
    if not path.is_file():
        return None, [f"no depth map (expected {path.name}; the split's other frames have theirs)"]
    if path.stat().st_size == 0:
        return None, ["depth map file is empty (0 bytes)"]
    if path.suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            return None, [f"cannot read depth array ({err})"]
        if array.ndim != 2 or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            return None, [f"depth array is {array.dtype} of shape {array.shape}; expected a 2-D number array"]
        return (int(array.shape[1]), int(array.shape[0])), []
    try:
        with Image.open(path) as img:
            size, mode = img.size, img.mode
    except (OSError, ValueError) as err:
        return None, [f"cannot read depth map ({err})"]
    problems = [p for p in [file_end_problem(path)] if p]
    if mode not in ("I;16", "I;16B", "I;16L", "I"):
        problems.append(
            f"depth map is {mode} ({Image.getmodebands(mode) * 8}-bit); expected a single-channel 16-bit PNG"
        )
    return size, problems


def duplicate_problems(frames: Sequence[PosedFrame]) -> List[FrameProblem]:
    counts = Counter(f.name for f in frames)
    return [
        FrameProblem(name, name, f"frame listed {n} times (each frame once; is a split line repeated?)")
        for name, n in counts.items()
        if n > 1
    ]


def check_split(
    frames: Sequence[PosedFrame],
    *,
    what: str,
    policy: BadFramePolicy,
    max_translation: float,
    depth_unit_scale: float,
    depth_invalid_values: Iterable[float],
    skip_unknown_poses: bool = False,
    check_depth_unit: bool = True,
) -> List[PosedFrame]:
    """The usable frames of one split (poses re-orthonormalised; ``depth_path`` ``None`` for every
    frame when none has a depth map); raises :class:`DatasetFormatError` listing every problem
    unless ``policy`` is ``"skip"`` (``what`` names the split in messages, e.g.
    ``"sevenscenes-data DIR train"``)."""
    problems: List[FrameProblem] = duplicate_problems(frames)
    unknown: List[str] = []
    has_depth = any(f.depth_path is not None and f.depth_path.exists() for f in frames)
    depth_sizes: dict = {}
    checked: List[PosedFrame] = []
    for frame in frames:
        own = [FrameProblem(frame.name, str(frame.image_path), p) for p in frame.problems]
        if frame.c2w is not None:
            problem = pose_problem(frame.c2w, max_translation)
            if problem is not None and skip_unknown_poses and not np.all(np.isfinite(frame.c2w)):
                unknown.append(frame.name)
                continue
            if problem is not None:
                own.append(FrameProblem(frame.name, frame.pose_file or frame.name, problem))
        intr = frame.intrinsics
        own += [
            FrameProblem(frame.name, str(frame.image_path), p)
            for p in image_problems(frame.image_path, (intr.width, intr.height))
        ]
        if has_depth:
            size, found = depth_header(frame.depth_path) if frame.depth_path else (None, ["no depth map"])
            own += [FrameProblem(frame.name, str(frame.depth_path or frame.image_path), p) for p in found]
            if size is not None:
                depth_sizes.setdefault(size, []).append(frame)
                if abs(size[0] / size[1] - intr.width / intr.height) > 0.02 * intr.width / intr.height:
                    own.append(
                        FrameProblem(
                            frame.name,
                            str(frame.depth_path),
                            f"depth map is {size[0]}x{size[1]}, not the aspect ratio of its {intr.width}x{intr.height} image",
                        )
                    )
        problems += own
        if not own:
            c2w = None if frame.c2w is None else orthonormalised(frame.c2w)
            checked.append(replace(frame, c2w=c2w, depth_path=frame.depth_path if has_depth else None))
    if len(depth_sizes) > 1:
        common = max(depth_sizes, key=lambda s: len(depth_sizes[s]))
        for size, odd in depth_sizes.items():
            if size != common:
                problems += [
                    FrameProblem(
                        f.name,
                        str(f.depth_path),
                        f"depth map is {size[0]}x{size[1]}, the split's others are {common[0]}x{common[1]}",
                    )
                    for f in odd
                ]
        bad = {p.frame for p in problems}
        checked = [f for f in checked if f.name not in bad]
    if has_depth and check_depth_unit and checked:
        problems += depth_unit_problems(checked, depth_unit_scale, tuple(depth_invalid_values))
        bad = {p.frame for p in problems}
        checked = [f for f in checked if f.name not in bad]
    if unknown:
        CONSOLE.print(
            f"[yellow]{what}: skipped {len(unknown)} frames whose pose is unknown (INF / no rotation), first: {unknown[0]}"
        )
    if problems:
        bad_frames = sorted({p.frame for p in problems})
        if policy == "error":
            raise DatasetFormatError(problems_message(problems, len(bad_frames), len(frames), what))
        CONSOLE.print(
            f"[yellow]{what}: skipped {len(bad_frames)} of {len(frames)} frames (--bad-frames skip); "
            f"first: {problems[0]}"
        )
    return checked


def depth_unit_problems(
    frames: Sequence[PosedFrame], unit_scale: float, invalid: Tuple[float, ...]
) -> List[FrameProblem]:
    """Decode up to :data:`UNIT_SAMPLE` depth maps; a median valid depth outside
    :data:`PLAUSIBLE_MEDIAN_DEPTH_M` means the stored unit is not the layout's."""
    chosen = frames[:: max(1, len(frames) // UNIT_SAMPLE)][:UNIT_SAMPLE]
    out = []
    lo, hi = PLAUSIBLE_MEDIAN_DEPTH_M
    for frame in chosen:
        try:
            depth = load_depth_meters(frame.depth_path, unit_scale, invalid)
        except (DatasetFormatError, OSError, ValueError) as err:
            out.append(FrameProblem(frame.name, str(frame.depth_path), f"cannot decode depth map ({err})"))
            continue
        valid = depth[depth > 0]
        if valid.size and not lo <= float(np.median(valid)) <= hi:
            out.append(
                FrameProblem(
                    frame.name,
                    str(frame.depth_path),
                    f"median depth {float(np.median(valid)):.4g} m at {unit_scale:g} m per stored unit; expected "
                    f"{lo:g}-{hi:g} m (is the depth stored in another unit?)",
                )
            )
    return out


def problems_message(problems: Sequence[FrameProblem], bad: int, total: int, what: str) -> str:
    """One line for one problem; otherwise a headline and the first :data:`LISTED` problems."""
    hint = "pass --bad-frames skip to leave bad frames out"
    if len(problems) == 1:
        return f"{problems[0]} ({what}: 1 of {total} frames; {hint})"
    lines = [f"{what}: {bad} of {total} frames are unusable ({len(problems)} problems; {hint}):"]
    lines += [f"  {p}" for p in problems[:LISTED]]
    if len(problems) > LISTED:
        lines.append(f"  ... and {len(problems) - LISTED} more")
    return "\n".join(lines)
