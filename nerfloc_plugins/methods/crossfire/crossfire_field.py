"""CrossFire's neural radiance and descriptor field (Sec. 3.1, Fig. 2).

Nerfacto's field (hash grid, density MLP, colour head with view direction and per-image
appearance embedding) plus a **descriptor head**: a small MLP on the position-only features
(hash-grid output and geometry features) giving a ``D``-dimensional descriptor per sample.
It receives neither the viewing direction nor the appearance embedding, so descriptors are
view- and appearance-independent; they are volume-rendered with the colour weights.
"""

from __future__ import annotations

from typing import Dict

import torch
from nerfstudio.field_components.mlp import MLP
from torch import Tensor, nn

from nerfloc_plugins.nerf.nerfloc_nerfacto_field import NerflocNerfactoField

DESCRIPTOR_INPUTS = ("hash", "geo")
"""Field layers the descriptor head reads (both depend on position only)."""


class CrossFireField(NerflocNerfactoField):
    def __init__(self, aabb: Tensor, *args, descriptor_dim: int = 32, descriptor_hidden_dim: int = 64, **kwargs):
        super().__init__(aabb, *args, **kwargs)
        dims = self.feature_dims()
        self.mlp_descriptor = MLP(
            in_dim=sum(dims[name] for name in DESCRIPTOR_INPUTS),
            num_layers=2,
            layer_width=descriptor_hidden_dim,
            out_dim=descriptor_dim,
            activation=nn.ReLU(),
            out_activation=None,
            implementation="torch",
        )

    def descriptors(self, features: Dict[str, Tensor]) -> Tensor:
        """Per-sample descriptors ``(*, D)`` from the position-only features of DESCRIPTOR_INPUTS."""
        x = torch.cat([features[name] for name in DESCRIPTOR_INPUTS], dim=-1)
        return self.mlp_descriptor(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)
