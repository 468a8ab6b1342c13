"""NeuraLoc localizer (Sec. III-B): query keypoints vs 3D points rendered in the reference frustum.

1. prior: retrieval (shared pipeline); 2. query: the descriptor teacher's keypoints and
descriptors ``g2D`` and the context teacher's features ``f2D`` read at the keypoints (the same
teachers the map was distilled from); 3. map: depth, ``g3D`` and ``f3D`` rendered at the
reference pose on a grid of every ``render_stride``-th pixel and back-projected to 3D (the
points in the reference's frustum); 4. matching graph (eq. 12) ``e_ij = cos(g2D_i, g3D_j) +
alpha cos(f2D_i, f3D_j)``, edges with context similarity below ``context_threshold`` removed;
5. Hungarian assignment (eq. 13) keeping edges scoring at least ``min_score``; 6. PnP + RANSAC;
optional shared refinement (re-render at the estimate).

Ablations (Table IV): ``--neuraloc.context-threshold None`` (no candidate filter),
``--neuraloc.matching mnn`` (no graph matching), ``--neuraloc.context-weight 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch

from nerfloc_plugins.data.frames import Intrinsics, PosedFrame, load_frame_rgb
from nerfloc_plugins.features.matching import blockwise_mutual_matches, cosine_similarity, hungarian_matches
from nerfloc_plugins.localize.interface.localizer import MapView, QueryDescription
from nerfloc_plugins.localize.interface.specs import LocalizerSpec
from nerfloc_plugins.localize.localizers.field_localizer import FieldLocalizer
from nerfloc_plugins.methods.neuraloc.neuraloc_model import NeuraLocModelConfig
from nerfloc_plugins.methods.neuraloc.neuraloc_teachers import NeuraLocTeachers, sample_map


@dataclass
class NeuraLocLocalizerConfig:
    context_weight: float = 0.0
    """alpha of eq. 12 (not given in the paper).  With the offline ALIKED-deep context teacher
    alpha in {0.25, 0.5, 1} scored no better than 0 on the example scene (docs/neuraloc.md): the
    context then acts through the candidate filter only.  Worth raising with SAM features."""
    context_threshold: Optional[float] = 0.3
    """Drop candidate pairs whose context cosine similarity is below this (None: keep all)."""
    min_score: float = 0.6
    """Keep assigned pairs with ``e_ij`` at least this (on the ``1 + alpha`` scale)."""
    matching: Literal["hungarian", "mnn"] = "hungarian"
    centre_context: bool = True
    """Subtract the query's mean context feature from both sides before the cosine (the
    offline context teacher's features share a large common component; see docs/neuraloc.md)."""
    render_stride: int = 4
    """Map points: one rendered ray every this many query pixels."""
    min_accumulation: float = 0.5


class NeuraLocLocalizer(FieldLocalizer):
    name = "neuraloc"

    def __init__(self, load_config: Path, config: Optional[NeuraLocLocalizerConfig] = None) -> None:
        super().__init__(load_config)
        self.config = config or NeuraLocLocalizerConfig()
        self.model.render_normals = False
        self.teachers = NeuraLocTeachers(self.model.config.teachers, self.device)

    def map_intrinsics(self, intrinsics: Intrinsics) -> Intrinsics:
        s = self.config.render_stride
        return intrinsics.scaled_to(max(1, intrinsics.width // s), max(1, intrinsics.height // s))

    def describe_query(self, frame: PosedFrame) -> QueryDescription:
        image = load_frame_rgb(frame)
        out = self.teachers(image)
        context = sample_map(out.context_map, out.keypoints, out.image_size)
        return QueryDescription(
            keypoints=out.keypoints.double().cpu().numpy(),
            descriptors=torch.nn.functional.normalize(out.keypoint_descriptors.float(), dim=-1).to(self.device),
            intrinsics=frame.intrinsics,
            image=image,
            context=torch.nn.functional.normalize(context, dim=-1).to(self.device),
        )

    def map_view(self, c2w: np.ndarray, reference: Optional[PosedFrame] = None) -> MapView:
        intr = self.map_intrinsics((reference or self._map_frames[0]).intrinsics)
        return self.rendered_feature_view(c2w, intr, context="context", min_accumulation=self.config.min_accumulation)

    def matching_scores(self, query: QueryDescription, view: MapView, rows: slice = slice(None)) -> torch.Tensor:
        """Eq. 12 scores ``(N, M)`` (or the query ``rows`` of it); filtered candidates are ``-inf``."""
        descriptor_sim = cosine_similarity(query.descriptors[rows], view.descriptors)
        q_ctx, v_ctx = query.context, view.context
        if self.config.centre_context:
            mean = q_ctx.mean(dim=0, keepdim=True)
            q_ctx, v_ctx = q_ctx - mean, v_ctx - mean
        context_sim = cosine_similarity(q_ctx[rows], v_ctx)
        scores = descriptor_sim + self.config.context_weight * context_sim
        if self.config.context_threshold is not None:
            scores = scores.masked_fill(context_sim < self.config.context_threshold, float("-inf"))
        return scores

    def match(self, query: QueryDescription, view: MapView) -> np.ndarray:
        if len(query.descriptors) == 0 or len(view.descriptors) == 0:
            return np.zeros((0, 2), dtype=int)
        if self.config.matching == "hungarian":
            scores = self.matching_scores(query, view)
            matches, _ = hungarian_matches(scores.clamp(min=-1e3), self.config.min_score)
        else:
            matches, _ = blockwise_mutual_matches(
                lambda s, e: self.matching_scores(query, view, slice(s, e)),
                len(query.descriptors),
                self.config.min_score,
            )
        return matches.cpu().numpy()


NEURALOC_LOCALIZER = LocalizerSpec(
    name="neuraloc",
    serves=NeuraLocModelConfig,
    build=NeuraLocLocalizer,
    options=NeuraLocLocalizerConfig,
    help="NeuraLoc maps: teacher keypoints vs descriptor and context fields, Hungarian matching",
)
