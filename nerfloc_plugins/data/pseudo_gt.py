"""SfM pseudo ground truth of 7-Scenes and 12-Scenes (Brachmann et al., "On the Limits of Pseudo
Ground Truth in Visual Camera Re-Localization", ICCV 2021; the ``visloc_pseudo_gt_limitations``
repository), and the Map-free benchmark's estimate format.

pGT files, one per scene and split (``<scene>_train.txt``, ``<scene>_test.txt``, e.g.
``chess_test.txt``, ``apt1_kitchen_train.txt``), one line per image::

    seq-03/frame-000844.color.png qw qx qy qz tx ty tz f

``q, t``: **world-to-camera** (``p_cam = R(q) p_world + t``, COLMAP's convention), metres; ``f``:
the focal length in pixels re-estimated by COLMAP for 640-pixel-wide images.  That repository's
estimate files are the same lines without ``f``: nerfloc's ``poses.txt`` already is one.  The
Map-free benchmark's lines add a confidence instead: ``name qw qx qy qz tx ty tz confidence``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from nerfloc_plugins.data.errors import DatasetFormatError, format_error
from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.data.text_files import read_lines
from nerfloc_plugins.geometry.poses import invert_rigid, qvec_tvec_from_w2c, w2c_from_qvec_tvec
from nerfloc_plugins.utils.atomic import write_text_atomically

PGT_WIDTH = 640
"""Image width the pGT focal lengths refer to."""


@dataclass(frozen=True)
class PseudoGtPose:
    c2w: np.ndarray
    """Camera-to-world 4x4, OpenCV axes, metres (the inverse of the file's pose)."""
    focal: float
    """Focal length in pixels for :data:`PGT_WIDTH`-pixel-wide images."""


def read_pgt_file(path: Path) -> Dict[str, PseudoGtPose]:
    """``rgb_file -> pose`` of one pGT file (module docstring); bad lines are one-line errors."""
    out: Dict[str, PseudoGtPose] = {}
    for line_no, line in enumerate(read_lines(path, "pseudo ground truth ('rgb_file qw qx qy qz tx ty tz f')"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 9:
            raise format_error(path, f"expected 'rgb_file qw qx qy qz tx ty tz f', got {line.strip()[:80]!r}", line_no)
        try:
            values = np.array([float(v) for v in parts[1:]])
        except ValueError:
            raise format_error(
                path, f"expected 8 numbers after the file name, got {line.strip()[:80]!r}", line_no
            ) from None
        if not np.all(np.isfinite(values)) or np.linalg.norm(values[:4]) < 1e-12 or values[7] <= 0:
            raise format_error(
                path, "expected finite numbers, a non-zero quaternion and a positive focal length", line_no
            )
        if parts[0] in out:
            raise format_error(path, f"{parts[0]!r} has a second pose line", line_no)
        out[parts[0]] = PseudoGtPose(invert_rigid(w2c_from_qvec_tvec(values[:4], values[4:7])), float(values[7]))
    if not out:
        raise format_error(path, "holds no pose line ('rgb_file qw qx qy qz tx ty tz f')")
    return out


def pgt_file(folder: Path, data: Path, split: str) -> Path:
    """The pGT file of the scene in dataset folder ``data`` for ``split`` (``train`` / ``test``):
    ``<name>_<split>.txt`` or, for 12-Scenes folders like ``apt1/kitchen``, ``apt1_kitchen_<split>.txt``."""
    folder, data = Path(folder), Path(data).resolve()
    if not folder.is_dir():
        raise DatasetFormatError(f"{folder}: --pgt must be a folder of pseudo ground truth files (<scene>_{split}.txt)")
    names = [f"{data.name}_{split}.txt", f"{data.parent.name}_{data.name}_{split}.txt"]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DatasetFormatError(f"{folder}: no pseudo ground truth for {data.name} (looked for {' or '.join(names)})")


def frames_with_pgt(frames: Sequence[PosedFrame], poses: Mapping[str, PseudoGtPose]) -> Tuple[List[PosedFrame], int]:
    """The frames that have a pGT pose, each with that pose and focal length (scaled to the stored
    image width; principal point kept), and how many had none (SfM did not register them)."""
    out = []
    for frame in frames:
        pose = poses.get(frame.name)
        if pose is None:
            continue
        intr = frame.intrinsics
        focal = pose.focal * intr.width / PGT_WIDTH
        out.append(replace(frame, c2w=pose.c2w.copy(), intrinsics=replace(intr, fx=focal, fy=focal)))
    return out, len(frames) - len(out)


def write_mapfree_poses(poses_w2c: Mapping[str, np.ndarray], confidence: Mapping[str, float], path: Path) -> None:
    """Map-free benchmark lines ``name qw qx qy qz tx ty tz confidence`` (world-to-camera)."""
    lines = []
    for name, w2c in poses_w2c.items():
        q, t = qvec_tvec_from_w2c(w2c)
        values = [*(f"{v:.10f}" for v in q), *(f"{v:.10f}" for v in t), f"{float(confidence.get(name, 0.0)):g}"]
        lines.append(" ".join([name, *values]))
    write_text_atomically("\n".join(lines) + ("\n" if lines else ""), path)
