"""D2S keypoint scene-coordinate regressor (Bui et al. 2023; descriptor synthesis Sec. IV-A).

An attentional GNN (``num_layers`` residual self-attention layers with ``num_heads`` heads over
all keypoint descriptors of one image) followed by a per-keypoint MLP
``(D, 512, 1024, 1024, 512, 4)``: three scene-coordinate values and one uncertainty value ``p``
whose reliability is ``r = 1 / (1 + 100 |p|)`` (1: a keypoint with a stable 3D point).

Coordinates are regressed in a normalised frame (training labels centred and scaled to unit
RMS radius; the statistics are buffers saved with the weights) and returned in the dataset's
metric frame (metres).  Batches pad images to the same keypoint count with a ``mask``.

Losses (D2S): Euclidean error on labelled keypoints (metres, summed per image), the uncertainty loss
``|| labelled - r ||_2`` per image, and, late in training, a reprojection loss on the
*unlabelled* keypoints with the image's known pose (dynamic tanh, soft clamp shrinking from
50 px to 1 px on a circular schedule, as in ACE / D2S).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class D2SConfig:
    num_layers: int = 5
    num_heads: int = 4
    mlp_dims: Tuple[int, ...] = (512, 1024, 1024, 512)


class AttentionalLayer(nn.Module):
    """x <- x + MLP([x, MultiHeadSelfAttention(x)]) (SuperGlue-style propagation)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.ReLU(inplace=True), nn.Linear(2 * dim, dim))
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: Tensor, padding: Tensor) -> Tensor:
        message, _ = self.attention(x, x, x, key_padding_mask=padding, need_weights=False)
        return x + self.mlp(torch.cat([x, message], dim=-1))


class D2SNet(nn.Module):
    def __init__(self, descriptor_dim: int, config: D2SConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or D2SConfig()
        self.descriptor_dim = descriptor_dim
        self.layers = nn.ModuleList(
            AttentionalLayer(descriptor_dim, config.num_heads) for _ in range(config.num_layers)
        )
        dims = (descriptor_dim, *config.mlp_dims, 4)
        mlp: list[nn.Module] = []
        for i in range(1, len(dims)):
            mlp.append(nn.Linear(dims[i - 1], dims[i]))
            if i < len(dims) - 1:
                mlp.append(nn.ReLU(inplace=True))
        self.mlp = nn.Sequential(*mlp)
        self.register_buffer("centre", torch.zeros(3))
        self.register_buffer("scale", torch.ones(()))

    def set_normalisation(self, points: np.ndarray) -> None:
        """Centre and RMS radius of the training labels (``(M, 3)`` metres)."""
        centre = points.mean(axis=0)
        self.centre.copy_(torch.as_tensor(centre, dtype=torch.float32))
        self.scale.copy_(torch.tensor(float(np.sqrt(((points - centre) ** 2).sum(axis=1).mean())) + 1e-6))

    def forward(self, descriptors: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``(B, N, D)`` descriptors, ``(B, N)`` bool mask of real keypoints ->
        coordinates ``(B, N, 3)`` (metres), uncertainty ``p`` ``(B, N)``, reliability ``(B, N)``."""
        x = descriptors
        padding = ~mask
        for layer in self.layers:
            x = layer(x, padding)
        out = self.mlp(x)
        coords = out[..., :3] * self.scale + self.centre
        p = out[..., 3]
        return coords, p, reliability(p)


def reliability(p: Tensor) -> Tensor:
    return 1.0 / (1.0 + 100.0 * p.abs())


@dataclass
class D2SLossConfig:
    reprojection_start: float = 0.8
    """Fraction of training after which the reprojection loss is added."""
    soft_clamp_px: float = 50.0
    soft_clamp_min_px: float = 1.0
    min_depth: float = 0.1
    """Predictions closer than this (metres, camera z) get no reprojection loss."""


def coordinate_loss(coords: Tensor, labels: Tensor, labelled: Tensor) -> Tensor:
    """Euclidean distances (metres) of labelled keypoints, summed per image and averaged over the
    batch (D2S: summing keeps the coordinate term dominant over the per-image uncertainty norm)."""
    if not labelled.any():
        return coords.sum() * 0.0
    return (coords[labelled] - labels[labelled]).norm(dim=-1).sum() / coords.shape[0]


def coordinate_error(coords: Tensor, labels: Tensor, labelled: Tensor) -> float:
    """Mean Euclidean distance (metres) over labelled keypoints (a metric, no gradient)."""
    if not labelled.any():
        return float("nan")
    return float((coords[labelled] - labels[labelled]).detach().norm(dim=-1).mean())


def uncertainty_loss(rel: Tensor, labelled: Tensor, mask: Tensor) -> Tensor:
    """Per image ``|| labelled - r ||_2`` over its keypoints, averaged over the batch."""
    diff = (labelled.float() - rel) * mask.float()
    return diff.norm(dim=-1).mean()


def reprojection_loss(
    coords: Tensor, keypoints: Tensor, w2c: Tensor, K: Tensor, select: Tensor, progress: float, config: D2SLossConfig
) -> Tensor:
    """Dynamic-tanh reprojection error of ``select``-ed keypoints' predictions at the known pose.

    ``coords (B, N, 3)``, ``keypoints (B, N, 2)`` pixels, ``w2c (B, 4, 4)``, ``K (B, 3, 3)``;
    ``progress`` in [0, 1] sets the soft clamp (circular schedule from ``soft_clamp_px`` down)."""
    cam = torch.einsum("bij,bnj->bni", w2c[:, :3, :3], coords) + w2c[:, None, :3, 3]
    z = cam[..., 2]
    uv = torch.einsum("bij,bnj->bni", K, cam)[..., :2] / z.clamp(min=1e-6)[..., None]
    err = (uv - keypoints).norm(dim=-1)
    valid = select & (z > config.min_depth) & (err < 1000.0)
    if not valid.any():
        return coords.sum() * 0.0
    weight = 1.0 - np.sqrt(max(0.0, 1.0 - progress**2))
    clamp = (1.0 - weight) * config.soft_clamp_px + config.soft_clamp_min_px
    return (clamp * torch.tanh(err[valid] / clamp)).mean()
