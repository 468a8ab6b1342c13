"""NeRFMatch supervision (Sec. 4.3): ground-truth matches by projection, coarse and fine losses.

Ground truth: the rendered reference points ``X_s`` (dataset frame, metres) are projected into
the query with its ground-truth pose and calibration; point ``j`` is associated with the 8x8
cell ``i`` its projection falls in when it lies inside the image in front of the camera (one
cell may hold several points, a point has at most one cell).  The fine target is the
projection's offset from the cell's fine-window centre (``nerfmatch_matcher.window_centres``).
"""

from __future__ import annotations

from typing import Literal, Tuple

import numpy as np
import torch
from torch import Tensor

from nerfloc_plugins.geometry.projection import project


def coarse_fine_labels(
    points: np.ndarray, valid: np.ndarray, K: np.ndarray, w2c: np.ndarray, width: int, height: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Cell index ``(N_s,)`` (-1: no match) and projected pixel ``(N_s, 2)`` of each point."""
    uv, z = project(points, K, w2c)
    inside = valid & (z > 1e-6) & np.isfinite(uv).all(axis=-1)
    inside &= (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    cells = np.full(len(points), -1, dtype=np.int64)
    cols, rows = np.floor(uv[inside] / 8.0).astype(np.int64).T
    cells[inside] = rows * (width // 8) + cols
    # cells of a partial last row/column (sides not multiples of 8) do not exist
    cells[inside & ((np.floor(uv[:, 0] / 8) >= width // 8) | (np.floor(uv[:, 1] / 8) >= height // 8))] = -1
    return cells, np.where(inside[:, None], uv, 0.0)


def coarse_log_loss(scores: Tensor, gt_cells: Tensor) -> Tensor:
    """Eq. 3: ``-mean log S(i, j)`` over ground-truth pairs; ``scores (B, N_m, N_s)``, ``gt_cells (B, N_s)``."""
    b, j = torch.nonzero(gt_cells >= 0, as_tuple=True)
    if b.numel() == 0:
        return scores.sum() * 0.0
    return -torch.log(scores[b, gt_cells[b, j], j].clamp(min=1e-6)).mean()


def coarse_focal_loss(scores: Tensor, gt_cells: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Focal variant used by the authors' code (LoFTR's): positives and negatives of ``S``."""
    positive = torch.zeros_like(scores, dtype=torch.bool)
    b, j = torch.nonzero(gt_cells >= 0, as_tuple=True)
    positive[b, gt_cells[b, j], j] = True
    s = scores.clamp(1e-6, 1 - 1e-6)
    pos = -alpha * (1 - s[positive]) ** gamma * torch.log(s[positive])
    neg = -(1 - alpha) * s[~positive] ** gamma * torch.log(1 - s[~positive])
    return (pos.mean() if pos.numel() else s.sum() * 0.0) + neg.mean()


def fine_loss(offset: Tensor, target: Tensor, variance: Tensor) -> Tensor:
    """Eq. 4: ``mean_j w_j ||x~_j - x_j||`` with ``w_j = 1 / sigma^2(j)`` (detached, mean-normalised).

    ``offset`` and ``target`` are ``(K, 2)`` pixels; ``variance`` ``(K,)`` is the heatmap's total
    variance.  Normalising the weights to mean 1 keeps the loss in pixels.
    """
    if offset.shape[0] == 0:
        return offset.sum() * 0.0
    w = 1.0 / variance.detach().clamp(min=1e-4)
    w = w / w.mean()
    return (w * torch.linalg.norm(offset - target, dim=-1)).mean()


CoarseLoss = Literal["log", "focal"]


def coarse_loss(scores: Tensor, gt_cells: Tensor, kind: CoarseLoss = "log") -> Tensor:
    return coarse_log_loss(scores, gt_cells) if kind == "log" else coarse_focal_loss(scores, gt_cells)
