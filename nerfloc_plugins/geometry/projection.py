"""Pinhole projection and depth back-projection (OpenCV axes, pixel centres at +0.5).

Pixel coordinates ``(u, v)`` are continuous with the top-left pixel covering ``[0, 1)^2``,
so the centre of pixel ``(i, j)`` is ``(i + 0.5, j + 0.5)`` - the convention of OpenCV's
calibration and of Nerfstudio's ray generation.  Depth is z-depth (along the optical axis).
Functions work on NumPy arrays with any leading batch shape.
"""

from __future__ import annotations

import numpy as np


def backproject(uv: np.ndarray, depth: np.ndarray, K: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Pixels ``(*, 2)`` with z-depth ``(*)`` -> world points ``(*, 3)`` for an OpenCV c2w pose."""
    uv = np.asarray(uv, dtype=np.float64)
    depth = np.asarray(depth, dtype=np.float64)
    x = (uv[..., 0] - K[0, 2]) / K[0, 0] * depth
    y = (uv[..., 1] - K[1, 2]) / K[1, 1] * depth
    cam = np.stack([x, y, depth], axis=-1)
    return cam @ np.asarray(c2w)[:3, :3].T + np.asarray(c2w)[:3, 3]


def backproject_with_depth_map(
    uv: np.ndarray, depth: np.ndarray, K: np.ndarray, c2w: np.ndarray, scale_to_depth: float = 1.0
) -> np.ndarray:
    """World points ``(N, 3)`` of pixels ``(N, 2)`` read from a z-depth map ``(H, W)`` (nearest
    pixel, at ``scale_to_depth`` times the pixels' resolution); NaN rows where the map has no
    positive, finite depth."""
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    cols = np.clip((uv[:, 0] * scale_to_depth).astype(int), 0, depth.shape[1] - 1)
    rows = np.clip((uv[:, 1] * scale_to_depth).astype(int), 0, depth.shape[0] - 1)
    z = depth[rows, cols]
    points = np.full((len(uv), 3), np.nan)
    valid = np.isfinite(z) & (z > 0)
    points[valid] = backproject(uv[valid], z[valid], K, c2w)
    return points


def project(points: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points ``(*, 3)`` -> pixels ``(*, 2)`` and z-depth ``(*)`` for an OpenCV w2c pose."""
    cam = np.asarray(points, dtype=np.float64) @ np.asarray(w2c)[:3, :3].T + np.asarray(w2c)[:3, 3]
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([K[0, 0] * cam[..., 0] / z + K[0, 2], K[1, 1] * cam[..., 1] / z + K[1, 2]], axis=-1)
    return uv, z


def pixel_grid(width: int, height: int, stride: int = 1) -> np.ndarray:
    """Pixel-centre coordinates ``(H', W', 2)`` of every ``stride``-th pixel."""
    u = np.arange(0, width, stride) + 0.5
    v = np.arange(0, height, stride) + 0.5
    return np.stack(np.meshgrid(u, v), axis=-1)


def depth_map_points(depth: np.ndarray, K: np.ndarray, c2w: np.ndarray, stride: int = 1) -> np.ndarray:
    """World points ``(N, 3)`` of the valid (> 0) pixels of a z-depth map, every ``stride``-th pixel."""
    uv = pixel_grid(depth.shape[1], depth.shape[0], stride)
    d = depth[::stride, ::stride]
    valid = d > 0
    return backproject(uv[valid], d[valid], K, c2w)


def ray_length_per_unit_z(width: int, height: int, K: np.ndarray) -> np.ndarray:
    """``(H, W)`` ray length per unit of z-depth at each pixel centre: ``sqrt(x^2 + y^2 + 1)``.

    Nerfstudio renders ``depth`` as distance along unit-length rays; divide by this to get
    the z-depth that datasets store (multiply to go the other way).
    """
    uv = pixel_grid(width, height)
    x = (uv[..., 0] - K[0, 2]) / K[0, 0]
    y = (uv[..., 1] - K[1, 2]) / K[1, 1]
    return np.sqrt(x * x + y * y + 1.0)
