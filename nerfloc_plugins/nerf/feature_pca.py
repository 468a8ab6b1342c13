"""Stable PCA colouring of rendered feature fields for the viewer.

A fixed projection (mean, 3 principal axes, 2-98 % range per axis) fitted on a set of rendered
features maps any ``(N, D)`` features to RGB in [0, 1], so colours do not flicker between frames
or camera moves (a per-frame PCA would).  Features are L2-normalised before projection.  Saved
with the model as buffers; refitted by the owner (e.g. every ``pca_refit_every`` training steps).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FixedPCAColouring(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("basis", torch.eye(dim, 3))
        self.register_buffer("range", torch.tensor([[-1.0] * 3, [1.0] * 3]))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, features: Tensor) -> None:
        """Fit on rendered features ``(N, D)``."""
        x = torch.nn.functional.normalize(features.detach().float(), dim=-1)
        mean = x.mean(dim=0)
        _, _, v = torch.pca_lowrank(x - mean, q=3, center=False)
        proj = (x - mean) @ v[:, :3]
        self.mean.copy_(mean)
        self.basis.copy_(v[:, :3])
        self.range.copy_(torch.stack([torch.quantile(proj, 0.02, dim=0), torch.quantile(proj, 0.98, dim=0)]))
        self.fitted.fill_(True)

    def forward(self, features: Tensor) -> Tensor:
        """RGB ``(N, 3)`` in [0, 1] through the fixed projection."""
        proj = (torch.nn.functional.normalize(features.float(), dim=-1) - self.mean) @ self.basis
        lo, hi = self.range[0], self.range[1]
        return torch.clamp((proj - lo) / (hi - lo).clamp(min=1e-6), 0.0, 1.0)
