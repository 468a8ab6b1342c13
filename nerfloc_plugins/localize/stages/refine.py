"""Photometric pose refinement through a frozen field (iNeRF-style).

The pose is perturbed in the camera frame, ``c2w' = c2w @ exp(xi)`` with ``xi`` in se(3)
(Nerfstudio's ``exp_map_SE3``; translation first, then rotation), and ``xi`` is optimised
with Adam so that colours rendered along randomly sampled pixel rays match the query.
The renderer is any differentiable ``render(origins, directions) -> rgb``; poses here are
OpenCV c2w in the renderer's world frame (torch float32).  Iterative refinement (re-render
and re-match) is part of :mod:`nerfloc_plugins.localize.pipeline`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Tuple

import numpy as np
import torch
from nerfstudio.cameras.lie_groups import exp_map_SE3
from torch import Tensor
from typing_extensions import Annotated

from nerfloc_plugins.geometry.rays import rays_from_pixels
from nerfloc_plugins.utils.option_ranges import COUNT, NON_NEGATIVE, POSITIVE

RayRenderer = Callable[[Tensor, Tensor], Tensor]


@dataclass
class PhotometricConfig:
    steps: Annotated[int, NON_NEGATIVE] = 0
    """Adam steps on the pose (0 = off)."""
    lr: Annotated[float, POSITIVE] = 2e-3
    num_rays: Annotated[int, COUNT] = 1024
    """Pixels sampled per step."""
    rematch: bool = True
    """Match and solve PnP again from the refined pose."""
    seed: int = 0


def perturb(c2w: Tensor, xi: Tensor) -> Tensor:
    """``c2w @ exp(xi)`` for a (3x4) pose and a 6-vector."""
    delta = exp_map_SE3(xi[None])[0]
    rot = c2w[:3, :3] @ delta[:3, :3]
    trans = c2w[:3, :3] @ delta[:3, 3] + c2w[:3, 3]
    return torch.cat([rot, trans[:, None]], dim=1)


class PhotometricRefiner:
    """Optimises a camera pose so the field's colours match the query image."""

    def __init__(self, render: RayRenderer, config: PhotometricConfig, device: str | torch.device = "cpu") -> None:
        self.render = render
        self.config = config
        self.device = torch.device(device)

    def refine(self, c2w: np.ndarray, image: np.ndarray, K: np.ndarray) -> Tuple[np.ndarray, list]:
        """Refined OpenCV c2w (renderer frame) and the loss per step."""
        pose = torch.as_tensor(np.asarray(c2w)[:3], dtype=torch.float32, device=self.device)
        target = torch.as_tensor(image, dtype=torch.float32, device=self.device)
        Kt = torch.as_tensor(K, dtype=torch.float32, device=self.device)
        h, w = target.shape[:2]
        xi = torch.zeros(6, device=self.device, requires_grad=True)
        optimizer = torch.optim.Adam([xi], lr=self.config.lr)
        gen = torch.Generator(device="cpu").manual_seed(self.config.seed)
        losses = []
        for _ in range(self.config.steps):
            iy = torch.randint(0, h, (self.config.num_rays,), generator=gen).to(self.device)
            ix = torch.randint(0, w, (self.config.num_rays,), generator=gen).to(self.device)
            uv = torch.stack([ix, iy], dim=-1).float() + 0.5
            origins, dirs = rays_from_pixels(perturb(pose, xi), Kt, uv)
            loss = torch.mean((self.render(origins, dirs) - target[iy, ix, :3]) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        with torch.no_grad():
            out = np.eye(4)
            out[:3] = perturb(pose, xi).double().cpu().numpy()
        return out, losses
