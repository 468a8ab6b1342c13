"""Priors of a map-view localizer: top-k reference frames from a pairs file, VLAD retrieval or a pose prior."""

from __future__ import annotations

import time
from typing import List, Optional

import numpy as np

from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.data.hloc_files import read_pairs
from nerfloc_plugins.features.feature_matcher import LocalFeatureMatcher
from nerfloc_plugins.localize.interface.localizer import (
    MapViewLocalizer,
    PosePrior,
)
from nerfloc_plugins.localize.pipeline_config import PipelineConfig
from nerfloc_plugins.localize.stages.retrieval import VladIndex
from nerfloc_plugins.localize.stages.synthesized_views import SynthesizedView, synthesize_views
from nerfloc_plugins.nerf.field_renderer import FieldRenderer


class PriorSource:
    """Top-k reference frames per query: from a pairs file, built-in VLAD retrieval (over the
    mapping frames and, with ``--retrieval.synthesize``, views the map renders), or a
    :class:`PosePrior` (e.g. an absolute pose regressor's pose)."""

    def __init__(
        self, localizer: MapViewLocalizer, config: PipelineConfig, pose_prior: Optional[PosePrior] = None
    ) -> None:
        self.localizer = localizer
        self.config = config
        self.frames = list(localizer.map_frames())
        self.pairs = None
        self.index = None
        self.pose_prior = pose_prior
        self.build_seconds = 0.0
        start = time.perf_counter()
        if pose_prior is not None:
            if not localizer.renders_at_any_pose:
                raise ValueError(f"--pose-prior: {localizer.name} cannot render at a prior pose (it needs a field)")
        elif config.pairs is not None:
            self.pairs = read_pairs(config.pairs)
        elif config.retrieval.from_true_poses:
            pass  # the frames nearest each query's true pose, chosen per query
        else:
            features = config.retrieval.features
            self.extractor = LocalFeatureMatcher(features, device=localizer.device, with_matcher=False).extract
            self.index = VladIndex(config.retrieval, device=localizer.device)
            source = config.retrieval.source
            images = [localizer.retrieval_image(f, source) for f in self.frames]
            for view in self.synthesized_views():
                localizer.add_rendered_view(view.frame, view.rgb, view.depth)
                self.frames.append(view.frame)
                images.append(view.rgb)
            self.index.fit([self.extractor(image).descriptors for image in images])
        self.by_name = {f.name: f for f in self.frames}
        self.build_seconds = time.perf_counter() - start

    def synthesized_views(self) -> List[SynthesizedView]:
        """The views of ``--retrieval.synthesize`` around the mapping frames (none when it is off)."""
        synth = self.config.retrieval.synthesize
        if synth.headings <= 0:
            return []
        renderer = FieldRenderer(synth.map) if synth.map is not None else self.localizer.map_renderer()
        if renderer is None:
            raise ValueError(
                f"--retrieval.synthesize: {self.localizer.name} has no field to render; pass a trained map "
                "with --retrieval.synthesize.map RUN/config.yml"
            )
        return synthesize_views(renderer, self.localizer.map_frames(), synth)

    @property
    def verifies(self) -> bool:
        """Whether the pipeline re-ranks a shortlist by geometric verification (retrieval only)."""
        return self.pose_prior is None and self.config.retrieval.verify > self.config.retrieval.top_k

    def __call__(self, query: PosedFrame, image: np.ndarray) -> List[PosedFrame]:
        """The priors of ``query``: ``top_k`` frames, or the ``verify`` shortlist when :attr:`verifies`."""
        if self.pose_prior is not None:
            return [self.pose_prior.prior_frame(query)]
        top_k = self.config.retrieval.verify if self.verifies else self.config.retrieval.top_k
        if self.pairs is not None:
            names = self.pairs.get(query.name, [])[:top_k]
            missing = [n for n in names if n not in self.by_name]
            if missing:
                raise ValueError(
                    f"{self.config.pairs}: reference {missing[0]!r} is not a mapping frame of this dataset"
                )
            return [self.by_name[n] for n in names]
        if self.config.retrieval.from_true_poses:
            if query.c2w is None or not np.isfinite(query.c2w).all():
                raise ValueError(f"--retrieval.from-true-poses: query {query.name} has no known pose")
            return [self.frames[i] for i in true_pose_neighbours(query.c2w, self.frames, top_k)]
        return [self.frames[i] for i, _ in self.index.search(self.extractor(image).descriptors, top_k)]


def true_pose_neighbours(c2w: np.ndarray, frames: List[PosedFrame], k: int, max_angle_deg: float = 30.0) -> List[int]:
    """Indices of the ``k`` frames nearest the camera-to-world pose ``c2w``: by camera-centre
    distance among the frames whose viewing axis is within ``max_angle_deg`` of its own, then (if
    fewer) by viewing angle among the rest."""
    centres = np.array([f.c2w[:3, 3] for f in frames])
    axes = np.array([f.c2w[:3, 2] for f in frames])
    distance = np.linalg.norm(centres - c2w[:3, 3], axis=1)
    cosine = axes @ c2w[:3, 2]
    alike = cosine >= np.cos(np.radians(max_angle_deg))
    order = [int(i) for i in np.flatnonzero(alike)[np.argsort(distance[alike], kind="stable")]]
    order += [int(i) for i in np.flatnonzero(~alike)[np.argsort(-cosine[~alike], kind="stable")]]
    return order[:k]
