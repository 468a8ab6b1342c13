"""How well a map-view localizer's map descriptors agree with its query descriptors, apart from
retrieval and pose solving: the diagnosis of a method that matches too few correct points.

For each query with a known pose, the map features are taken **at the query's true pose** (a
localizer that renders at any pose renders there; the others use the mapping frame whose camera is
nearest). Each map keypoint's 3D point is projected into the query with the true pose; the query
keypoint's **true partner** is the map keypoint projecting nearest to it, within
``max_reprojection_px`` pixels of the coarser of the two images (map views rendered at a lower
resolution than the query's count in their own pixels) plus the localizer's
``keypoint_precision_px`` (e.g. NeRFMatch-Mini's cell centres). Then, by the cosine similarity of
the descriptors:

* **top-1 / top-5**: share of query keypoints with a partner whose partner scores best / among the
  five best of all the view's map keypoints (what a nearest-neighbour matcher can find);
* **median rank** of the partner (1 = best);
* **match precision**: share of the localizer's own matches (:meth:`MapViewLocalizer.match`, with
  its mutual checks, thresholds, Hungarian assignment...) that land within ``max_reprojection_px``
  of where their 3D point projects with the true pose, and how many matches it makes.

Poses are camera-to-world with OpenCV axes in the dataset frame, as everywhere in nerfloc.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor
from torch.nn import functional as F

from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.geometry.projection import project
from nerfloc_plugins.localize.interface.localizer import MapView, MapViewLocalizer, QueryDescription


@dataclass
class AgreementConfig:
    max_reprojection_px: float = 3.0
    """How far a map keypoint may project from a query keypoint to be its partner (pixels of the
    coarser of query and map view; see the module docstring)."""
    chunk_rows: int = 4096
    """Query descriptors scored against the view at a time (bounded memory on large views)."""


@dataclass
class QueryAgreement:
    """One query's figures (see the module docstring); ``nan`` where it has no partner at all."""

    name: str
    keypoints: int
    with_partner: int
    top1: float
    top5: float
    median_rank: float
    matches: int
    match_precision: float
    partner_px: float
    """The partner distance used (query pixels)."""


def partners(query: QueryDescription, view: MapView, c2w: np.ndarray, max_px: float) -> np.ndarray:
    """``(N,)`` index of each query keypoint's true partner among the view's keypoints (-1: none
    within ``max_px``), from the view's 3D points projected with the query's true ``c2w``."""
    uv, z = project(view.points3d, query.intrinsics.matrix(), invert_rigid(c2w))
    seen = np.isfinite(uv).all(axis=1) & (z > 0)
    out = np.full(len(query.keypoints), -1)
    if not seen.any() or len(query.keypoints) == 0:
        return out
    candidates = np.flatnonzero(seen)
    dist, nearest = cKDTree(uv[candidates]).query(query.keypoints, distance_upper_bound=max_px)
    found = np.isfinite(dist)
    out[found] = candidates[nearest[found]]
    return out


def partner_ranks(query: Tensor, view: Tensor, partner: np.ndarray, chunk_rows: int) -> np.ndarray:
    """Rank (1 = best) of each partner's cosine similarity among all of the view's descriptors, for
    the query rows that have a partner (``partner >= 0``)."""
    rows = np.flatnonzero(partner >= 0)
    ranks = np.empty(len(rows), dtype=np.int64)
    if len(rows) == 0:
        return ranks
    v = F.normalize(view.float(), dim=-1)
    q_all = F.normalize(query.float(), dim=-1)
    for start in range(0, len(rows), chunk_rows):
        chunk = torch.as_tensor(rows[start : start + chunk_rows], device=q_all.device)
        scores = q_all[chunk] @ v.T
        target = torch.as_tensor(partner[rows[start : start + chunk_rows]], device=scores.device)
        true_score = scores.gather(1, target[:, None])
        ranks[start : start + len(chunk)] = (1 + (scores > true_score).sum(dim=1)).cpu().numpy()
    return ranks


def view_at_true_pose(localizer: MapViewLocalizer, frame: PosedFrame) -> MapView:
    """The map's features at the query's true pose (rendered there, or at the nearest mapping frame)."""
    if localizer.renders_at_any_pose:
        return localizer.map_view(frame.c2w, frame)
    frames = localizer.map_frames()
    centres = np.array([f.c2w[:3, 3] for f in frames])
    nearest = frames[int(np.argmin(np.linalg.norm(centres - frame.c2w[:3, 3], axis=1)))]
    return localizer.map_view(nearest.c2w, nearest)


def query_agreement(
    localizer: MapViewLocalizer, frame: PosedFrame, config: Optional[AgreementConfig] = None
) -> QueryAgreement:
    """:class:`QueryAgreement` of one query frame with a true pose."""
    config = config or AgreementConfig()
    query = localizer.describe_query(frame)
    view = view_at_true_pose(localizer, frame)
    coarser = max(1.0, query.intrinsics.width / view.intrinsics.width)
    max_px = config.max_reprojection_px * coarser + localizer.keypoint_precision_px
    partner = partners(query, view, frame.c2w, max_px)
    ranks = partner_ranks(query.descriptors, view.descriptors.to(query.descriptors.device), partner, config.chunk_rows)
    matches, pixels = localizer.correspondences(query, view)
    if len(matches):
        uv, z = project(view.points3d[matches[:, 1]], query.intrinsics.matrix(), invert_rigid(frame.c2w))
        error = np.linalg.norm(uv - pixels, axis=1)
        precision = float(np.mean((z > 0) & (error <= max_px)))
    else:
        precision = float("nan")
    has = len(ranks) > 0
    return QueryAgreement(
        name=frame.name,
        keypoints=len(query.keypoints),
        with_partner=len(ranks),
        top1=float(np.mean(ranks == 1)) if has else float("nan"),
        top5=float(np.mean(ranks <= 5)) if has else float("nan"),
        median_rank=float(np.median(ranks)) if has else float("nan"),
        matches=len(matches),
        match_precision=precision,
        partner_px=max_px,
    )


def descriptor_agreement(
    localizer: MapViewLocalizer, frames: Sequence[PosedFrame], config: Optional[AgreementConfig] = None
) -> Dict[str, object]:
    """:func:`summarise` of :func:`query_agreement` over ``frames``."""
    return summarise([query_agreement(localizer, f, config) for f in frames])


def summarise(per_query: Sequence[QueryAgreement]) -> Dict[str, object]:
    """The summary (top-1 / top-5 pooled over all query keypoints with a partner; medians of the
    per-query median rank, match count and precision) and the per-query figures."""
    weights = np.array([q.with_partner for q in per_query], dtype=float)

    def pooled(key: str) -> float:
        values = np.array([getattr(q, key) for q in per_query], dtype=float)
        keep = weights > 0
        return float(np.sum(values[keep] * weights[keep]) / weights[keep].sum()) if keep.any() else float("nan")

    def median(key: str) -> float:
        values = np.array([getattr(q, key) for q in per_query], dtype=float)
        return float(np.nanmedian(values)) if np.isfinite(values).any() else float("nan")

    summary = {
        "queries": len(per_query),
        "partners_per_query": median("with_partner"),
        "top1": pooled("top1"),
        "top5": pooled("top5"),
        "median_rank": median("median_rank"),
        "matches_per_query": median("matches"),
        "match_precision": median("match_precision"),
        "partner_px": median("partner_px"),
    }
    return {"summary": summary, "queries": [asdict(q) for q in per_query]}
