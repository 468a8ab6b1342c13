"""Covisible training pairs from poses and rendered points (when no pairs file is given).

The overlap of (query ``q``, reference ``r``) is the fraction of ``r``'s valid rendered points
that project inside ``q``'s image in front of its camera (no occlusion test, like the
ground-truth association of NeRFMatch Sec. 4.3).  Each frame keeps its ``top_k`` most
overlapping other frames above ``min_overlap`` (PixLoc's pairs use the top-20 covisible).

Cost grows linearly with the number of frames: the exact overlap is computed only for each
frame's ``candidates`` nearest frames (k-d trees over the camera centres and over the centroids
of the points each frame sees; frames that look at the same place have nearby centroids).  A
scene with at most ``candidates + 1`` frames scores every pair, so small scenes get exactly the
all-pairs result.  Poses: c2w, OpenCV axes (``+z`` forward), dataset units.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
from scipy.spatial import cKDTree

from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.geometry.projection import project

DEFAULT_CANDIDATES = 100
"""Frames per frame whose overlap is computed exactly (the rest cannot reach the top-k in practice)."""


def overlap(points: np.ndarray, query: PosedFrame) -> float:
    """Fraction of ``points (N, 3)`` (dataset frame) inside ``query``'s image, in front."""
    if len(points) == 0:
        return 0.0
    return float(_inside(points, query).mean())


def _inside(points: np.ndarray, query: PosedFrame) -> np.ndarray:
    intr = query.intrinsics
    uv, z = project(points, intr.matrix(), invert_rigid(query.c2w))
    return (z > 1e-6) & (uv[:, 0] >= 0) & (uv[:, 0] < intr.width) & (uv[:, 1] >= 0) & (uv[:, 1] < intr.height)


class CovisibilityIndex:
    """Overlaps of frames with rendered points, each frame compared with its nearest candidates."""

    def __init__(
        self, frames: Sequence[PosedFrame], points: Sequence[np.ndarray], candidates: int = DEFAULT_CANDIDATES
    ) -> None:
        if len(frames) != len(points):
            raise ValueError(f"covisibility: {len(frames)} frames but {len(points)} point sets")
        self.frames = list(frames)
        self.points = [np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in points]
        self.candidates = candidates
        self.centres = np.stack([np.asarray(f.c2w)[:3, 3] for f in self.frames]) if self.frames else np.zeros((0, 3))
        looks, depths = [], []
        for centre, pts in zip(self.centres, self.points):
            if len(pts):
                look = pts.mean(axis=0)
                depths.append(np.linalg.norm(look - centre))
            else:
                look = centre
            looks.append(look)
        self.looks = np.stack(looks) if looks else np.zeros((0, 3))
        self.typical_depth = float(np.median(depths)) if depths else 1.0
        """Median distance from a camera to the centroid of what it sees (places frames without points)."""
        self._centre_tree = cKDTree(self.centres) if self.frames else None
        self._look_tree = cKDTree(self.looks) if self.frames else None

    def candidates_near(self, centre: np.ndarray, look: np.ndarray) -> np.ndarray:
        """Indices of up to ``2 * candidates`` frames: nearest by camera centre and by viewed centroid."""
        n = len(self.frames)
        if n <= self.candidates + 1:
            return np.arange(n)
        k = self.candidates
        near_centre = self._centre_tree.query(centre, k=k)[1]
        near_look = self._look_tree.query(look, k=k)[1]
        return np.unique(np.concatenate([near_centre, near_look]))

    def overlaps(self, query: PosedFrame, references: np.ndarray) -> np.ndarray:
        """Overlap of each reference's points with ``query``'s image, in one projection."""
        sets = [self.points[r] for r in references]
        sizes = np.array([len(p) for p in sets])
        if sizes.sum() == 0:
            return np.zeros(len(references))
        inside = _inside(np.concatenate(sets), query)
        owner = np.repeat(np.arange(len(references)), sizes)
        counts = np.bincount(owner, weights=inside, minlength=len(references))
        return np.where(sizes > 0, counts / np.maximum(sizes, 1), 0.0)

    def pairs(self, top_k: int = 20, min_overlap: float = 0.3) -> List[Tuple[int, int, float]]:
        """``(query index, reference index, overlap)`` for every frame's top-k covisible references."""
        out = []
        for q, frame in enumerate(self.frames):
            refs = self.candidates_near(self.centres[q], self.looks[q])
            refs = refs[refs != q]
            scores = self.overlaps(frame, refs)
            order = sorted(((s, r) for s, r in zip(scores.tolist(), refs.tolist()) if s >= min_overlap), reverse=True)
            out += [(q, r, s) for s, r in order[:top_k]]
        return out

    def best_reference(self, frame: PosedFrame) -> int:
        """The indexed frame whose points overlap ``frame`` (a pose without rendered points) most."""
        c2w = np.asarray(frame.c2w)
        centre = c2w[:3, 3]
        look = centre + c2w[:3, 2] * self.typical_depth
        refs = self.candidates_near(centre, look)
        return int(refs[int(np.argmax(self.overlaps(frame, refs)))])


def covisible_pairs(
    frames: Sequence[PosedFrame],
    points: Sequence[np.ndarray],
    top_k: int = 20,
    min_overlap: float = 0.3,
    candidates: int = DEFAULT_CANDIDATES,
) -> List[Tuple[int, int, float]]:
    """``(query index, reference index, overlap)`` for every frame's top-k covisible references."""
    return CovisibilityIndex(frames, points, candidates).pairs(top_k, min_overlap)
