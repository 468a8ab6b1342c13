"""NeuraLoc field (Sec. III-A, eq. 1): separate geometry and semantic hash grids, shallow decoders.

``(c, sigma) = M_geo(T_geo(p))`` and ``(f, g) = M_sem(T_sem(p))``:

* geometry branch: multi-resolution hash grid -> SDF decoder (2-layer MLP, 32 hidden) giving
  the SDF ``sigma`` and a geometry feature; colour decoder (2-layer MLP, 32 hidden) on that
  feature and the grid features, sigmoid RGB;
* semantic branch: its own hash grid -> two 2-layer MLPs (128 hidden): contextual feature
  ``f`` and keypoint descriptor ``g`` (widths of the 2D teachers they are distilled from).

Conventions: points ``p`` are in Nerfstudio's normalised frame; the grids see them mapped to
``[0, 1]^3`` by the scene box.  ``sigma`` is the signed distance **in truncation units** (the
SDF in metres divided by the truncation distance ``tr``; eq. 6-7 supervise ``sigma * tr``),
positive in free space.  Nothing is view dependent: ``f`` and ``g`` are properties of 3D points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Literal, Optional

import torch
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.field_components.encodings import HashEncoding
from nerfstudio.field_components.mlp import MLP
from torch import Tensor, nn


@dataclass
class HashGridConfig:
    num_levels: int = 16
    features_per_level: int = 2
    log2_hashmap_size: int = 16
    """2^16 entries per level: two grids of 16 levels total ~15 MB with the decoders (paper: 15.48 MB)."""
    min_res: int = 16
    finest_resolution_m: float = 0.02
    """Cell size of the finest level in metres (paper: 2 cm)."""

    def max_res(self, extent_m: float) -> int:
        """Finest grid resolution over a scene box ``extent_m`` metres wide."""
        return max(self.min_res + 1, int(math.ceil(extent_m / self.finest_resolution_m)))


def hash_grid(config: HashGridConfig, extent_m: float, implementation: Literal["tcnn", "torch"]) -> HashEncoding:
    return HashEncoding(
        num_levels=config.num_levels,
        min_res=config.min_res,
        max_res=config.max_res(extent_m),
        log2_hashmap_size=config.log2_hashmap_size,
        features_per_level=config.features_per_level,
        implementation=implementation,
    )


class NeuraLocField(nn.Module):
    """Geometry (SDF + colour) and semantic (context + descriptor) branches; see module docstring."""

    def __init__(
        self,
        aabb: Tensor,
        metres_per_unit: float,
        descriptor_dim: int,
        context_dim: int,
        geometry_grid: Optional[HashGridConfig] = None,
        semantic_grid: Optional[HashGridConfig] = None,
        geometry_hidden_dim: int = 32,
        colour_hidden_dim: int = 32,
        semantic_hidden_dim: int = 128,
        geometry_feature_dim: int = 15,
        implementation: Literal["tcnn", "torch"] = "torch",
    ) -> None:
        super().__init__()
        self.register_buffer("aabb", aabb.clone().float())
        extent_m = float((aabb[1] - aabb[0]).max()) * metres_per_unit
        self.geometry_grid = hash_grid(geometry_grid or HashGridConfig(), extent_m, implementation)
        self.semantic_grid = hash_grid(semantic_grid or HashGridConfig(), extent_m, implementation)
        geo_in = self.geometry_grid.get_out_dim()
        sem_in = self.semantic_grid.get_out_dim()

        def decoder(in_dim: int, hidden: int, out_dim: int, out_activation=None) -> MLP:
            """2-layer MLP: in -> hidden (ReLU) -> out."""
            return MLP(in_dim, 2, hidden, out_dim, None, nn.ReLU(), out_activation, implementation)

        self.sdf_decoder = decoder(geo_in, geometry_hidden_dim, 1 + geometry_feature_dim)
        self.colour_decoder = decoder(geo_in + geometry_feature_dim, colour_hidden_dim, 3, nn.Sigmoid())
        self.context_decoder = decoder(sem_in, semantic_hidden_dim, context_dim)
        self.descriptor_decoder = decoder(sem_in, semantic_hidden_dim, descriptor_dim)
        self.descriptor_dim = descriptor_dim
        self.context_dim = context_dim

    def normalise(self, points: Tensor) -> Tensor:
        """Nerfstudio-frame points -> ``[0, 1]^3`` grid coordinates (clamped to the box)."""
        return SceneBox.get_normalized_positions(points, self.aabb).clamp(0.0, 1.0)

    def geometry(self, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """SDF ``sigma`` ``(..., 1)`` (truncation units), geometry feature and grid features."""
        shape = points.shape[:-1]
        grid = self.geometry_grid(self.normalise(points).reshape(-1, 3))
        out = self.sdf_decoder(grid).float()
        # explicit widths: a chunk may hold no points (a view with no surface in it)
        return (
            out[:, :1].reshape(*shape, 1),
            out[:, 1:].reshape(*shape, out.shape[-1] - 1),
            grid.reshape(*shape, grid.shape[-1]),
        )

    def sdf(self, points: Tensor) -> Tensor:
        return self.geometry(points)[0]

    def colour(self, geometry_feature: Tensor, grid: Tensor) -> Tensor:
        shape = grid.shape[:-1]
        x = torch.cat([grid, geometry_feature.to(grid.dtype)], dim=-1).reshape(
            -1, grid.shape[-1] + geometry_feature.shape[-1]
        )
        return self.colour_decoder(x).float().reshape(*shape, 3)

    def semantics(self, points: Tensor) -> Dict[str, Tensor]:
        """Context feature ``f`` and descriptor ``g`` of points (not normalised; rendered first)."""
        shape = points.shape[:-1]
        grid = self.semantic_grid(self.normalise(points).reshape(-1, 3))
        context, descriptors = self.context_decoder(grid).float(), self.descriptor_decoder(grid).float()
        return {  # explicit widths: no point at all is a valid input (no surface in the chunk)
            "context": context.reshape(*shape, context.shape[-1]),
            "descriptors": descriptors.reshape(*shape, descriptors.shape[-1]),
        }
