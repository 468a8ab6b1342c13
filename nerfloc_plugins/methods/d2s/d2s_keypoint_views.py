"""Keypoint training data for scene-coordinate regression: one record per image.

Each :class:`KeypointView` holds an image's keypoints (pixels, centres at +0.5), their
L2-normalised descriptors and, per keypoint, its dataset-frame 3D scene coordinate in metres
(``NaN`` where the keypoint has no label), with the image's c2w pose (OpenCV axes) and
intrinsics, which the reprojection loss needs.  A set of views is stored in one ``.npz``
(arrays concatenated, with offsets), written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import numpy as np

from nerfloc_plugins.utils.atomic import atomic_path


@dataclass
class KeypointView:
    name: str
    keypoints: np.ndarray
    """``(N, 2)`` float32 pixels."""
    descriptors: np.ndarray
    """``(N, D)`` float32, L2-normalised."""
    points3d: np.ndarray
    """``(N, 3)`` float32 dataset-frame metres; NaN rows: no label."""
    c2w: np.ndarray
    """``(4, 4)`` dataset-frame camera-to-world (OpenCV axes)."""
    K: np.ndarray
    """``(3, 3)`` intrinsics at the keypoints' resolution."""
    synthetic: bool = False

    @property
    def labelled(self) -> np.ndarray:
        """``(N,)`` bool: keypoints with a 3D label."""
        return np.isfinite(self.points3d).all(axis=1)

    def __len__(self) -> int:
        return len(self.keypoints)


def save_views(views: Sequence[KeypointView], path: Path) -> None:
    """Write views to one ``.npz`` (atomically)."""
    if not views:
        raise ValueError(f"{path}: no keypoint views to save")
    counts = np.array([len(v) for v in views], dtype=np.int64)
    data = {
        "names": np.array([v.name for v in views]),
        "offsets": np.concatenate([[0], np.cumsum(counts)]),
        "keypoints": np.concatenate([v.keypoints for v in views]).astype(np.float32),
        "descriptors": np.concatenate([v.descriptors for v in views]).astype(np.float32),
        "points3d": np.concatenate([v.points3d for v in views]).astype(np.float32),
        "c2w": np.stack([v.c2w for v in views]).astype(np.float64),
        "K": np.stack([v.K for v in views]).astype(np.float64),
        "synthetic": np.array([v.synthetic for v in views]),
    }
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **data)


def load_views(path: Path) -> List[KeypointView]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: keypoint views file not found (written by ns-nerfloc-synthesize)")
    try:
        data = np.load(path)
        offsets = data["offsets"]
        return [
            KeypointView(
                name=str(data["names"][i]),
                keypoints=data["keypoints"][offsets[i] : offsets[i + 1]],
                descriptors=data["descriptors"][offsets[i] : offsets[i + 1]],
                points3d=data["points3d"][offsets[i] : offsets[i + 1]],
                c2w=data["c2w"][i],
                K=data["K"][i],
                synthetic=bool(data["synthetic"][i]),
            )
            for i in range(len(offsets) - 1)
        ]
    except (KeyError, ValueError, OSError) as err:
        raise ValueError(f"{path}: not a nerfloc keypoint views file ({err})") from err
