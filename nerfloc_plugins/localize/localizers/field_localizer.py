"""Shared plumbing of localizers whose map is a trained field (rendering, frames, refinement)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from nerfloc_plugins.data.frames import Intrinsics, PosedFrame, load_frame_rgb
from nerfloc_plugins.geometry.projection import backproject, pixel_grid
from nerfloc_plugins.localize.interface.localizer import MapView, MapViewLocalizer, QueryDescription
from nerfloc_plugins.localize.stages.refine import PhotometricConfig, PhotometricRefiner
from nerfloc_plugins.nerf.field_renderer import FieldRenderer


class FieldPhotometricRefiner:
    """Runs :class:`PhotometricRefiner` in the field's frame for dataset-frame poses."""

    def __init__(self, renderer: FieldRenderer, config: PhotometricConfig) -> None:
        self.renderer = renderer
        self.refiner = PhotometricRefiner(renderer.render_rays, config, renderer.device)
        self.losses: list = []

    def refine(self, c2w: np.ndarray, query: QueryDescription) -> np.ndarray:
        c2w_ns, self.losses = self.refiner.refine(
            self.renderer.c2w_ns_opencv(c2w), query.image, query.intrinsics.matrix()
        )
        return self.renderer.c2w_from_ns_opencv(c2w_ns)


class FieldLocalizer(MapViewLocalizer):
    """A localizer whose map is the trained run at ``load_config``; it renders at any pose."""

    renders_at_any_pose = True

    def __init__(self, field: Path | FieldRenderer) -> None:
        """``field``: the trained run's ``config.yml``, or an already loaded renderer of it."""
        self.renderer = field if isinstance(field, FieldRenderer) else FieldRenderer(field)
        self.model = self.renderer.model
        self.device = self.renderer.device
        self._map_frames = self.renderer.frames("train")
        self.scene = self.renderer.parser.config.data.name

    def map_frames(self) -> List[PosedFrame]:
        return self._map_frames

    def query_frames(self, split: str) -> List[PosedFrame]:
        return self.renderer.frames(split)

    def retrieval_intrinsics(self, frame: PosedFrame) -> Intrinsics:
        """Camera used to render retrieval images of ``frame`` (``--retrieval.source nerf``)."""
        return frame.intrinsics

    def retrieval_image(self, frame: PosedFrame, source: str) -> np.ndarray:
        if source == "images":
            return load_frame_rgb(frame)
        return self.renderer.render(frame.c2w, self.retrieval_intrinsics(frame))["rgb"]

    def rendered_feature_view(
        self,
        c2w: np.ndarray,
        intrinsics: Intrinsics,
        descriptors: str = "descriptors",
        context: Optional[str] = None,
        min_accumulation: float = 0.5,
    ) -> MapView:
        """A map view of per-pixel feature outputs the field renders at ``c2w``: every pixel of
        ``intrinsics`` with depth and accumulation above ``min_accumulation``, lifted to 3D with
        the rendered z-depth; output ``descriptors`` (and ``context``) L2-normalised on the device."""
        names = (descriptors,) + ((context,) if context else ()) + ("accumulation",)
        out = self.renderer.render(c2w, intrinsics, outputs=names)
        depth = out["depth"]
        uv = pixel_grid(intrinsics.width, intrinsics.height)
        valid = (depth > 0) & (out["accumulation"][..., 0] > min_accumulation)

        def features(name: str) -> torch.Tensor:
            return torch.nn.functional.normalize(torch.from_numpy(out[name][valid]).to(self.device), dim=-1)

        return MapView(
            c2w=c2w,
            keypoints=uv[valid],
            descriptors=features(descriptors),
            points3d=backproject(uv[valid], depth[valid], intrinsics.matrix(), c2w),
            intrinsics=intrinsics,
            image=out["rgb"],
            context=features(context) if context else None,
        )

    def photometric_refiner(self, config: PhotometricConfig) -> FieldPhotometricRefiner:
        return FieldPhotometricRefiner(self.renderer, config)

    def map_size_bytes(self) -> int:
        return self.renderer.size_bytes()

    def map_renderer(self) -> FieldRenderer:
        return self.renderer
