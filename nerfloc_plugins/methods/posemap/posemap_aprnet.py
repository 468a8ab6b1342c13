"""APRNet of PMNet (PoseMap Sec. 3.1, after DFNet) and its losses.

* backbone: torchvision VGG16 convolutional layers; ImageNet weights only from a local file
  (``pretrained_weights``: torchvision's ``vgg16-397923af.pth`` or a state dict of
  ``vgg16().features``), otherwise random initialisation with a warning (nothing downloads);
* pose head: global average pool of the last block -> FC 12 (a 3x4 pose, rotation projected to
  SO(3) by :func:`orthonormalise_pose` at inference), predicted as an offset from the mean
  training pose (``pose_offset``, ours: set from the training poses before training);
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

from nerfloc_plugins.methods.posemap.posemap_nerfp import orthonormalise_pose


@dataclass
class APRConfig:
    pretrained_weights: Optional[Path] = None
    """Local VGG16(-BN) ImageNet weights (never downloaded); None: random init with a warning."""
    feature_dim: int = 128
    batch_norm: bool = True
    """VGG16-BN layout (torchvision's ``vgg16_bn-6c64b313.pth`` fits).  Default: from random
    initialisation plain VGG16 barely learns in short runs (pose loss 1.52 -> 1.49 in 100 steps vs
    1.84 -> 0.62 with BN, docs/posemap.md); False + ``vgg16-397923af.pth`` is the paper's backbone.
    BatchNorm statistics are frozen during batch-1 alignment (``freeze_batch_norm``)."""
    input_scale: float = 1.0
    """Images are resized by this factor before the backbone (the CPU presets: 0.5, 80x60 on the
    example scene: a VGG16-BN step at 160x120 costs seconds on 2 cores)."""
    width: float = 1.0
    """VGG16 channel multiplier.  1: VGG16 (ImageNet weights fit); the CPU presets train a
    0.25-wide VGG16 layout from scratch (1/16 of the FLOPs; no ImageNet weights exist offline)."""


class APRNet(nn.Module):
    def __init__(self, config: Optional[APRConfig] = None, load_weights: bool = True) -> None:
        """``load_weights=False``: the caller loads a trained checkpoint (no ImageNet file, no warning)."""
        super().__init__()

        self.config = config = config or APRConfig()
        from torchvision.models.vgg import cfgs, make_layers

        if config.width <= 0:
            raise ValueError(f"APRConfig.width must be positive, got {config.width}")
        layout = [v if v == "M" else max(8, round(int(v) * config.width)) for v in cfgs["D"]]
        vgg = make_layers(layout, batch_norm=config.batch_norm)
        c3, c5 = layout[6], layout[-2]  # channels of blocks 3 and 4/5
        if not load_weights:
            pass
        elif config.pretrained_weights is not None:
            if config.width != 1.0:
                raise ValueError(f"{config.pretrained_weights}: ImageNet VGG16 weights need --pipeline.model.width 1.0")
            load_vgg16_weights(vgg, Path(config.pretrained_weights))
        else:
            import warnings

            warnings.warn(
                "APRNet: no --pretrained-weights given: VGG16 starts from random initialisation", stacklevel=2
            )
        ends = [i + 1 for i, m in enumerate(vgg) if isinstance(m, nn.MaxPool2d)]  # blocks end at the pools
        self.block12 = vgg[: ends[1]]
        self.block3 = vgg[ends[1] : ends[2]]
        self.block4 = vgg[ends[2] : ends[3]]
        self.block5 = vgg[ends[3] : ends[4]]
        d = config.feature_dim
        self.proj3, self.proj4, self.proj5 = nn.Conv2d(c3, d, 1), nn.Conv2d(c5, d, 1), nn.Conv2d(c5, d, 1)
        self.pose_head = nn.Linear(c5, 12)
        self.register_buffer("pose_offset", torch.zeros(12))
        self.freeze_batch_norm = False
        """Keep BatchNorm layers in eval mode while training (batch-1 alignment)."""
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406])[:, None, None])
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225])[:, None, None])

    def train(self, mode: bool = True) -> "APRNet":
        super().train(mode)
        if mode and self.freeze_batch_norm:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, images: Tensor, with_features: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
        """``(B, 3, H, W)`` RGB in [0, 1] -> raw pose ``(B, 12)`` and features ``(B, D, H/8, W/8)``."""
        if self.config.input_scale != 1.0:
            images = nn.functional.interpolate(
                images, scale_factor=self.config.input_scale, mode="bilinear", align_corners=False, antialias=True
            )
        x = (images - self.mean) / self.std
        b3 = self.block3(self.block12(x))
        b4 = self.block4(b3)
        b5 = self.block5(b4)
        pose = self.pose_head(b5.mean(dim=(2, 3))) + self.pose_offset
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


@dataclass
class APRLossConfig:
    """Weights of the PMNet loss terms (eq. 2: all 1); 0 turns a term off (Table 5b ablations)."""

    pose_weight: float = 1.0
    image_weight: float = 1.0
    posemap_weight: float = 1.0
    rvs_weight: float = 1.0
    triplet_margin: float = 0.5
    """DFNet's triplet margin on the 1 - cos feature distance."""
    posemap_grad_clip: float = 1.0
    """Ours: the PoseMap's gradient w.r.t. a predicted pose (through the hash grid) is ~1e6 x
    L_pose's; it is rescaled per pose to at most this multiple of L_pose's per-pose gradient
    norm (0: no rescaling).  Without it a gradient-norm clip leaves L_pose no signal."""


def load_vgg16_weights(features: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: VGG16 weights file not found (torchvision vgg16_bn-6c64b313.pth, or vgg16-397923af.pth"
            " with --pipeline.model.batch-norm False)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if any(k.startswith("features.") for k in state):
        state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    missing, unexpected = features.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"{path}: not VGG16 weights for this layout (missing {missing[:3]}...; batch_norm must match)")


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
