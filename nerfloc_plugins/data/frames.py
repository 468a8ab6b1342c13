"""Posed frame records, intrinsics and depth loading shared by every dataset parser.

A :class:`PosedFrame` is one image of a dataset with its camera-to-world pose in the
dataset's own metric frame, **OpenCV axes** (see :mod:`nerfloc_plugins.geometry.poses`),
its pinhole intrinsics in pixels at the image's stored resolution, and optionally a depth
map file.  Depth maps are converted to metres by :func:`load_depth_meters`; invalid
readings become 0 everywhere in nerfloc.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Set, Tuple, Union

import cv2
import numpy as np
from PIL import Image

from nerfloc_plugins.data.errors import DatasetFormatError, format_error  # noqa: F401 (re-exported)
from nerfloc_plugins.data.images import read_rgb
from nerfloc_plugins.data.text_files import read_lines


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of ``width`` x ``height`` pixels.

    The principal point uses the pixel-centre-at-0.5 convention shared by OpenCV and
    Nerfstudio (``cx = width / 2`` for a centred camera).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def scaled_to(self, width: int, height: int) -> "Intrinsics":
        """The same camera for an image resized to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, int(width), int(height))

    def cropped_to_multiple_of(self, m: int) -> "Intrinsics":
        """The same camera for the image cropped at the bottom/right to sides divisible by ``m``."""
        return Intrinsics(self.fx, self.fy, self.cx, self.cy, (self.width // m) * m, (self.height // m) * m)

    def matrix(self) -> np.ndarray:
        """3x3 calibration matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class PosedFrame:
    """One image with its pose (c2w, dataset frame, OpenCV axes, metres)."""

    name: str
    """Path of the image relative to the dataset root, e.g. ``seq-03/frame-000000.color.png``."""
    image_path: Path
    c2w: Optional[np.ndarray]
    """``None`` only for query images given without a pose (``--queries``: no ground truth)."""
    intrinsics: Intrinsics
    depth_path: Optional[Path] = None
    """The frame's depth map where the dataset's layout puts it (it may be missing: the dataset
    check reports a frame without its depth when other frames have theirs)."""
    pose_file: Optional[str] = None
    """Where the pose was read (``path`` or ``path:line``), for the dataset check's messages."""
    problems: Tuple[str, ...] = ()
    """Problems a parser found while reading this frame (e.g. no focal length for it); the dataset
    check reports them with the others, a pose-free query with one is recorded as failed."""
    pixels: Union[np.ndarray, Callable[[], np.ndarray], None] = field(default=None, compare=False, repr=False)
    """The image when it is not (only) a file: ``(H, W, 3)`` float32 RGB in [0, 1] at the
    intrinsics' size, or a function that makes it (an undistorted or downscaled query, a video
    frame, an array given to the Python API); ``None``: decode ``image_path``.  Read it with
    :func:`load_frame_rgb`."""


def load_frame_rgb(frame: PosedFrame) -> np.ndarray:
    """The frame's ``(H, W, 3)`` float32 RGB in [0, 1]: its in-memory pixels, else its file
    (decoded at its bit depth, :func:`~nerfloc_plugins.data.images.read_rgb`)."""
    pixels = frame.pixels
    if pixels is None:
        return read_rgb(frame.image_path)
    return pixels() if callable(pixels) else pixels


def decoded_once(frame: PosedFrame) -> PosedFrame:
    """``frame`` whose image is decoded at most once, when first read (:func:`load_frame_rgb`), and
    then shared by whatever reads it (every stage of a cascade, the verifier)."""
    if isinstance(frame.pixels, np.ndarray):
        return frame
    kept: list = []

    def pixels() -> np.ndarray:
        if not kept:
            kept.append(load_frame_rgb(frame))
        return kept[0]

    return replace(frame, pixels=pixels)


def image_size(path: Path, verify: bool = False) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header; with ``verify`` the file's data
    is also checked to be complete (PIL's ``verify``: headers and checksums, no pixels decoded)."""
    try:
        with Image.open(path) as img:
            size = img.size
            if verify:
                img.verify()
            return size
    except (OSError, ValueError, SyntaxError) as err:
        raise format_error(path, f"cannot read image ({err})") from err


def with_actual_image_size(frames: Sequence[PosedFrame]) -> list[PosedFrame]:
    """Rescale each frame's intrinsics to the stored size of its images.

    Images of one dataset share a size, so for each distinct nominal size the header of the first
    readable image is read; unreadable images are left for the dataset check to report.
    """
    cache: dict[tuple[int, int], Optional[tuple[int, int]]] = {}
    out = []
    for frame in frames:
        key = (frame.intrinsics.width, frame.intrinsics.height)
        if cache.get(key) is None:
            try:
                cache[key] = image_size(frame.image_path)
            except DatasetFormatError:
                cache[key] = None
        size = cache[key]
        if size is not None and size != key:
            frame = replace(frame, intrinsics=frame.intrinsics.scaled_to(*size))
        out.append(frame)
    return out


def read_matrix_file(path: Path, rows: int = 4, cols: int = 4) -> np.ndarray:
    """Read a whitespace-separated ``rows`` x ``cols`` matrix (values may be non-finite, e.g.
    12-Scenes ``INF`` poses: the dataset check decides); raises :class:`DatasetFormatError` when
    the file is missing, not text, or not a matrix of that shape."""
    values = []
    for line_no, line in enumerate(read_lines(path, "pose file"), start=1):
        if not line.strip():
            continue
        try:
            row = [float(v) for v in line.split()]
        except ValueError as err:
            raise format_error(path, f"expected {cols} numbers per line, got {line.strip()[:80]!r}", line_no) from err
        if len(row) != cols:
            raise format_error(path, f"expected {cols} numbers per line, got {len(row)}", line_no)
        values.append(row)
    mat = np.array(values, dtype=np.float64) if values else np.zeros((0, 0))
    if mat.shape != (rows, cols):
        raise format_error(path, f"expected a {rows}x{cols} matrix, got shape {mat.shape}")
    return mat


def pose_problem(c2w: np.ndarray, max_translation: float, atol: float = 1e-2) -> Optional[str]:
    """Why ``c2w`` is not a usable camera-to-world pose, or ``None``: non-finite values, a rotation
    that is not orthonormal with determinant +1, a camera centre farther than ``max_translation``."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.shape != (4, 4):
        return f"expected a 4x4 pose, got shape {c2w.shape}"
    if not np.all(np.isfinite(c2w)):
        return "pose is not finite (NaN or INF values)"
    rot = c2w[:3, :3]
    if not np.allclose(rot.T @ rot, np.eye(3), atol=atol) or np.linalg.det(rot) < 0:
        return "pose rotation is not orthonormal (expected a rigid camera-to-world matrix)"
    if np.max(np.abs(c2w[:3, 3])) > max_translation:
        return (
            f"camera centre {np.round(c2w[:3, 3], 3).tolist()} is beyond {max_translation:g} units (--max-translation)"
        )
    return None


def orthonormalised(c2w: np.ndarray) -> np.ndarray:
    """``c2w`` with its rotation replaced by the nearest rotation and its last row ``0 0 0 1``."""
    u, _, vt = np.linalg.svd(c2w[:3, :3])
    out = np.array(c2w, dtype=np.float64)
    out[:3, :3] = u @ vt
    out[3] = [0.0, 0.0, 0.0, 1.0]
    return out


def frame_from_pose_file(name: str, image_path: Path, intrinsics: Intrinsics) -> PosedFrame:
    """Frame of the ``<stem>.color.*`` / ``<stem>.pose.txt`` / ``<stem>.depth.png`` convention
    (7-Scenes, 12-Scenes); its pose (possibly non-finite: ``INF``) is checked by the dataset check."""
    stem = image_path.name.split(".")[0]
    pose_path = image_path.with_name(f"{stem}.pose.txt")
    return PosedFrame(
        name=name,
        image_path=image_path,
        c2w=read_matrix_file(pose_path),
        intrinsics=intrinsics,
        depth_path=image_path.with_name(f"{stem}.depth.png"),
        pose_file=str(pose_path),
    )


def select_every(frames: Sequence[PosedFrame], stride: int, limit: Optional[int] = None) -> list[PosedFrame]:
    """Every ``stride``-th frame (few-shot subsets), optionally capped at ``limit`` frames."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    out = list(frames)[::stride]
    if limit is not None:
        if limit < 1:
            raise ValueError(f"frame limit must be >= 1, got {limit}")
        out = out[:limit]
    return out


def load_depth_meters(
    path: Path,
    unit_scale: float,
    invalid_values: Iterable[float] = (0,),
    size: Optional[tuple[int, int]] = None,
) -> np.ndarray:
    """Load a depth map as float32 metres; invalid readings become 0.

    Args:
        path: 16-bit PNG (or ``.npy``) depth map.
        unit_scale: metres per stored unit (7-Scenes/12-Scenes mm: 1e-3; Replica: 1/6553.5).
        invalid_values: raw values that mean "no reading" (7-Scenes uses 65535 and 0).
        size: optional ``(width, height)`` to resize to (nearest neighbour, no mixing of
            valid and invalid readings).
    """
    if path.suffix == ".npy":
        raw = np.load(path)
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH)
    if raw is None or raw.ndim != 2:
        raise format_error(path, "cannot read depth map (expected a single-channel 16-bit PNG or .npy)")
    invalid = ~np.isfinite(raw.astype(np.float64))
    for value in invalid_values:
        invalid |= raw == value
    depth = raw.astype(np.float32) * np.float32(unit_scale)
    depth[invalid] = 0.0
    if size is not None and (depth.shape[1], depth.shape[0]) != tuple(size):
        depth = cv2.resize(depth, tuple(int(s) for s in size), interpolation=cv2.INTER_NEAREST)
    return depth


HARD_QUERIES_FILE = "hard_queries.txt"
"""Optional file at a dataset's root naming its hard queries, one image name per line (written by
``nerfloc-make-scene --hard-queries``): reports show their recall apart."""


def hard_query_names(frames: Sequence[PosedFrame]) -> Optional[Set[str]]:
    """Names listed in the dataset's :data:`HARD_QUERIES_FILE`, or ``None`` when it has none.

    The dataset root is each frame's image path less its name (names are relative to the root)."""
    roots = {str(f.image_path)[: -len(f.name)] for f in frames if str(f.image_path).endswith(f.name)}
    for root in roots:
        path = Path(root) / HARD_QUERIES_FILE
        if path.is_file():
            return {line.strip() for line in read_lines(path, "hard-queries list") if line.strip()}
    return None
