"""Pose errors (the one definition every metric, test and training loop uses).

Translation error is the distance between camera centres, in the poses' units (callers scale
to metres / cm); rotation error is the angle of ``R_est R_gt^T`` in degrees.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from torch import Tensor

from nerfloc_plugins.geometry.poses import invert_rigid


def pose_error(w2c_est: np.ndarray, w2c_gt: np.ndarray) -> Tuple[float, float]:
    """``(translation error in dataset units, rotation error in degrees)``."""
    c_est = invert_rigid(w2c_est)[:3, 3]
    c_gt = invert_rigid(w2c_gt)[:3, 3]
    r = np.asarray(w2c_est)[:3, :3] @ np.asarray(w2c_gt)[:3, :3].T
    cos = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.linalg.norm(c_est - c_gt)), float(np.degrees(np.arccos(cos)))


def pose_errors_c2w(pred: Tensor, target: Tensor, metres_per_unit: float = 1.0) -> Tuple[Tensor, Tensor]:
    """Batched ``(translation error in metres, rotation error in degrees)`` of c2w poses
    ``(B, 3, 4)`` (torch; camera centres are the translation columns)."""
    t = torch.linalg.vector_norm(pred[:, :, 3] - target[:, :, 3], dim=-1) * metres_per_unit
    rel = pred[:, :, :3] @ target[:, :, :3].transpose(1, 2)
    cos = ((rel.diagonal(dim1=1, dim2=2).sum(-1) - 1.0) / 2.0).clamp(-1.0, 1.0)
    return t, torch.rad2deg(torch.arccos(cos))
