"""NeuraLoc rendering weights and losses (Sec. III-A, eq. 2 and 5-10).

Shapes: rays ``R``, samples per ray ``S``.  ``sdf`` is the field's signed distance in
truncation units (``sigma``; positive in free space), ``t`` the sample distances along unit ray
directions and ``surface_t`` the ray distance of the sensor's depth reading, both in metres,
``truncation`` ``tr`` in metres.  Losses are means over rays (the paper writes sums; the
weights 0.5 / 1 / 5000 / 10 / 1 / 0.01 keep their ratios).
"""

from __future__ import annotations

import torch
from torch import Tensor


def bell_weights(sdf: Tensor, truncation: float) -> Tensor:
    """Eq. 2: ``w = sigmoid(sigma / tr) * sigmoid(-sigma / tr)`` (peak 1/4 at the surface)."""
    x = sdf / truncation
    return torch.sigmoid(x) * torch.sigmoid(-x)


def first_surface_mask(sdf: Tensor, t: Tensor, truncation: float) -> Tensor:
    """``(R, S)`` bool: samples before the first + -> - SDF crossing plus ``tr`` (occluded
    surfaces behind it get no weight; Co-SLAM's rendering, which NeuraLoc follows).  Rays
    without a crossing keep every sample."""
    crossing = (sdf[:, :-1] > 0) & (sdf[:, 1:] <= 0)
    has = crossing.any(dim=1)
    first = torch.where(has, crossing.float().argmax(dim=1), torch.full_like(has, t.shape[1] - 1, dtype=torch.long))
    t_first = torch.gather(t, 1, first[:, None])
    return (t <= t_first + truncation) | ~has[:, None]


def normalised_weights(sdf: Tensor, t: Tensor, truncation: float, first_surface: bool = True) -> Tensor:
    """``w~_i = w_i / sum_j w_j`` (eq. 3-4) with the bell weights of eq. 2, ``(R, S)``."""
    w = bell_weights(sdf, truncation)
    if first_surface:
        w = w * first_surface_mask(sdf.detach(), t, truncation)
    return w / (w.sum(dim=1, keepdim=True) + 1e-8)


def free_space_and_sdf_losses(sdf: Tensor, t: Tensor, surface_t: Tensor, truncation: float) -> tuple[Tensor, Tensor]:
    """Eq. 6 (free space: ``sigma -> 1`` where ``|t - D| > tr`` in front of the surface) and
    eq. 7 (truncation region: ``t + sigma * tr -> D``), averaged per ray over its samples, then
    over rays with a depth reading (``surface_t > 0``)."""
    valid = surface_t > 0
    if not valid.any():
        zero = sdf.sum() * 0.0
        return zero, zero
    sdf, t, d = sdf[valid], t[valid], surface_t[valid][:, None]
    near = (t - d).abs() < truncation
    free = (t < d - truncation) & ~near

    def per_ray_mean(values: Tensor, mask: Tensor) -> Tensor:
        count = mask.sum(dim=1)
        per_ray = (values * mask).sum(dim=1) / count.clamp(min=1)
        has = count > 0
        return per_ray[has].mean() if has.any() else values.sum() * 0.0

    fs = per_ray_mean((sdf - 1.0) ** 2, free)
    trunc = per_ray_mean((t + sdf * truncation - d) ** 2, near)
    return fs, trunc


def distillation_loss(rendered: Tensor, teacher: Tensor) -> Tensor:
    """Eq. 9 term: mean of ``1 - cos(teacher, rendered)`` over rows."""
    return (1.0 - torch.nn.functional.cosine_similarity(rendered, teacher, dim=-1)).mean()


def similarity_alignment_loss(descriptors_2d: Tensor, descriptors_3d: Tensor, temperature: float = 0.1) -> Tensor:
    """Eq. 10: ``mean_i KL(softmax(p2D_i / T) || softmax(p3D_i / T))`` over ``M`` keypoints of one
    image, ``p2D_ij = cos(g2D_i, g2D_j)``, ``p3D_ij = cos(g3D_i, g2D_j)``.  Zero when the rendered
    descriptors equal the 2D ones; the temperature focuses it on the positive (i = j) entries."""
    g2 = torch.nn.functional.normalize(descriptors_2d.float(), dim=-1)
    g3 = torch.nn.functional.normalize(descriptors_3d.float(), dim=-1)
    log_p = torch.log_softmax(g2 @ g2.T / temperature, dim=-1)
    log_q = torch.log_softmax(g3 @ g2.T / temperature, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()
