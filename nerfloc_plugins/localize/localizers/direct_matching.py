"""Direct 2D-3D matching: the query's features against every 3D point of the map at once.

No retrieval: each query descriptor is compared with the descriptors of all lifted map points
(the classical baseline's map: every mapping image's keypoints with their depth-lifted 3D
points).  A match is kept when it passes a **spatial ratio test**: Lowe's ratio between the best
neighbour and the best neighbour whose 3D point lies more than ``min_separation_m`` from the
best one's.  The same surface point seen in many mapping images is therefore no ambiguity,
while a texture repeated elsewhere in the room is (Sattler et al.'s direct matching, without
the prioritisation of Active Search).  Large maps are searched through an inverted file: map
descriptors are grouped by their nearest of ``num_words`` k-means centres, and each query
descriptor is compared only with the points of its ``probe`` nearest centres.  The matches go straight to PnP, so it is a
scene-coordinate localizer in the pipeline (no prior, no map views, the ``match`` stage is the
search).  It finds the place when the nearest mapping images look elsewhere but some image of
the map saw what the query sees: retrieval of whole images fails there.

Units and frames: 3D points in the dataset's metric frame (metres); pixels of the query image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.localize.interface.localizer import QueryDescription, SceneCoordinateLocalizer
from nerfloc_plugins.localize.localizers.classical import ClassicalLocalizer


@dataclass
class DirectMatchingConfig:
    candidates: int = 20
    """Nearest map descriptors looked at per query descriptor (the spatial ratio test's pool)."""
    min_separation_m: float = 0.15
    """A second neighbour counts as an ambiguity only this far (metres) from the best one's point."""
    ratio: float = 0.85
    """Lowe's ratio on descriptor distances (``d = sqrt(2 - 2 cos)``)."""
    min_similarity: float = 0.75
    """Cosine similarity the best neighbour needs (RootSIFT: ~0.75)."""
    chunk: int = 65536
    """Map descriptors compared per block (bounds memory: query keypoints x chunk scores)."""
    exhaustive_below: int = 50000
    """Compare with every map point when the map has fewer; else use the inverted file."""
    num_words: int = 256
    """k-means centres of the inverted file (maps of ``exhaustive_below`` points or more)."""
    probe: int = 16
    """Nearest centres whose points each query descriptor is compared with."""


def nearest_map_points(query: Tensor, unit_database: Tensor, k: int, chunk: int) -> Tuple[Tensor, Tensor]:
    """Top-``k`` cosine similarities ``(N, k)`` and ``unit_database`` indices ``(N, k)``, best
    first, computed block by block over the database (rows already L2-normalised, once)."""
    query = torch.nn.functional.normalize(query.float(), dim=-1)
    best_values = torch.full((len(query), 0), float("-inf"), device=query.device)
    best_indices = torch.zeros((len(query), 0), dtype=torch.long, device=query.device)
    for start in range(0, len(unit_database), chunk):
        scores = query @ unit_database[start : start + chunk].T
        top = scores.topk(min(k, scores.shape[1]), dim=1)
        values = torch.cat([best_values, top.values], dim=1)
        indices = torch.cat([best_indices, top.indices + start], dim=1)
        order = values.topk(min(k, values.shape[1]), dim=1).indices
        best_values, best_indices = values.gather(1, order), indices.gather(1, order)
    return best_values, best_indices


class InvertedFile:
    """Map descriptors grouped by nearest k-means centre; top-k search over the ``probe`` nearest
    groups of each query descriptor (approximate :func:`nearest_map_points`)."""

    def __init__(self, descriptors: Tensor, num_words: int, seed: int = 0) -> None:
        from nerfloc_plugins.localize.stages.retrieval import kmeans

        unit = torch.nn.functional.normalize(descriptors.float(), dim=-1)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        sample = unit[torch.randperm(len(unit), generator=gen)[:100000].to(unit.device)]
        self.words = torch.nn.functional.normalize(kmeans(sample, num_words, iterations=10, seed=seed), dim=-1)
        assign = torch.cat([(block @ self.words.T).argmax(dim=1) for block in unit.split(65536)])
        self.order = torch.argsort(assign)
        self.sorted = unit[self.order]
        counts = torch.bincount(assign, minlength=len(self.words))
        self.starts = torch.cat([torch.zeros(1, dtype=torch.long, device=counts.device), counts.cumsum(0)])

    def search(self, query: Tensor, k: int, probe: int) -> Tuple[Tensor, Tensor]:
        query = torch.nn.functional.normalize(query.float(), dim=-1)
        probed = (query @ self.words.T).topk(min(probe, len(self.words)), dim=1).indices  # (N, P)
        values = torch.full((len(query), k), float("-inf"), device=query.device)
        indices = torch.zeros((len(query), k), dtype=torch.long, device=query.device)
        for word in torch.unique(probed).tolist():
            start, end = int(self.starts[word]), int(self.starts[word + 1])
            if end == start:
                continue
            rows = (probed == word).any(dim=1).nonzero()[:, 0]
            scores = query[rows] @ self.sorted[start:end].T
            top = scores.topk(min(k, end - start), dim=1)
            merged_v = torch.cat([values[rows], top.values], dim=1)
            merged_i = torch.cat([indices[rows], self.order[start + top.indices]], dim=1)
            best = merged_v.topk(k, dim=1).indices
            values[rows], indices[rows] = merged_v.gather(1, best), merged_i.gather(1, best)
        return values, indices


def spatial_ratio_matches(
    similarity: Tensor, indices: Tensor, points: Tensor, config: DirectMatchingConfig
) -> Tuple[np.ndarray, np.ndarray]:
    """``(query index, map point index)`` of the matches passing the spatial ratio test, from the
    top-k lists of :func:`nearest_map_points` and the map's ``(M, 3)`` points."""
    if similarity.shape[1] == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    best = indices[:, 0]
    separated = torch.linalg.norm(points[indices] - points[best][:, None], dim=-1) > config.min_separation_m
    second = torch.where(separated, similarity, torch.full_like(similarity, -1.0)).max(dim=1).values
    d_best = torch.sqrt((2 - 2 * similarity[:, 0]).clamp(min=0))
    d_second = torch.sqrt((2 - 2 * second).clamp(min=0))
    keep = (d_best < config.ratio * d_second) & (similarity[:, 0] > config.min_similarity)
    rows = keep.nonzero()[:, 0]
    return rows.cpu().numpy(), best[rows].cpu().numpy()


class DirectMatchingLocalizer(SceneCoordinateLocalizer):
    """The classical baseline's map searched as one set of 3D points (see module docstring)."""

    def __init__(self, classical: ClassicalLocalizer, config: Optional[DirectMatchingConfig] = None) -> None:
        self.classical = classical
        self.config = config or DirectMatchingConfig()
        self.name = f"{classical.name}-direct"
        self.scene = classical.scene
        self.device = classical.device
        views = list(classical.views())
        if not views:
            raise ValueError(f"{classical.parser.config.data}: the map has no mapping images to match against")
        self.views = views
        self.descriptors = torch.nn.functional.normalize(
            torch.cat([v.descriptors for v in views]).to(self.device).float(), dim=-1
        )  # unit rows, normalised once for every query
        self.points = np.concatenate([v.points3d for v in views])
        self._points = torch.from_numpy(self.points).float().to(self.device)
        # which view and keypoint each map point comes from (the report's match figure)
        self.owner_view = np.concatenate([np.full(len(v.points3d), i) for i, v in enumerate(views)])
        self.owner_keypoint = np.concatenate([np.arange(len(v.points3d)) for v in views])
        self._point_index = {p.tobytes(): i for i, p in enumerate(self.points)}
        cfg = self.config
        large = len(self.points) >= cfg.exhaustive_below
        self.inverted_file = InvertedFile(self.descriptors, cfg.num_words) if large else None

    def map_frames(self) -> List[PosedFrame]:
        return self.classical.map_frames()

    def query_frames(self, split: str) -> List[PosedFrame]:
        return self.classical.query_frames(split)

    def describe_query(self, frame: PosedFrame) -> QueryDescription:
        return self.classical.describe_query(frame)

    def describer(self) -> ClassicalLocalizer:
        return self.classical

    def regress_correspondences(self, query: QueryDescription) -> Tuple[np.ndarray, np.ndarray]:
        """Query pixels ``(K, 2)`` and their matched map points ``(K, 3)``."""
        cfg = self.config
        if self.inverted_file is not None:
            similarity, indices = self.inverted_file.search(query.descriptors, cfg.candidates, cfg.probe)
        else:
            similarity, indices = nearest_map_points(query.descriptors, self.descriptors, cfg.candidates, cfg.chunk)
        rows, points = spatial_ratio_matches(similarity, indices, self._points, cfg)
        return query.keypoints[rows], self.points[points]

    def match_evidence(self, query: QueryDescription, points2d: np.ndarray, points3d: np.ndarray, inliers: np.ndarray):
        """The mapping image holding most of the inlier points, with the matches to its keypoints."""
        if len(points3d) == 0 or not inliers.any():
            return None
        point = np.array([self._point_index[p.tobytes()] for p in np.asarray(points3d, dtype=self.points.dtype)])
        keypoint = {k.tobytes(): i for i, k in enumerate(query.keypoints)}
        rows = np.array([keypoint[k.tobytes()] for k in np.asarray(points2d, dtype=query.keypoints.dtype)])
        best = np.bincount(self.owner_view[point[inliers]]).argmax()
        mine = self.owner_view[point] == best
        matches = np.stack([rows[mine], self.owner_keypoint[point[mine]]], axis=1)
        return self.views[best], matches, inliers[mine]

    def map_size_bytes(self) -> int:
        return self.classical.map_size_bytes()
