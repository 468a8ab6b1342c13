"""Pose hypotheses: every pose a stage of the pipeline can give for one query, kept side by side.

A stage that can give several poses keeps them instead of only its first answer: direct 2D-3D
matching gives its PnP pose and further poses from the matches the earlier poses left as outliers
(sequential RANSAC: a copy of a texture elsewhere in the room is a second consistent model), a
verified retrieval shortlist gives the pose of each candidate solved alone beside the merged
one, a fallback localizer its own, an APR prior its regressed pose.  Render verification
(:mod:`~nerfloc_plugins.localize.stages.verification`) then asks the map which one the query shows.

Poses are world-to-camera, OpenCV axes, dataset metric frame (as everywhere in ``localize/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from nerfloc_plugins.data.frames import Intrinsics
from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.localize.stages.pnp import PnPConfig, PnPResult, solve_pnp


@dataclass
class PoseHypothesis:
    """One candidate pose of a query and the evidence behind it."""

    w2c: np.ndarray
    """4x4 world-to-camera pose (dataset frame, OpenCV axes)."""
    num_inliers: int
    num_matches: int
    source: str
    """What gave it: ``direct``, ``direct#2`` (second model of the same matches), ``views``
    (merged shortlist), ``view:NAME`` (one retrieved frame alone), ``prior``, a fallback's name."""
    reprojection_px: Optional[float] = None
    score: Optional[float] = None
    """Render-verification score (set by the verifier; ``None`` when not scored)."""

    def record(self) -> dict:
        """JSON-able form (journal, reports)."""
        return {
            "w2c": np.asarray(self.w2c, dtype=np.float64).tolist(),
            "num_inliers": int(self.num_inliers),
            "num_matches": int(self.num_matches),
            "source": self.source,
            "reprojection_px": self.reprojection_px,
            "score": self.score,
        }

    @classmethod
    def from_record(cls, record: dict) -> "PoseHypothesis":
        return cls(
            np.asarray(record["w2c"], dtype=np.float64),
            record["num_inliers"],
            record["num_matches"],
            record["source"],
            record.get("reprojection_px"),
            record.get("score"),
        )


def further_models(
    points2d: np.ndarray,
    points3d: np.ndarray,
    intrinsics: Intrinsics,
    first: PnPResult,
    config: PnPConfig,
    count: int,
    min_inliers: int,
    min_threshold_px: float = 0.0,
) -> List[PnPResult]:
    """Up to ``count`` further PnP models of the same 2D-3D matches (sequential RANSAC): each
    solves the matches that no earlier model explained; a model needs ``min_inliers``.  Inlier
    masks index the full match arrays."""
    models: List[PnPResult] = []
    used = first.inliers.copy() if first.success else np.zeros(len(points2d), dtype=bool)
    for _ in range(count):
        rest = np.flatnonzero(~used)
        if len(rest) < max(min_inliers, 4):
            break
        result = solve_pnp(points2d[rest], points3d[rest], intrinsics, config, min_threshold_px)
        if not result.success or result.num_inliers < min_inliers:
            break
        inliers = np.zeros(len(points2d), dtype=bool)
        inliers[rest[result.inliers]] = True
        models.append(PnPResult(result.w2c, inliers))
        used |= inliers
    return models


def is_same_place(a: np.ndarray, b: np.ndarray, distance_m: float, angle_deg: float) -> bool:
    """Whether two world-to-camera poses are within ``distance_m`` and ``angle_deg``."""
    dt, dr = pose_error(a, b)
    return dt <= distance_m and dr <= angle_deg


def distinct_hypotheses(
    hypotheses: Sequence[PoseHypothesis], limit: int, distance_m: float, angle_deg: float
) -> List[PoseHypothesis]:
    """At most ``limit`` hypotheses, no two within ``distance_m`` / ``angle_deg`` of each other.

    The first one (the pipeline's own choice) always stays first; the rest are taken by inlier
    count, and a hypothesis close to one already kept is dropped (the kept one has more inliers,
    or is the pipeline's choice)."""
    if not hypotheses:
        return []
    first, rest = hypotheses[0], sorted(hypotheses[1:], key=lambda h: -h.num_inliers)
    kept = [first]
    for hyp in rest:
        if len(kept) >= limit:
            break
        if not any(is_same_place(hyp.w2c, k.w2c, distance_m, angle_deg) for k in kept):
            kept.append(hyp)
    return kept
