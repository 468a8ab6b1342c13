"""Cambridge Landmarks dataparser (``cambridge-data``).

Layout of a scene directory (e.g. ``KingsCollege/``)::

    dataset_train.txt, dataset_test.txt   3 header lines, then "name X Y Z W P Q R"
    reconstruction.nvm                    VisualSfM model: per-image focal length
    seq1/frame00001.png ...

``X Y Z`` is the camera centre and ``W P Q R`` the world-to-camera rotation quaternion
(scalar first), OpenCV axes, metres.  The NVM stores one focal length per image (for
``nvm_image_width``-pixel-wide images, principal point at the centre, radial distortion
ignored); it is rescaled to the stored image size.  Entries that cannot be used (missing
image, non-finite or zero quaternion, as found in GreatCourt): entries without a usable pose are
skipped and counted by the dataset check; a missing image or focal length is a bad frame (an error
unless ``--bad-frames skip``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Type

import numpy as np

from nerfloc_plugins.data.frames import (
    DatasetFormatError,
    Intrinsics,
    PosedFrame,
    format_error,
    image_size,
)
from nerfloc_plugins.data.posed_frames_dataparser import (
    PosedFramesDataParser,
    PosedFramesDataParserConfig,
    Split,
)
from nerfloc_plugins.data.text_files import read_lines
from nerfloc_plugins.geometry.poses import c2w_from_w2c_qvec_and_center


@dataclass
class CambridgeDataParserConfig(PosedFramesDataParserConfig):
    """Cambridge Landmarks layout."""

    _target: Type = field(default_factory=lambda: CambridgeDataParser)
    nvm_file: str = "reconstruction.nvm"
    """NVM model (relative to the scene root) holding the per-image focal lengths."""
    nvm_image_width: int = 1920
    """Image width the NVM focal lengths refer to."""
    focal: Optional[float] = None
    """Override: one focal length (pixels, at ``nvm_image_width``) for every image."""
    load_depth: bool = False
    """Cambridge has no depth maps."""


FOCAL_HINT = "pass cambridge-data --focal F (pixels at --nvm-image-width) to do without it"


def read_nvm_focals(path: Path) -> dict[str, float]:
    """Focal length per image stem from a VisualSfM ``.nvm`` file."""
    if not path.is_file():
        raise format_error(path, f"NVM model not found; {FOCAL_HINT}")
    lines = read_lines(path, f"NVM model ({FOCAL_HINT})")
    idx = 0
    while idx < len(lines) and (not lines[idx].strip() or lines[idx].strip().startswith("NVM")):
        idx += 1
    try:
        num_cameras = int(lines[idx].split()[0])
    except (IndexError, ValueError):
        raise format_error(
            path, f"expected the number of cameras after the NVM_V3 header; {FOCAL_HINT}", idx + 1
        ) from None
    focals = {}
    for line_no in range(idx + 1, idx + 1 + num_cameras):
        if line_no >= len(lines):
            raise format_error(path, f"expected {num_cameras} camera lines, file ends early", line_no)
        parts = lines[line_no].split()
        try:
            focal = float(parts[1])
        except (IndexError, ValueError):
            raise format_error(path, "expected 'name focal qw qx qy qz cx cy cz radial 0'", line_no + 1) from None
        if np.isfinite(focal) and focal > 0:
            focals[Path(parts[0]).with_suffix("").as_posix()] = focal
    return focals


HEADER_LINES = 3
"""Header lines of a Cambridge pose list ("Visual Landmark Dataset V1", the column names, blank)."""


def parse_pose_row(line: str) -> Optional[tuple[str, np.ndarray]]:
    """``name X Y Z W P Q R`` -> ``(name, 7 numbers)``, or ``None`` when the line is not one."""
    parts = line.split()
    if len(parts) != 8:
        return None
    try:
        return parts[0], np.array([float(v) for v in parts[1:]])
    except ValueError:
        return None


def read_pose_list(path: Path) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    """``dataset_*.txt`` -> ``(name, centre xyz, w2c quaternion wxyz, line number)`` rows.

    The 3 header lines are recognised as lines that are not pose rows (a file saved without
    them loses no row); every later non-blank line must be a pose row."""
    lines = read_lines(path, "pose list ('name X Y Z W P Q R' lines)")
    first = 0
    while first < min(HEADER_LINES, len(lines)) and parse_pose_row(lines[first]) is None:
        first += 1
    rows = []
    for line_no, line in enumerate(lines[first:], start=first + 1):
        if not line.strip():
            continue
        row = parse_pose_row(line)
        if row is None:
            raise format_error(path, f"expected 'name X Y Z W P Q R', got {line.strip()[:80]!r}", line_no)
        rows.append((row[0], row[1][:3], row[1][3:], line_no))
    return rows


@dataclass
class CambridgeDataParser(PosedFramesDataParser):
    """Reads ``dataset_{train,test}.txt`` and focal lengths from the NVM model."""

    config: CambridgeDataParserConfig
    layout: str = "cambridge-data"
    skips_unknown_poses: bool = True

    def read_frames(self, split: Split) -> list[PosedFrame]:
        root = self.config.data
        list_path = root / ("dataset_train.txt" if split == "train" else "dataset_test.txt")
        focals = None if self.config.focal is not None else read_nvm_focals(root / self.config.nvm_file)
        if self.config.focal is not None and not (np.isfinite(self.config.focal) and self.config.focal > 0):
            raise ValueError(f"cambridge-data --focal {self.config.focal}: expected a positive focal length in pixels")
        frames, size = [], None
        for name, centre, qvec, line_no in read_pose_list(list_path):
            image_path = root / name
            usable = np.all(np.isfinite(centre)) and np.all(np.isfinite(qvec)) and np.linalg.norm(qvec) > 1e-6
            c2w = c2w_from_w2c_qvec_and_center(qvec, centre) if usable else np.full((4, 4), np.nan)
            focal = self.config.focal if focals is None else focals.get(Path(name).with_suffix("").as_posix())
            problems = (
                ()
                if focal is not None
                else (f"no focal length for this image in {self.config.nvm_file}; {FOCAL_HINT}",)
            )
            if size is None and image_path.is_file():
                try:
                    size = image_size(image_path)
                except DatasetFormatError:
                    pass
            width, height = size or (self.config.nvm_image_width, self.config.nvm_image_width * 3 // 4)
            scale = width / self.config.nvm_image_width
            f = (focal or 1.0) * scale
            intrinsics = Intrinsics(f, f, width / 2, height / 2, width, height)
            frames.append(
                PosedFrame(name, image_path, c2w, intrinsics, pose_file=f"{list_path}:{line_no}", problems=problems)
            )
        if not frames:
            raise format_error(list_path, "no pose rows (expected 'name X Y Z W P Q R' lines after 3 header lines)")
        return frames
