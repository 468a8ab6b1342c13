"""Nerfacto field whose intermediate features can be read out per sample.

The density branch is ``hash grid -> MLP (hidden layers) -> [density logit, geo features]``
as in Nerfstudio's ``NerfactoField``, but the grid and the MLP are kept as separate
modules so the per-sample features of each stage are available:

* ``hash``   - multi-resolution hash-grid output (``num_levels * features_per_level``),
* ``hidden`` - the middle hidden layer of the density MLP (after its activation),
* ``geo``    - the geometry features fed to the colour head (``geo_feat_dim``).

The grid uses tiny-cuda-nn when installed (``implementation="tcnn"``); the small density
MLP always runs in PyTorch so its hidden layer stays readable.
"""

from __future__ import annotations

from typing import Dict, Literal, Sequence, Tuple

import torch
from nerfstudio.cameras.rays import RaySamples
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.field_components.activations import trunc_exp
from nerfstudio.field_components.encodings import HashEncoding
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.field_components.mlp import MLP
from nerfstudio.fields.nerfacto_field import NerfactoField
from torch import Tensor, nn

FeatureLayer = Literal["hash", "hidden", "geo"]
FEATURE_LAYERS: Tuple[FeatureLayer, ...] = ("hash", "hidden", "geo")


def feature_output_name(layer: str) -> str:
    """Name of the rendered output for a feature layer (e.g. ``feature_hidden``)."""
    return f"feature_{layer}"


class NerflocNerfactoField(NerfactoField):
    """``NerfactoField`` with separable grid / MLP and readable intermediate features."""

    def __init__(self, aabb: Tensor, *args, num_layers_base: int = 2, **kwargs) -> None:
        super().__init__(aabb, *args, **kwargs)
        implementation = kwargs.get("implementation", "tcnn")
        num_levels = kwargs.get("num_levels", 16)
        max_res = kwargs.get("max_res", 2048)
        base_res = kwargs.get("base_res", 16)
        self.mlp_base_grid = HashEncoding(
            num_levels=num_levels,
            min_res=base_res,
            max_res=max_res,
            log2_hashmap_size=kwargs.get("log2_hashmap_size", 19),
            features_per_level=kwargs.get("features_per_level", 2),
            implementation=implementation,
        )
        self.mlp_base_mlp = MLP(
            in_dim=self.mlp_base_grid.get_out_dim(),
            num_layers=num_layers_base,
            layer_width=kwargs.get("hidden_dim", 64),
            out_dim=1 + self.geo_feat_dim,
            activation=nn.ReLU(),
            out_activation=None,
            implementation="torch",
        )
        del self.mlp_base  # replaced by the two modules above (see get_density)

    def feature_dims(self) -> Dict[str, int]:
        """Channel count of each readable feature layer."""
        return {
            "hash": self.mlp_base_grid.get_out_dim(),
            "hidden": self.mlp_base_mlp.layer_width,
            "geo": self.geo_feat_dim,
        }

    def _normalized_positions(self, ray_samples: RaySamples) -> Tuple[Tensor, Tensor]:
        if self.spatial_distortion is not None:
            positions = self.spatial_distortion(ray_samples.frustums.get_positions())
            positions = (positions + 2.0) / 4.0
        else:
            positions = SceneBox.get_normalized_positions(ray_samples.frustums.get_positions(), self.aabb)
        selector = ((positions > 0.0) & (positions < 1.0)).all(dim=-1)
        return positions * selector[..., None], selector

    def density_and_features(
        self, ray_samples: RaySamples, layers: Sequence[str] = ()
    ) -> Tuple[Tensor, Tensor, Dict[str, Tensor]]:
        """Density ``(*, 1)``, geo features ``(*, geo_feat_dim)`` and the requested features."""
        unknown = set(layers) - set(FEATURE_LAYERS)
        if unknown:
            raise ValueError(f"unknown feature layers {sorted(unknown)}; choose from {FEATURE_LAYERS}")
        positions, selector = self._normalized_positions(ray_samples)
        self._sample_locations = positions
        if not self._sample_locations.requires_grad:
            self._sample_locations.requires_grad = True
        shape = ray_samples.frustums.shape
        grid = self.mlp_base_grid(positions.view(-1, 3))
        # tiny-cuda-nn's grid returns fp16 and the torch MLP's weights are float32: outside autocast
        # (every render but the training step) the MLP must get its own dtype
        x, hidden = grid.to(self.mlp_base_mlp.layers[0].weight.dtype), None
        mlp_layers = self.mlp_base_mlp.layers
        middle = (len(mlp_layers) - 2) // 2
        for i, layer in enumerate(mlp_layers):
            x = layer(x)
            if i < len(mlp_layers) - 1:
                x = self.mlp_base_mlp.activation(x)
                if i == middle:
                    hidden = x
        h = x.view(*shape, -1)
        density_before_activation, geo = torch.split(h, [1, self.geo_feat_dim], dim=-1)
        self._density_before_activation = density_before_activation
        density = self.average_init_density * trunc_exp(density_before_activation.to(positions))
        density = density * selector[..., None]
        available = {"hash": grid, "hidden": hidden, "geo": geo}
        features = {name: available[name].reshape(*shape, -1).float() for name in layers}
        return density, geo, features

    def get_density(self, ray_samples: RaySamples) -> Tuple[Tensor, Tensor]:
        density, geo, _ = self.density_and_features(ray_samples)
        return density, geo

    def forward_with_features(
        self, ray_samples: RaySamples, layers: Sequence[str]
    ) -> Tuple[Dict[FieldHeadNames, Tensor], Dict[str, Tensor]]:
        """Like ``forward`` (no normals) but also returns per-sample features of ``layers``."""
        density, geo, features = self.density_and_features(ray_samples, layers)
        outputs = self.get_outputs(ray_samples, density_embedding=geo)
        outputs[FieldHeadNames.DENSITY] = density
        return outputs, features
