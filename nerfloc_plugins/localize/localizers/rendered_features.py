"""Localizer for a plain trained field: local features on views the field renders.

The map is only the trained field (``nerfloc-nerfacto``): at a pose prior the field renders
RGB and depth at ``render_width`` pixels, SIFT keypoints of the rendering are lifted to 3D
with the rendered depth, and the query's SIFT keypoints are matched to them.  Because it can
render anywhere, iterative refinement (render at the estimate, match again) and photometric
refinement through the field apply.  The paper methods replace SIFT-on-renderings by their
own descriptors (CrossFire, NeRFMatch, NeuraLoc) behind the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from nerfloc_plugins.data.frames import PosedFrame, load_frame_rgb
from nerfloc_plugins.features.feature_matcher import FeatureMatchConfig, match_descriptors
from nerfloc_plugins.features.local_features import SiftConfig, SiftExtractor
from nerfloc_plugins.localize.interface.localizer import MapView, QueryDescription
from nerfloc_plugins.localize.interface.specs import LocalizerSpec
from nerfloc_plugins.localize.localizers.classical import describe_image, lifted_view
from nerfloc_plugins.localize.localizers.field_localizer import FieldLocalizer
from nerfloc_plugins.nerf.nerfloc_nerfacto_model import NerflocNerfactoModelConfig


@dataclass
class RenderedFeaturesConfig:
    render_width: int = 160
    """Width of the views rendered for matching (height keeps the aspect ratio)."""
    sift: SiftConfig = field(default_factory=SiftConfig)
    matching: FeatureMatchConfig = field(default_factory=FeatureMatchConfig)


class RenderedFeaturesLocalizer(FieldLocalizer):
    """SIFT on the query vs SIFT on field renderings lifted by rendered depth."""

    name = "nerf-rendered-sift"

    def __init__(self, load_config: Path, config: Optional[RenderedFeaturesConfig] = None) -> None:
        super().__init__(load_config)
        self.config = config = config or RenderedFeaturesConfig()
        self.extractor = SiftExtractor(config.sift)

    def render_intrinsics(self, frame: PosedFrame):
        intr = frame.intrinsics
        width = min(self.config.render_width, intr.width)
        return intr.scaled_to(width, max(1, round(intr.height * width / intr.width)))

    def describe_query(self, frame: PosedFrame) -> QueryDescription:
        return describe_image(self.extractor, load_frame_rgb(frame), frame.intrinsics, self.device)

    def map_view(self, c2w: np.ndarray, reference: Optional[PosedFrame] = None) -> MapView:
        intrinsics = self.render_intrinsics(reference or self._map_frames[0])
        rendered = self.renderer.render(c2w, intrinsics)
        frame = PosedFrame("rendered", Path(), c2w, intrinsics)
        return lifted_view(self.extractor, rendered["rgb"], rendered["depth"], frame, self.device)

    def match(self, query: QueryDescription, view: MapView) -> np.ndarray:
        return match_descriptors(query.descriptors, view.descriptors, self.config.matching)

    def retrieval_intrinsics(self, frame: PosedFrame):
        return self.render_intrinsics(frame)


RENDERED_FEATURES_LOCALIZER = LocalizerSpec(
    name="rendered-features",
    serves=NerflocNerfactoModelConfig,
    build=RenderedFeaturesLocalizer,
    options=RenderedFeaturesConfig,
    help="any nerfloc-nerfacto map: SIFT on the query vs SIFT on views the field renders",
)
