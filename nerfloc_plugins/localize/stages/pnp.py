"""The one PnP wrapper: absolute pose with LO-RANSAC (poselib; pycolmap as alternative).

Inputs are 2D pixels (pixel centres at +0.5, same resolution as ``intrinsics``) and 3D
points in the dataset's metric frame; the result is a world-to-camera pose (OpenCV axes).
``threshold_px`` is given for images ``threshold_reference_width`` pixels wide and scaled
to the matching resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
from typing_extensions import Annotated

from nerfloc_plugins.data.frames import Intrinsics
from nerfloc_plugins.utils.option_ranges import COUNT, POSITIVE, AtLeast, Between


@dataclass
class PnPConfig:
    solver: Literal["poselib", "pycolmap"] = "poselib"
    threshold_px: Annotated[float, POSITIVE] = 8.0
    """RANSAC inlier threshold in pixels at ``threshold_reference_width``."""
    threshold_reference_width: Annotated[int, COUNT] = 640
    min_inliers: Annotated[int, AtLeast(3)] = 6
    max_iterations: Annotated[int, COUNT] = 10000
    min_iterations: Annotated[int, COUNT] = 100
    success_prob: Annotated[float, Between(0, 1, exclusive=True)] = 0.9999


@dataclass
class PnPResult:
    w2c: Optional[np.ndarray]
    """4x4 world-to-camera pose, ``None`` when PnP failed."""
    inliers: np.ndarray
    """``(N,)`` bool inlier mask."""

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())

    @property
    def success(self) -> bool:
        return self.w2c is not None


def solve_pnp(
    points2d: np.ndarray,
    points3d: np.ndarray,
    intrinsics: Intrinsics,
    config: Optional[PnPConfig] = None,
    min_threshold_px: float = 0.0,
) -> PnPResult:
    """Estimate the w2c pose from 2D-3D correspondences; failure below ``min_inliers``.

    ``min_threshold_px`` (pixels at ``intrinsics``' resolution) floors the inlier threshold for
    2D points that are only known to within a cell (e.g. NeRFMatch-Mini's 8x8 cell centres)."""
    config = config or PnPConfig()
    points2d = np.ascontiguousarray(points2d, dtype=np.float64).reshape(-1, 2)
    points3d = np.ascontiguousarray(points3d, dtype=np.float64).reshape(-1, 3)
    n = len(points2d)
    if n < max(4, config.min_inliers):
        return PnPResult(None, np.zeros(n, dtype=bool))
    threshold = max(config.threshold_px * intrinsics.width / config.threshold_reference_width, min_threshold_px)
    params = [intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy]
    if config.solver == "poselib":
        import poselib

        camera = {"model": "PINHOLE", "width": intrinsics.width, "height": intrinsics.height, "params": params}
        ransac = {
            "max_reproj_error": threshold,
            "max_iterations": config.max_iterations,
            "min_iterations": config.min_iterations,
            "success_prob": config.success_prob,
        }
        pose, info = poselib.estimate_absolute_pose(points2d, points3d, camera, ransac, {})
        inliers = np.asarray(info["inliers"], dtype=bool)
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = pose.R, pose.t
    else:
        import pycolmap

        camera = pycolmap.Camera(model="PINHOLE", width=intrinsics.width, height=intrinsics.height, params=params)
        options = pycolmap.AbsolutePoseEstimationOptions()
        options.ransac.max_error = threshold
        options.ransac.max_num_trials = config.max_iterations
        options.ransac.min_num_trials = config.min_iterations
        result = pycolmap.estimate_and_refine_absolute_pose(points2d, points3d, camera, options)
        if result is None:
            return PnPResult(None, np.zeros(n, dtype=bool))
        inliers = np.asarray(result["inlier_mask"], dtype=bool)
        w2c = np.eye(4)
        w2c[:3] = result["cam_from_world"].matrix()
    if inliers.sum() < config.min_inliers:
        return PnPResult(None, inliers)
    return PnPResult(w2c, inliers)
