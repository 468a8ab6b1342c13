"""``ns-train posemap-nerf``: stage 2 of NeRF-P on a frozen ``nerfloc-nerfacto`` run (PoseMap Sec. 3.2).

``--data RUN/config.yml`` names the stage-1 run (the NeRF, trained with ``ns-train
nerfloc-nerfacto``).  Its weights stay frozen and are not saved here; the pose branch and the
pose decoder learn to regress each training pose from the PoseMap rendered at it (L2 on the 3x4
pose, ``L_pose``).  Eval: the same regression at the held-out poses (median cm / deg) and, in
the eval images, a PCA colouring of the PoseMap at a test pose next to the NeRF's RGB.
All poses: OpenCV c2w in the NeRF's (Nerfstudio) frame.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Type

import torch
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn

from nerfloc_plugins.data.frames import Intrinsics, PosedFrame
from nerfloc_plugins.geometry.pose_errors import pose_errors_c2w
from nerfloc_plugins.geometry.poses import to_homogeneous
from nerfloc_plugins.methods.posemap.posemap_aprnet import pose_loss
from nerfloc_plugins.methods.posemap.posemap_nerfp import (
    PoseDecoder,
    PoseMapConfig,
    PoseMapRenderer,
    orthonormalise_pose,
)
from nerfloc_plugins.nerf.feature_pca import FixedPCAColouring
from nerfloc_plugins.nerf.field_renderer import FieldRenderer
from nerfloc_plugins.nerf.frozen_run_pipeline import FrozenFieldPipeline, FrozenRunDataManager


def require_run_config(path: Optional[Path], method: str, expected: str) -> Path:
    """``--data`` of a method trained on a frozen run: an existing ``config.yml``."""
    if path is None or not Path(path).is_file() or Path(path).suffix not in (".yml", ".yaml"):
        raise ValueError(f"{method}: --data {path}: expected the config.yml of a trained {expected} run")
    return Path(path)


def ns_poses(renderer: FieldRenderer, frames: List[PosedFrame], device: torch.device | str) -> Tensor:
    """``(N, 3, 4)`` Nerfstudio-frame OpenCV c2w of dataset frames."""
    return torch.stack([torch.from_numpy(renderer.c2w_ns_opencv(f.c2w)[:3]).float() for f in frames]).to(device)


def single_intrinsics(frames: List[PosedFrame], what: str) -> Intrinsics:
    sizes = {(f.intrinsics.width, f.intrinsics.height) for f in frames}
    if len(sizes) != 1:
        raise ValueError(f"{what}: all images must share one size, found {sorted(sizes)}")
    return frames[0].intrinsics


@dataclass
class PoseMapNerfDataManagerConfig(InstantiateConfig):
    _target: Type = field(default_factory=lambda: PoseMapNerfDataManager)
    data: Optional[Path] = None
    """config.yml of the frozen stage-1 run (``ns-train nerfloc-nerfacto``)."""
    batch_size: int = 8
    """Poses (PoseMaps) per step."""
    seed: int = 0


class PoseMapNerfDataManager(FrozenRunDataManager):
    """Training and held-out poses of the frozen run's dataset, in its Nerfstudio frame."""

    def __init__(self, config: PoseMapNerfDataManagerConfig, device: str | torch.device = "cpu", **_: Any) -> None:
        self.config = config
        self.device = device
        self.renderer = FieldRenderer(require_run_config(config.data, "posemap-nerf", "nerfloc-nerfacto"))
        self.train_frames = self.renderer.frames("train")
        self.test_frames = self.renderer.frames("test") or self.train_frames
        self.intrinsics = single_intrinsics(self.train_frames + self.test_frames, f"{config.data}")
        self.train_poses = ns_poses(self.renderer, self.train_frames, device)
        self.test_poses = ns_poses(self.renderer, self.test_frames, device)
        self.metres_per_unit = 1.0 / self.renderer.transform.scale
        self._rng = random.Random(config.seed)

    def get_train_rays_per_batch(self) -> int:
        s = PoseMapConfig().stride
        return self.config.batch_size * max(1, self.intrinsics.width // s) * max(1, self.intrinsics.height // s)

    def next_train(self, step: int) -> Dict[str, Tensor]:
        n = len(self.train_poses)
        idx = self._rng.sample(range(n), min(self.config.batch_size, n))
        return {"poses": self.train_poses[idx]}

    def eval_batches(self) -> Iterator[Dict[str, Tensor]]:
        for start in range(0, len(self.test_poses), self.config.batch_size):
            yield {"poses": self.test_poses[start : start + self.config.batch_size]}


class PoseMapNerfModel(nn.Module):
    """The trainable part of NeRF-P: pose branch (in :class:`PoseMapRenderer`) + pose decoder."""

    def __init__(self, config: PoseMapConfig, nerf_model: nn.Module, intrinsics: Intrinsics, metres_per_unit: float):
        super().__init__()
        self.config = config
        self.intrinsics = intrinsics
        self.metres_per_unit = metres_per_unit
        self.posemaps = PoseMapRenderer(nerf_model, config)
        self.decoder = PoseDecoder(config)
        self.pca = FixedPCAColouring(config.feature_dim)

    def forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        return {"raw": self.decoder(self.posemaps(batch["poses"], self.intrinsics))}

    def get_loss_dict(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        return {"pose": pose_loss(outputs["raw"], batch["poses"])}

    def get_metrics_dict(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        t, r = pose_errors_c2w(orthonormalise_pose(outputs["raw"].detach()), batch["poses"], self.metres_per_unit)
        return {"median_translation_cm": 100 * t.median(), "median_rotation_deg": r.median()}


@dataclass
class PoseMapNerfPipelineConfig(InstantiateConfig):
    _target: Type = field(default_factory=lambda: PoseMapNerfPipeline)
    datamanager: PoseMapNerfDataManagerConfig = field(default_factory=PoseMapNerfDataManagerConfig)
    model: PoseMapConfig = field(default_factory=PoseMapConfig)
    vis_stride: int = 4
    """Ray stride of the PoseMap rendered for the eval images (finer than the decoder's grid)."""


class PoseMapNerfPipeline(FrozenFieldPipeline):
    param_group = "posemap"
    datamanager: PoseMapNerfDataManager

    def build_model(self) -> nn.Module:
        dm = self.datamanager
        model = PoseMapNerfModel(self.config.model, dm.renderer.model, dm.intrinsics, dm.metres_per_unit)
        model.decoder.pose_offset.copy_(dm.train_poses.mean(dim=0).flatten().cpu())
        return model

    @property
    def posemaps(self) -> PoseMapRenderer:
        return self._model.posemaps

    def eval_images(self) -> Dict[str, Tensor]:
        """``posemap_pca`` at the first held-out pose (rays every ``vis_stride`` pixels) beside its RGB."""
        dm, model = self.datamanager, self._model
        pose = dm.test_poses[:1]
        posemap = model.posemaps(pose, dm.intrinsics, stride=self.config.vis_stride)[0]  # (C, h, w)
        feats = posemap.flatten(1).T
        model.pca.fit(feats)
        pca = model.pca(feats).reshape(posemap.shape[1], posemap.shape[2], 3)
        small = dm.intrinsics.scaled_to(posemap.shape[2], posemap.shape[1])
        c2w = dm.renderer.c2w_from_ns_opencv(to_homogeneous(pose[0].double().cpu().numpy()))
        rgb = torch.from_numpy(dm.renderer.render(c2w, small)["rgb"]).to(pca)
        return {"posemap_pca": torch.cat([rgb, pca], dim=1)}
