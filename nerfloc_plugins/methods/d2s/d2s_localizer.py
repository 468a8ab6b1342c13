"""D2S localizer: detect keypoints, regress their scene coordinates, keep reliable ones, PnP.

No retrieval, rendering or matching (``LocalizerKind.REGRESSES_SCENE_COORDINATES``): the query's own keypoints get
3D points from the regressor.  A D2S run is described by ``d2s_run.yml`` (written by
``ns-nerfloc-train-d2s``; pass it to ``ns-localize --load-config``), which names the NeRF run
whose dataset (and few-shot training frames) it was trained on, the local features and the
checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from nerfloc_plugins.data.frames import PosedFrame, load_frame_rgb
from nerfloc_plugins.features.feature_matcher import LocalFeatureMatcher
from nerfloc_plugins.features.superpoint import SuperPointConfig
from nerfloc_plugins.localize.interface.localizer import DatasetFramesMixin, QueryDescription, SceneCoordinateLocalizer
from nerfloc_plugins.localize.interface.specs import LocalizerSpec
from nerfloc_plugins.localize.localizers.classical import describe_image
from nerfloc_plugins.methods.d2s.d2s_run import D2SRun, load_run
from nerfloc_plugins.methods.d2s.d2s_trainer import load_d2s
from nerfloc_plugins.nerf.run_files import read_run_config
from nerfloc_plugins.utils.devices import resolve_device
from nerfloc_plugins.utils.parameters import parameter_bytes


@dataclass
class D2SLocalizerConfig:
    min_reliability: float = 0.5
    """Keep keypoints whose predicted reliability ``1 / (1 + 100 |p|)`` is above this."""
    min_points: int = 12
    """If fewer pass, keep this many of the most reliable keypoints."""


class D2SLocalizer(DatasetFramesMixin, SceneCoordinateLocalizer):
    def __init__(self, run_file: Path, config: Optional[D2SLocalizerConfig] = None, device: Optional[str] = None):
        self.config = config or D2SLocalizerConfig()
        run_file = Path(run_file)
        self.run = load_run(run_file)
        self.device = resolve_device(device)
        self.net, _ = load_d2s(run_file.parent / self.run.checkpoint, self.device)
        nerf_config = Path(self.run.nerf_config)
        if not nerf_config.is_file():
            raise FileNotFoundError(f"{run_file}: nerf_config {nerf_config} not found")
        self.parser = read_run_config(nerf_config).pipeline.datamanager.dataparser.setup()
        self.scene = Path(self.parser.config.data).name
        self.name = "d2s+synthesis" if self.run.synthetic else "d2s"
        self.features = LocalFeatureMatcher.with_max_keypoints(
            self.run.features,
            self.run.max_keypoints,
            self.device,
            SuperPointConfig(self.run.superpoint_weights),
            with_matcher=False,  # queries are only described: no LightGlue weights needed
        )

    def describe_query(self, frame: PosedFrame) -> QueryDescription:
        return describe_image(self.features.extract, load_frame_rgb(frame), frame.intrinsics, self.device)

    @torch.no_grad()
    def regress_correspondences(self, query: QueryDescription) -> Tuple[np.ndarray, np.ndarray]:
        if len(query.keypoints) == 0:
            return np.zeros((0, 2)), np.zeros((0, 3))
        desc = query.descriptors.float()[None]
        coords, _, rel = self.net(desc, torch.ones(desc.shape[:2], dtype=torch.bool, device=desc.device))
        rel = rel[0].cpu().numpy()
        keep = rel > self.config.min_reliability
        if keep.sum() < self.config.min_points:
            keep = np.zeros_like(keep)
            keep[np.argsort(-rel)[: self.config.min_points]] = True
        return query.keypoints[keep], coords[0].cpu().numpy().astype(np.float64)[keep]

    def map_size_bytes(self) -> int:
        """The regressor's weights: all a D2S map stores."""
        return parameter_bytes(self.net)


D2S_LOCALIZER = LocalizerSpec(
    name="d2s",
    serves=D2SRun,
    build=D2SLocalizer,
    options=D2SLocalizerConfig,
    help="D2S scene-coordinate regressor (d2s_run.yml of ns-nerfloc-train-d2s)",
)
