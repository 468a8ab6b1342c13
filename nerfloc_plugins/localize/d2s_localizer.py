"""D2S localizer: detect keypoints, regress their scene coordinates, keep reliable ones, PnP.

No retrieval, rendering or matching (``needs_prior = False``): the query's own keypoints get
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
import yaml

from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.localize.baseline import describe_image, load_rgb
from nerfloc_plugins.localize.feature_matching import FeatureName, LocalFeatureMatcher
from nerfloc_plugins.localize.localizer import DatasetFramesLocalizer, MapView, QueryDescription
from nerfloc_plugins.localize.superpoint import SuperPointConfig


@dataclass
class D2SRun:
    """What ``ns-localize`` needs to use a trained D2S regressor (saved as ``d2s_run.yml``)."""

    nerf_config: Path
    """config.yml of the nerfloc-nerfacto run the keypoint views came from (its dataset)."""
    checkpoint: Path
    """D2S weights, relative to this file's folder."""
    features: FeatureName = "aliked"
    max_keypoints: int = 2048
    superpoint_weights: Optional[Path] = None
    """``features: superpoint``: the weights file used for synthesis and training."""
    synthetic: bool = True
    """Whether synthetic (NeRF-rendered) views were used in training."""


@dataclass
class D2SLocalizerConfig:
    min_reliability: float = 0.5
    """Keep keypoints whose predicted reliability ``1 / (1 + 100 |p|)`` is above this."""
    min_points: int = 12
    """If fewer pass, keep this many of the most reliable keypoints."""


def save_run(run: D2SRun, path: Path) -> None:
    from nerfloc_plugins.utils.atomic import write_text_atomically

    write_text_atomically(yaml.dump(run), path)


def load_run(path: Path) -> D2SRun:
    try:
        run = yaml.load(Path(path).read_text(), Loader=yaml.Loader)
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read D2S run file ({err})") from err
    if not isinstance(run, D2SRun):
        raise ValueError(f"{path}: not a D2S run file (expected d2s_run.yml from ns-nerfloc-train-d2s)")
    return run


class D2SLocalizer(DatasetFramesLocalizer):
    needs_prior = False

    def __init__(self, run_file: Path, config: Optional[D2SLocalizerConfig] = None, device: Optional[str] = None):
        from nerfloc_plugins.engine.d2s_trainer import load_d2s

        self.config = config or D2SLocalizerConfig()
        run_file = Path(run_file)
        self.run = load_run(run_file)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net, _ = load_d2s(run_file.parent / self.run.checkpoint, self.device)
        nerf_config = Path(self.run.nerf_config)
        if not nerf_config.is_file():
            raise FileNotFoundError(f"{run_file}: nerf_config {nerf_config} not found")
        trainer_config = yaml.load(nerf_config.read_text(), Loader=yaml.Loader)
        self.parser = trainer_config.pipeline.datamanager.dataparser.setup()
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
        return describe_image(self.features.extract, load_rgb(frame.image_path), frame.intrinsics, self.device)

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

    def map_view(self, c2w: np.ndarray, reference: Optional[PosedFrame] = None) -> MapView:
        raise NotImplementedError("D2S regresses scene coordinates; it has no map views")

    def match(self, query: QueryDescription, view: MapView) -> np.ndarray:
        raise NotImplementedError("D2S regresses scene coordinates; it does not match")

    def map_size_bytes(self) -> int:
        """The regressor's weights: all a D2S map stores."""
        return int(sum(p.numel() * p.element_size() for p in self.net.parameters()))
