"""NeRFMatch localizer (Sec. 3.1): image features vs NeRF features rendered at the prior.

1. prior: the shared pipeline (pairs file, or VLAD on real or NeRF-rendered database images,
   top-1 or top-k with merged matches); 2. query: the trained image encoder's coarse tokens
   and fine map (images cropped at the bottom/right to sides divisible by 8); 3. map: points and
   features of the frozen NeRF rendered at the centre of every 8x8 patch of the prior view;
   4. matching: NeRFMatch-Mini (dual softmax, mutual, cell centres) or NeRFMatch (attention,
   coarse + fine sub-cell positions); 5. PnP + RANSAC; 6. refinement from the shared pipeline
   (the paper's defaults: iterative for NeRFMatch, photometric + re-match for Mini).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from nerfloc_plugins.data.frames import PosedFrame, load_frame_rgb
from nerfloc_plugins.localize.interface.localizer import MapView, QueryDescription
from nerfloc_plugins.localize.interface.specs import LocalizerSpec
from nerfloc_plugins.localize.localizers.field_localizer import FieldLocalizer
from nerfloc_plugins.methods.nerfmatch.nerfmatch_matcher import cell_centres
from nerfloc_plugins.methods.nerfmatch.nerfmatch_model import NerfMatchModelConfig
from nerfloc_plugins.nerf.run_files import load_run
from nerfloc_plugins.utils.parameters import parameter_bytes


@dataclass
class NerfMatchLocalizerConfig:
    match_threshold: Optional[float] = None
    """Dual-softmax probability threshold (default: the trained model's)."""
    scene_index: int = 0
    """Which of the matcher's training scenes to localize in (multi-scene matchers)."""


@dataclass
class NerfMatchQuery(QueryDescription):
    fine_map: Optional[Tensor] = None
    grid: Tuple[int, int] = (0, 0)


@dataclass
class NerfMatchView(MapView):
    points_ns: Optional[Tensor] = None
    valid: Optional[Tensor] = None


class NerfMatchLocalizer(FieldLocalizer):
    def __init__(self, load_config: Path, config: Optional[NerfMatchLocalizerConfig] = None) -> None:
        self.config = config or NerfMatchLocalizerConfig()
        _, pipeline, _, _ = load_run(Path(load_config))
        scenes = pipeline.datamanager.scenes
        if not 0 <= self.config.scene_index < len(scenes):
            raise ValueError(
                f"--nerfmatch.scene-index {self.config.scene_index}: the matcher has {len(scenes)} scene(s)"
            )
        scene = scenes[self.config.scene_index]
        super().__init__(scene.renderer)
        self.points = scene.points
        self.matcher = pipeline.model.eval()
        if self.config.match_threshold is not None:
            self.matcher.config.matcher.match_threshold = self.config.match_threshold
        self.name = "nerfmatch" if self.matcher.is_full else "nerfmatch-mini"
        # Mini's 2D points are 8x8 cell centres: the true pixel is up to 4*sqrt(2) px away
        self.keypoint_precision_px = 0.0 if self.matcher.is_full else 4.0 * 2**0.5

    def describe_query(self, frame: PosedFrame) -> NerfMatchQuery:
        intr = frame.intrinsics.cropped_to_multiple_of(8)  # pixel coordinates and K are unchanged
        h, w = intr.height, intr.width
        image = np.ascontiguousarray(load_frame_rgb(frame)[:h, :w])
        with torch.no_grad():
            tokens, fine, grid = self.matcher.encode(
                torch.from_numpy(image).permute(2, 0, 1)[None].float().to(self.device)
            )
        return NerfMatchQuery(
            keypoints=cell_centres(h, w).numpy(),
            descriptors=tokens[0],
            intrinsics=intr,
            image=image,
            fine_map=fine,
            grid=grid,
        )

    def map_view(self, c2w: np.ndarray, reference: Optional[PosedFrame] = None) -> NerfMatchView:
        intr = (reference or self._map_frames[0]).intrinsics
        rendered = self.points.render(c2w, intr)
        return NerfMatchView(
            c2w=c2w,
            keypoints=rendered.pixels,
            descriptors=rendered.features,
            points3d=rendered.points,
            intrinsics=intr,
            points_ns=rendered.points_ns,
            valid=rendered.valid,
        )

    def correspondences(self, query: NerfMatchQuery, view: NerfMatchView) -> Tuple[np.ndarray, np.ndarray]:
        matches, pixels, _ = self.matcher.match(
            query.descriptors[None], query.fine_map, query.grid, view.descriptors, view.points_ns, view.valid
        )
        return matches.cpu().numpy(), pixels.cpu().numpy().astype(np.float64)

    def match(self, query: NerfMatchQuery, view: NerfMatchView) -> np.ndarray:
        return self.correspondences(query, view)[0]

    def map_size_bytes(self) -> int:
        """The NeRF plus the matcher (image encoder and matching network)."""
        return super().map_size_bytes() + parameter_bytes(self.matcher)


NERFMATCH_LOCALIZER = LocalizerSpec(
    name="nerfmatch",
    serves=NerfMatchModelConfig,
    build=NerfMatchLocalizer,
    options=NerfMatchLocalizerConfig,
    help="NeRFMatch / NeRFMatch-Mini runs: image features vs the frozen NeRF's features",
)
