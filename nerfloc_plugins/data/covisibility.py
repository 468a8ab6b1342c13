"""Covisible training pairs from poses and rendered points (when no pairs file is given).

The overlap of (query ``q``, reference ``r``) is the fraction of ``r``'s valid rendered points
that project inside ``q``'s image in front of its camera (no occlusion test, like the
ground-truth association of NeRFMatch Sec. 4.3).  Each frame keeps its ``top_k`` most
overlapping other frames above ``min_overlap`` (PixLoc's pairs use the top-20 covisible).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.geometry.projection import project


def overlap(points: np.ndarray, query: PosedFrame) -> float:
    """Fraction of ``points (N, 3)`` (dataset frame) inside ``query``'s image, in front."""
    if len(points) == 0:
        return 0.0
    intr = query.intrinsics
    uv, z = project(points, intr.matrix(), invert_rigid(query.c2w))
    inside = (z > 1e-6) & (uv[:, 0] >= 0) & (uv[:, 0] < intr.width) & (uv[:, 1] >= 0) & (uv[:, 1] < intr.height)
    return float(inside.mean())


def covisible_pairs(
    frames: Sequence[PosedFrame], points: Sequence[np.ndarray], top_k: int = 20, min_overlap: float = 0.3
) -> List[Tuple[int, int, float]]:
    """``(query index, reference index, overlap)`` for every frame's top-k covisible references."""
    pairs = []
    for q, frame in enumerate(frames):
        scores = [(overlap(points[r], frame), r) for r in range(len(frames)) if r != q]
        scores = sorted((s for s in scores if s[0] >= min_overlap), reverse=True)[:top_k]
        pairs += [(q, r, s) for s, r in scores]
    return pairs
