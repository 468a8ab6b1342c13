"""CrossFire training losses (Moreau et al., Sec. 3.2, eq. 1-3).

Descriptor maps are ``(N, D)`` rows (one per pixel of the descriptor map, any order);
``xyz`` are the 3D points of those pixels computed from the rendered depth and the camera,
in metres of the dataset frame (or any metric unit consistent with ``lam``).  Similarities
are cosine similarities.

* ``L_pos = mean_i max(0, 1 - cos(F_I[i], F_R[i]))``                               (eq. 1)
* ``L_neg = mean_{k,i} max(0, cos(F_I[p_k(i)], F_R[i]) - t(p_k(i), i))``           (eq. 2)
  with ``t(i, j) = max(0, 1 - lam * ||xyz(i) - xyz(j)||)`` and ``p_k`` random permutations;
  no gradient flows from ``L_neg`` into the geometry (``xyz`` is detached).
* ``L = L_MSE + 0.1 * DSSIM + 1e-3 * TV(depth, random 5x5 patches) + L_pos + L_neg`` (eq. 3)

``contrastive_loss`` is **our** alternative to ``L_pos + L_neg`` (not in the paper) for short
training runs: a symmetric InfoNCE over all pixel pairs where pairs closer than ``1 / lam``
(where the paper's margin ``t`` is positive) are not used as negatives.  On the example scene
it makes descriptors discriminative within ~1.5k CPU steps, where the paper's hinge with random
permutations does not (see docs/crossfire.md).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def _cosine_rows(a: Tensor, b: Tensor) -> Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-8)


def positive_loss(image_desc: Tensor, rendered_desc: Tensor) -> Tensor:
    """Eq. 1: pull the CNN and rendered descriptors of the same pixel together."""
    return torch.clamp(1.0 - _cosine_rows(image_desc, rendered_desc), min=0.0).mean()


def distance_margin(xyz_a: Tensor, xyz_b: Tensor, lam: float) -> Tensor:
    """``t_lambda = max(0, 1 - lam * ||a - b||)``: the largest similarity allowed at that distance."""
    return torch.clamp(1.0 - lam * torch.linalg.norm(xyz_a - xyz_b, dim=-1), min=0.0)


def negative_loss(
    image_desc: Tensor,
    rendered_desc: Tensor,
    xyz: Tensor,
    lam: float,
    num_permutations: int = 1,
    generator: Optional[torch.Generator] = None,
    permutations: Optional[Tensor] = None,
) -> Tensor:
    """Eq. 2: push apart descriptors of pixels whose 3D points are far apart.

    ``permutations`` ``(m, N)`` can be given explicitly (tests); otherwise ``num_permutations``
    random ones are drawn with ``generator``.
    """
    n = image_desc.shape[0]
    xyz = xyz.detach()  # the descriptor loss must not shape the geometry
    if permutations is None:
        permutations = torch.stack(
            [torch.randperm(n, generator=generator).to(image_desc.device) for _ in range(num_permutations)]
        )
    losses = []
    for perm in permutations:
        sim = _cosine_rows(image_desc[perm], rendered_desc)
        losses.append(torch.clamp(sim - distance_margin(xyz[perm], xyz, lam), min=0.0))
    return torch.stack(losses).mean()


def dssim(pred: Tensor, target: Tensor) -> Tensor:
    """Structural dissimilarity ``(1 - SSIM) / 2`` of ``(H, W, 3)`` images in [0, 1]."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    p = pred.permute(2, 0, 1)[None]
    t = target.permute(2, 0, 1)[None]
    kernel = min(11, (min(pred.shape[0], pred.shape[1]) // 2) * 2 - 1)
    ssim = structural_similarity_index_measure(p, t, data_range=1.0, kernel_size=kernel)
    return (1.0 - ssim) / 2.0


def depth_tv_patches(
    depth: Tensor, patch_size: int = 5, num_patches: int = 16, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Mean absolute depth difference between neighbours inside random ``patch x patch`` patches."""
    h, w = depth.shape[:2]
    depth = depth.reshape(h, w)
    ps = min(patch_size, h, w)
    ys = torch.randint(0, h - ps + 1, (num_patches,), generator=generator).tolist()
    xs = torch.randint(0, w - ps + 1, (num_patches,), generator=generator).tolist()
    patches = torch.stack([depth[y : y + ps, x : x + ps] for y, x in zip(ys, xs)])
    dy = (patches[:, 1:, :] - patches[:, :-1, :]).abs().mean()
    dx = (patches[:, :, 1:] - patches[:, :, :-1]).abs().mean()
    return dx + dy


def contrastive_loss(
    image_desc: Tensor,
    rendered_desc: Tensor,
    xyz: Tensor,
    lam: float,
    temperature: float = 0.1,
    max_cells: int = 4096,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """3D-distance-aware symmetric InfoNCE between CNN and rendered descriptors (ours, see above).

    Row ``i`` of the cosine-similarity matrix ``/ temperature`` is a classification of pixel ``i``
    among all rendered pixels (and vice versa for columns); other pixels whose 3D points lie
    within ``1 / lam`` of pixel ``i``'s are masked out.  At most ``max_cells`` random pixels are
    used (the matrix is ``N^2``).
    """
    n = image_desc.shape[0]
    if n > max_cells:
        keep = torch.randperm(n, generator=generator)[:max_cells].to(image_desc.device)
        image_desc, rendered_desc, xyz = image_desc[keep], rendered_desc[keep], xyz[keep]
        n = max_cells
    xyz = xyz.detach()
    a = torch.nn.functional.normalize(image_desc, dim=-1)
    b = torch.nn.functional.normalize(rendered_desc, dim=-1)
    logits = (a @ b.T) / temperature
    eye = torch.eye(n, dtype=torch.bool, device=logits.device)
    near = (torch.cdist(xyz, xyz) < 1.0 / lam) & ~eye
    logits = logits.masked_fill(near, float("-inf"))
    target = torch.arange(n, device=logits.device)
    ce = torch.nn.functional.cross_entropy
    return 0.5 * (ce(logits, target) + ce(logits.T, target))
