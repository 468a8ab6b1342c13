"""3D points and internal NeRF features rendered from a frozen field (NeRFMatch Sec. 3.2, eq. 2).

For a reference camera, one ray through the centre of every ``patch x patch`` block (pixel
``(8c + 4, 8r + 4)`` for ``patch = 8``: the pinhole scaled by ``1 / patch``, whose pixel centres
land there) gives ``X^ = sum_i w_i X_i`` (expected depth along the ray, returned in the dataset
frame in metres and in the Nerfstudio frame) and ``F^ = sum_i w_i f_i`` of the selected field
layers (``hash``, ``hidden``, ``geo``, or several concatenated in that order).  Rays with
accumulation below 0.5 are marked invalid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from nerfloc_plugins.data.frames import Intrinsics
from nerfloc_plugins.geometry.projection import backproject, pixel_grid
from nerfloc_plugins.nerf.field_renderer import FieldRenderer
from nerfloc_plugins.nerf.nerfloc_nerfacto_field import FEATURE_LAYERS, feature_output_name


@dataclass
class RenderedPoints:
    points: np.ndarray
    """``(N_s, 3)`` dataset-frame metres (zeros where invalid)."""
    points_ns: Tensor
    """``(N_s, 3)`` the same points in the NeRF's (Nerfstudio) frame, on the device."""
    features: Tensor
    """``(N_s, C)`` rendered features, on the device."""
    valid: Tensor
    """``(N_s,)`` bool, on the device."""
    pixels: np.ndarray
    """``(N_s, 2)`` full-resolution pixel of each ray in the reference view."""


class NerfPointFeatures:
    """Renders points + features of ``layers`` from a frozen run (see module docstring)."""

    def __init__(self, renderer: FieldRenderer, layers: Sequence[str], patch: int = 8) -> None:
        unknown = [name for name in layers if name not in FEATURE_LAYERS]
        if unknown or not layers:
            raise ValueError(f"NeRF feature layers must be some of {FEATURE_LAYERS}, got {list(layers)}")
        self.renderer = renderer
        self.layers = tuple(layers)
        self.patch = patch
        # the frozen model renders the requested layers from now on
        renderer.model.config.feature_outputs = self.layers
        dims = renderer.model.field.feature_dims()
        self.feature_dim = sum(dims[name] for name in self.layers)

    def grid_intrinsics(self, intrinsics: Intrinsics) -> Intrinsics:
        """One pixel per ``patch x patch`` block of the image cropped to multiples of ``patch``."""
        crop = intrinsics.cropped_to_multiple_of(self.patch)
        return crop.scaled_to(crop.width // self.patch, crop.height // self.patch)

    @torch.no_grad()
    def render(self, c2w: np.ndarray, intrinsics: Intrinsics) -> RenderedPoints:
        small = self.grid_intrinsics(intrinsics)
        outputs = [feature_output_name(name) for name in self.layers] + ["accumulation"]
        out = self.renderer.render(c2w, small, outputs=outputs)
        depth = out["depth"].reshape(-1)
        uv_small = pixel_grid(small.width, small.height).reshape(-1, 2)
        valid = (out["accumulation"].reshape(-1) > 0.5) & (depth > 0) & np.isfinite(depth)
        points = np.zeros((len(depth), 3))
        points[valid] = backproject(uv_small[valid], depth[valid], small.matrix(), c2w)
        device = self.renderer.device
        features = np.concatenate([out[feature_output_name(n)].reshape(len(depth), -1) for n in self.layers], -1)
        return RenderedPoints(
            points=points,
            points_ns=torch.from_numpy(self.renderer.transform.points_to_nerfstudio(points)).float().to(device),
            features=torch.from_numpy(features).float().to(device),
            valid=torch.from_numpy(valid).to(device),
            pixels=uv_small * self.patch,
        )
