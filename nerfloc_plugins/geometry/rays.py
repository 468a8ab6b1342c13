"""Camera rays: through pixels of an OpenCV camera (x right, y down, z forward; pixel centres at
+0.5), and as Nerfstudio ``RayBundle`` s for a field."""

from __future__ import annotations

from typing import Tuple

import torch
from nerfstudio.cameras.rays import RayBundle
from torch import Tensor


def rays_from_pixels(c2w: Tensor, K: Tensor, uv: Tensor) -> Tuple[Tensor, Tensor]:
    """Unit-direction rays ``(N, 3)`` through pixels ``uv`` ``(N, 2)`` of an OpenCV ``c2w`` (3x4)."""
    x = (uv[:, 0] - K[0, 2]) / K[0, 0]
    y = (uv[:, 1] - K[1, 2]) / K[1, 1]
    dirs_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    dirs = torch.nn.functional.normalize(dirs_cam @ c2w[:3, :3].T, dim=-1)
    return c2w[:3, 3].expand_as(dirs), dirs


def ray_bundle(origins: Tensor, directions: Tensor) -> RayBundle:
    """Nerfstudio rays ``(N, 3)`` (unit directions, Nerfstudio frame) of camera 0, tiny pixel area."""
    n = origins.shape[0]
    return RayBundle(
        origins=origins,
        directions=directions,
        pixel_area=torch.full((n, 1), 1e-6, device=origins.device),
        camera_indices=torch.zeros((n, 1), dtype=torch.long, device=origins.device),
    )
