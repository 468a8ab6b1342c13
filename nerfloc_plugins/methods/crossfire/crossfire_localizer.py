"""CrossFire localizer (Sec. 3.3): dense CNN descriptors vs descriptors rendered at the prior.

1. prior: retrieval (shared pipeline); 2. query descriptors: the CNN's ``H/4 x W/4`` map, one
keypoint per cell at its centre (``4 i + 2``); 3. map: descriptors and depth rendered at the
prior at ``1 / stride`` of the query resolution (paper: 161x120 for 7-Scenes), back-projected
to 3D with the rendered z-depth; 4. mutual nearest neighbours with cosine threshold ``theta``;
5. PnP + RANSAC; iterations re-render at the estimate (shared pipeline, default 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from nerfloc_plugins.data.frames import Intrinsics, PosedFrame, load_frame_rgb
from nerfloc_plugins.features.matching import mutual_nearest_descriptors
from nerfloc_plugins.geometry.projection import pixel_grid
from nerfloc_plugins.localize.interface.localizer import MapView, QueryDescription
from nerfloc_plugins.localize.interface.specs import LocalizerSpec
from nerfloc_plugins.localize.localizers.field_localizer import FieldLocalizer
from nerfloc_plugins.methods.crossfire.crossfire_model import CrossFireModelConfig


@dataclass
class CrossFireLocalizerConfig:
    min_similarity: float = 0.8
    """theta: cosine threshold of the mutual matches (the paper does not give its value)."""
    render_scale: int = 1
    """Rendered map resolution relative to the CNN's descriptor map (paper: 1, i.e. 161x120 for
    640x480 queries).  2 renders 4x the rays and gives finer 3D points: worth it for small queries."""


class CrossFireLocalizer(FieldLocalizer):
    name = "crossfire"

    def __init__(self, load_config: Path, config: Optional[CrossFireLocalizerConfig] = None) -> None:
        super().__init__(load_config)
        self.config = config or CrossFireLocalizerConfig()
        self.stride = self.model.config.stride

    def map_intrinsics(self, intrinsics: Intrinsics) -> Intrinsics:
        """The rendering camera: the query camera at ``render_scale / stride`` resolution."""
        k = self.config.render_scale
        return intrinsics.scaled_to(intrinsics.width * k // self.stride, intrinsics.height * k // self.stride)

    def describe_query(self, frame: PosedFrame) -> QueryDescription:
        image = load_frame_rgb(frame)
        desc = self.model.query_descriptors(torch.from_numpy(image))
        h, w = desc.shape[:2]
        centres = (pixel_grid(w, h) - 0.5) * self.stride + self.stride / 2  # cell centres in image pixels
        return QueryDescription(
            keypoints=centres.reshape(-1, 2),
            descriptors=torch.nn.functional.normalize(desc.reshape(h * w, -1), dim=-1),
            intrinsics=frame.intrinsics,
            image=image,
        )

    def map_view(self, c2w: np.ndarray, reference: Optional[PosedFrame] = None) -> MapView:
        intr = self.map_intrinsics((reference or self._map_frames[0]).intrinsics)
        return self.rendered_feature_view(c2w, intr)

    def match(self, query: QueryDescription, view: MapView) -> np.ndarray:
        if len(query.descriptors) == 0 or len(view.descriptors) == 0:
            return np.zeros((0, 2), dtype=int)
        matches, _ = mutual_nearest_descriptors(query.descriptors, view.descriptors, self.config.min_similarity)
        return matches.cpu().numpy()


CROSSFIRE_LOCALIZER = LocalizerSpec(
    name="crossfire",
    serves=CrossFireModelConfig,
    build=CrossFireLocalizer,
    options=CrossFireLocalizerConfig,
    help="CrossFire maps: CNN query descriptors vs descriptors rendered at the prior",
)
