"""Cambridge Landmarks dataparser (``cambridge-data``).

Layout of a scene directory (e.g. ``KingsCollege/``)::

    dataset_train.txt, dataset_test.txt   3 header lines, then "name X Y Z W P Q R"
    reconstruction.nvm                    VisualSfM model: per-image focal length
    seq1/frame00001.png ...

``X Y Z`` is the camera centre and ``W P Q R`` the world-to-camera rotation quaternion
(scalar first), OpenCV axes, metres.  The NVM stores one focal length per image (for
``nvm_image_width``-pixel-wide images, principal point at the centre, radial distortion
ignored); it is rescaled to the stored image size.  Entries that cannot be used (missing
image, non-finite or zero quaternion, as found in GreatCourt) are skipped with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Type

import numpy as np
from nerfstudio.utils.rich_utils import CONSOLE

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


def read_nvm_focals(path: Path) -> dict[str, float]:
    """Focal length per image stem from a VisualSfM ``.nvm`` file."""
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise format_error(path, f"cannot read NVM model ({err.strerror}); pass --focal to skip it") from err
    idx = 0
    while idx < len(lines) and (not lines[idx].strip() or lines[idx].strip().startswith("NVM")):
        idx += 1
    try:
        num_cameras = int(lines[idx].split()[0])
    except (IndexError, ValueError) as err:
        raise format_error(path, "expected the number of cameras after the NVM_V3 header", idx + 1) from err
    focals = {}
    for line_no in range(idx + 1, idx + 1 + num_cameras):
        if line_no >= len(lines):
            raise format_error(path, f"expected {num_cameras} camera lines, file ends early", line_no)
        parts = lines[line_no].split()
        try:
            focals[Path(parts[0]).with_suffix("").as_posix()] = float(parts[1])
        except (IndexError, ValueError) as err:
            raise format_error(path, "expected 'name focal qw qx qy qz cx cy cz radial 0'", line_no + 1) from err
    return focals


def read_pose_list(path: Path) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    """``dataset_*.txt`` -> ``(name, centre xyz, w2c quaternion wxyz, line number)`` rows."""
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise format_error(path, f"cannot read pose list ({err.strerror})") from err
    rows = []
    for line_no, line in enumerate(lines[3:], start=4):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 8:
            raise format_error(path, f"expected 'name X Y Z W P Q R', got {line.strip()!r}", line_no)
        try:
            values = np.array([float(v) for v in parts[1:]])
        except ValueError as err:
            raise format_error(path, f"expected 7 numbers after the name, got {line.strip()!r}", line_no) from err
        rows.append((parts[0], values[:3], values[3:], line_no))
    return rows


@dataclass
class CambridgeDataParser(PosedFramesDataParser):
    """Reads ``dataset_{train,test}.txt`` and focal lengths from the NVM model."""

    config: CambridgeDataParserConfig

    def read_frames(self, split: Split) -> list[PosedFrame]:
        root = self.config.data
        list_path = root / ("dataset_train.txt" if split == "train" else "dataset_test.txt")
        focals = None if self.config.focal is not None else read_nvm_focals(root / self.config.nvm_file)
        frames, skipped, size = [], [], None
        for name, centre, qvec, line_no in read_pose_list(list_path):
            image_path = root / name
            usable = np.all(np.isfinite(centre)) and np.all(np.isfinite(qvec)) and np.linalg.norm(qvec) > 1e-6
            focal = self.config.focal if focals is None else focals.get(Path(name).with_suffix("").as_posix())
            if not usable or focal is None or not image_path.exists():
                skipped.append(f"{list_path.name}:{line_no}")
                continue
            if size is None:
                size = image_size(image_path)
            scale = size[0] / self.config.nvm_image_width
            intrinsics = Intrinsics(focal * scale, focal * scale, size[0] / 2, size[1] / 2, size[0], size[1])
            frames.append(PosedFrame(name, image_path, c2w_from_w2c_qvec_and_center(qvec, centre), intrinsics))
        if skipped:
            CONSOLE.print(
                f"[yellow]cambridge-data: skipped {len(skipped)} unusable entries "
                f"(missing image, bad pose or no focal), first: {skipped[0]}"
            )
        if not frames:
            raise DatasetFormatError(f"{list_path}: no usable entries")
        return frames
