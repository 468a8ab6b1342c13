"""APRNet of PMNet (PoseMap Sec. 3.1, after DFNet) and its losses.

* backbone: torchvision VGG16 convolutional layers; ImageNet weights only from a local file
  (``pretrained_weights``: torchvision's ``vgg16-397923af.pth`` or a state dict of
  ``vgg16().features``), otherwise random initialisation with a warning (nothing downloads);
* pose head: global average pool of the last block -> FC 12 (a 3x4 pose, rotation projected to
  SO(3) by :func:`orthonormalise_pose` at inference);
* feature extractor (DFNet): the outputs of blocks 3, 4, 5 projected to ``feature_dim`` by 1x1
  convolutions, upsampled to block 3's resolution and summed, L2-normalised per pixel.

Losses: ``L_pose`` L2 on the 12 pose values, ``L_image`` DFNet's triplet loss on feature maps
(anchor real image, positive the rendering at its pose, negative a rendering of another pose;
distance 1 - cosine, margin), ``L_posemap`` 1 - cosine between PoseMaps at the predicted and the
ground-truth pose, ``L_rvs`` (eq. 1) on randomly perturbed poses (:func:`perturb_poses`).
Poses: OpenCV c2w, Nerfstudio (field) frame, translations in its units.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from nerfloc_plugins.models.posemap import orthonormalise_pose


@dataclass
class APRConfig:
    pretrained_weights: Optional[Path] = None
    """Local VGG16 ImageNet weights (never downloaded); None: random init with a warning."""
    feature_dim: int = 128


class APRNet(nn.Module):
    def __init__(self, config: Optional[APRConfig] = None) -> None:
        super().__init__()
        import torchvision

        self.config = config = config or APRConfig()
        vgg = torchvision.models.vgg16(weights=None).features
        if config.pretrained_weights is not None:
            load_vgg16_weights(vgg, Path(config.pretrained_weights))
        else:
            import warnings

            warnings.warn(
                "APRNet: no --pretrained-weights given: VGG16 starts from random initialisation", stacklevel=2
            )
        # VGG16 blocks end at the max-pools (indices 4, 9, 16, 23, 30)
        self.block12 = vgg[:10]
        self.block3 = vgg[10:17]
        self.block4 = vgg[17:24]
        self.block5 = vgg[24:31]
        d = config.feature_dim
        self.proj3, self.proj4, self.proj5 = nn.Conv2d(256, d, 1), nn.Conv2d(512, d, 1), nn.Conv2d(512, d, 1)
        self.pose_head = nn.Linear(512, 12)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406])[:, None, None])
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225])[:, None, None])

    def forward(self, images: Tensor, with_features: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
        """``(B, 3, H, W)`` RGB in [0, 1] -> raw pose ``(B, 12)`` and features ``(B, D, H/8, W/8)``."""
        x = (images - self.mean) / self.std
        b3 = self.block3(self.block12(x))
        b4 = self.block4(b3)
        b5 = self.block5(b4)
        pose = self.pose_head(b5.mean(dim=(2, 3)))
        if not with_features:
            return pose, None
        size = b3.shape[-2:]

        def up(t: Tensor) -> Tensor:
            return nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)

        feats = self.proj3(b3) + up(self.proj4(b4)) + up(self.proj5(b5))
        return pose, nn.functional.normalize(feats, dim=1)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """Poses ``(B, 3, 4)`` with a proper rotation."""
        return orthonormalise_pose(self.forward(images, with_features=False)[0])


def load_vgg16_weights(features: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: VGG16 weights file not found (torchvision vgg16-397923af.pth)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if any(k.startswith("features.") for k in state):
        state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    missing, unexpected = features.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"{path}: not VGG16 weights (missing {missing[:3]}...)")


def pose_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L2 on the 12 values of ``(B, 12)`` / ``(B, 3, 4)`` poses, mean over the batch."""
    return torch.linalg.vector_norm(pred.reshape(-1, 12) - target.reshape(-1, 12), dim=-1).mean()


def feature_distance(a: Tensor, b: Tensor) -> Tensor:
    """Mean over pixels of ``1 - cos`` between ``(B, D, h, w)`` feature maps -> ``(B,)``."""
    return (1.0 - (nn.functional.normalize(a, dim=1) * nn.functional.normalize(b, dim=1)).sum(dim=1)).mean(dim=(1, 2))


def triplet_feature_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 0.5) -> Tensor:
    """DFNet's L_image: ``max(0, d(a, p) - d(a, n) + margin)``, batch mean."""
    return torch.relu(feature_distance(anchor, positive) - feature_distance(anchor, negative) + margin).mean()


def posemap_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """L_posemap: mean ``1 - cos`` of PoseMaps ``(B, C, h, w)`` (channels = features)."""
    return feature_distance(predicted, target).mean()


@dataclass
class PerturbationConfig:
    max_translation: float = 0.2
    """Per-axis bound (metres; paper: 0.2 indoor, 3.0 outdoor)."""
    max_rotation_deg: float = 10.0
    """Per-axis bound (degrees; paper: 10 indoor, 7.5 outdoor)."""


def perturb_poses(
    c2w: Tensor, config: PerturbationConfig, metres_per_unit: float, generator: torch.Generator
) -> Tensor:
    """Random view synthesis poses: each ``(B, 3, 4)`` c2w moved by a translation uniform in
    ``±max_translation`` per axis (world frame, metres converted to the poses' units) and
    rotated by Euler angles uniform in ``±max_rotation_deg`` per camera axis."""
    b = c2w.shape[0]
    u = torch.rand((b, 6), generator=generator).to(c2w) * 2 - 1
    t = u[:, :3] * config.max_translation / metres_per_unit
    ang = torch.deg2rad(u[:, 3:] * config.max_rotation_deg)
    c, s = torch.cos(ang), torch.sin(ang)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], -1).reshape(b, 3, 3)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], -1).reshape(b, 3, 3)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], -1).reshape(b, 3, 3)
    rot = c2w[:, :, :3] @ (rz @ ry @ rx)
    return torch.cat([rot, (c2w[:, :, 3] + t)[..., None]], dim=-1)
