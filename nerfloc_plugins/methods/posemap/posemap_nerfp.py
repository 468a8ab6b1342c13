"""NeRF-P: PoseMap features rendered from a frozen Nerfacto and the pose decoder (PoseMap Sec. 3.2).

A pose branch (MLP) maps the frozen field's per-sample features (hash-grid output and geometry
features of ``nerfloc-nerfacto``) to a ``C``-dim pose feature ``f_i`` (C = 256); the PoseMap of a
camera is ``F^ = sum_i w_i f_i`` (eq. 3) with the frozen field's volume-rendering weights (eq. 4),
one ray per ``stride x stride`` pixel block (the paper renders the full map and downsamples it
x16; rendering at stride 16 gives the same grid for 1/256 of the rays).  The pose decoder pools
the ``C x h x w`` map to ``C x 2 x 3`` (1536 values), then MLP 256-128-12 -> a 3x4 pose whose
rotation block is projected to SO(3) (:func:`orthonormalise_pose`).  The MLP predicts the
offset from the mean training pose (``pose_offset``, set from the data; ours: from zero a
regressor spends its first thousands of steps learning the mean pose).

Conventions: poses are OpenCV camera-to-world 3x4 in the **field's (Nerfstudio) frame** as
torch tensors; rays are generated from them differentiably (``localize.refine.rays_from_pixels``),
so gradients reach a predicted pose through the rendered PoseMap (L_posemap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from nerfstudio.field_components.field_heads import FieldHeadNames
from torch import Tensor, nn

from nerfloc_plugins.data.frames import Intrinsics
from nerfloc_plugins.geometry.rays import ray_bundle, rays_from_pixels

POSE_FEATURE_LAYERS: Tuple[str, ...] = ("hash", "geo")
"""Frozen field layers the pose branch reads (see ``nerf/nerfloc_nerfacto_field.py``)."""


@dataclass
class PoseMapConfig:
    feature_dim: int = 256
    """C: PoseMap channels (paper: 256)."""
    branch_hidden_dim: int = 256
    stride: int = 16
    """PoseMap grid: one ray per ``stride x stride`` pixels (the decoder's x16 downsampling)."""
    pooled_grid: Tuple[int, int] = (2, 3)
    """(rows, cols) the decoder pools the map to: 256 x 2 x 3 = 1536 inputs (paper: MLP 1536-256-128-12)."""
    decoder_dims: Tuple[int, ...] = (256, 128)


class PoseBranch(nn.Module):
    """Per-sample pose feature from frozen field features."""

    def __init__(self, in_dim: int, config: PoseMapConfig) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, config.branch_hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(config.branch_hidden_dim, config.feature_dim),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features)


def orthonormalise_pose(raw: Tensor) -> Tensor:
    """``(..., 12)`` -> ``(..., 3, 4)`` with the rotation block replaced by its nearest rotation (SVD)."""
    pose = raw.reshape(*raw.shape[:-1], 3, 4)
    u, _, vh = torch.linalg.svd(pose[..., :3])
    det = torch.det(u @ vh)
    fix = torch.ones_like(pose[..., 0, :3])
    fix[..., 2] = det
    rot = u @ torch.diag_embed(fix) @ vh
    return torch.cat([rot, pose[..., 3:]], dim=-1)


class PoseDecoder(nn.Module):
    """PoseMap ``(B, C, h, w)`` -> raw 12 pose values (see module docstring)."""

    def __init__(self, config: PoseMapConfig) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(config.pooled_grid)
        dims = (config.feature_dim * config.pooled_grid[0] * config.pooled_grid[1], *config.decoder_dims, 12)
        layers: list[nn.Module] = []
        for i in range(1, len(dims)):
            layers.append(nn.Linear(dims[i - 1], dims[i]))
            if i < len(dims) - 1:
                layers.append(nn.ReLU(inplace=True))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("pose_offset", torch.zeros(12))
        """Raw pose the decoder predicts for a zero MLP output: the mean training pose."""

    def forward(self, posemap: Tensor) -> Tensor:
        return self.mlp(self.pool(posemap).flatten(1)) + self.pose_offset


class PoseMapRenderer(nn.Module):
    """Frozen ``nerfloc-nerfacto`` model + trainable pose branch: renders PoseMaps at poses."""

    def __init__(self, nerf_model, config: PoseMapConfig) -> None:
        super().__init__()
        self.config = config
        self.nerf = [nerf_model]  # not a registered submodule: frozen, not saved with the branch
        dims = nerf_model.field.feature_dims()
        self.branch = PoseBranch(sum(dims[name] for name in POSE_FEATURE_LAYERS), config)

    def grid(self, intrinsics: Intrinsics, stride: Optional[int] = None) -> Tuple[Intrinsics, Tensor]:
        """The PoseMap camera (``1 / stride`` of the image) and its pixel centres ``(h * w, 2)``."""
        s = stride or self.config.stride
        crop = intrinsics.cropped_to_multiple_of(s)
        small = crop.scaled_to(max(1, crop.width // s), max(1, crop.height // s))
        v, u = torch.meshgrid(torch.arange(small.height), torch.arange(small.width), indexing="ij")
        return small, torch.stack([u, v], dim=-1).reshape(-1, 2).float() + 0.5

    def render_rays(self, origins: Tensor, directions: Tensor) -> Tensor:
        """Pose features ``(N, C)`` along Nerfstudio-frame rays (unit directions)."""
        model = self.nerf[0]
        bundle = model.collider(ray_bundle(origins, directions))
        ray_samples, _, _ = model.proposal_sampler(bundle, density_fns=model.density_fns)
        field_outputs, features = model.field.forward_with_features(ray_samples, POSE_FEATURE_LAYERS)
        weights = ray_samples.get_weights(field_outputs[FieldHeadNames.DENSITY])
        feats = torch.cat([features[name].float() for name in POSE_FEATURE_LAYERS], dim=-1)
        return (weights * self.branch(feats)).sum(dim=-2)

    def forward(self, c2w: Tensor, intrinsics: Intrinsics, stride: Optional[int] = None) -> Tensor:
        """PoseMaps ``(B, C, h, w)`` of OpenCV c2w poses ``(B, 3, 4)`` (Nerfstudio frame);
        ``stride``: another ray spacing than the decoder's (e.g. finer, for visualisation)."""
        small, uv = self.grid(intrinsics, stride)
        K = torch.as_tensor(small.matrix(), dtype=torch.float32, device=c2w.device)
        uv = uv.to(c2w.device)
        maps = []
        for pose in c2w:
            origins, dirs = rays_from_pixels(pose, K, uv)
            feats = self.render_rays(origins.contiguous(), dirs)
            maps.append(feats.T.reshape(-1, small.height, small.width))
        return torch.stack(maps)
