"""Training of PMNet's three stages on a frozen ``nerfloc-nerfacto`` map (PoseMap Sec. 3).

1. **NeRF-P** (:func:`train_nerf_p`): the NeRF is frozen; the pose branch and the pose decoder
   learn to regress each training pose from its PoseMap (L2 on the 3x4 pose).
2. **APRNet** (:func:`train_apr`): per step a batch of real training images with poses;
   ``L_pose`` + ``L_image`` (triplet: real vs rendering at its pose vs rendering of another
   pose in the batch) + ``L_posemap`` (PoseMap at the predicted pose vs at the true pose,
   gradient through rendering to the prediction) + ``L_rvs`` (eq. 1) on perturbed poses.
3. **Self-supervised alignment** (:func:`align_apr`, PMNet_ud): unlabelled images, batch 1,
   lr 1e-5: predict ``p^`` for ``I``, render ``I'`` at ``p^``, predict ``p^'`` for ``I'``;
   ``L_image(I, I')`` + ``L_posemap(PoseMap(p^'), PoseMap(p^))``.

Images rendered by the NeRF (at the training poses for L_image, at perturbed poses for RVS) are
rendered at ``render_scale`` of the image size and upsampled; the CPU presets pre-render them
(training-pose renders once, an RVS pool refreshed every ``rvs_refresh_every`` steps) because
rendering a view on the fly costs seconds on a CPU.  All poses are Nerfstudio-frame OpenCV c2w.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from nerfloc_plugins.data.frames import Intrinsics
from nerfloc_plugins.localize.field_renderer import FieldRenderer
from nerfloc_plugins.models.apr import (
    APRNet,
    PerturbationConfig,
    perturb_poses,
    pose_loss,
    posemap_loss,
    triplet_feature_loss,
)
from nerfloc_plugins.models.posemap import PoseDecoder, PoseMapRenderer, orthonormalise_pose


@dataclass
class NerfPTrainConfig:
    iterations: int = 2000
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0


def train_nerf_p(
    posemaps: PoseMapRenderer,
    decoder: PoseDecoder,
    poses: Tensor,
    intrinsics: Intrinsics,
    config: NerfPTrainConfig,
    on_step: Optional[Callable[[int, float], None]] = None,
) -> List[float]:
    """Stage 2 of NeRF-P: fit the pose branch + decoder to training ``poses`` ``(N, 3, 4)``."""
    gen = torch.Generator().manual_seed(config.seed)
    params = list(posemaps.branch.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, config.iterations))
    history = []
    for step in range(config.iterations):
        idx = torch.randint(0, len(poses), (min(config.batch_size, len(poses)),), generator=gen)
        target = poses[idx]
        pred = decoder(posemaps(target, intrinsics))
        loss = pose_loss(pred, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        history.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, history[-1])
    return history


@dataclass
class APRTrainConfig:
    iterations: int = 2000
    batch_size: int = 4
    lr: float = 1e-4
    """Adam (paper: 1e-4)."""
    image_weight: float = 1.0
    posemap_weight: float = 1.0
    rvs_weight: float = 1.0
    """0 turns a term off (ablations of Table 5b)."""
    triplet_margin: float = 0.5
    grad_clip: float = 1.0
    """Gradient-norm clip (ours: a randomly initialised VGG16 without batch norm diverges without it)."""
    perturbation: PerturbationConfig = field(default_factory=PerturbationConfig)
    rvs_pool_size: int = 32
    rvs_refresh_every: int = 500
    render_scale: float = 0.5
    seed: int = 0


@dataclass
class PoseMapData:
    """Training data of APRNet in the field's frame."""

    images: Tensor
    """``(N, 3, H, W)`` real images in [0, 1]."""
    poses: Tensor
    """``(N, 3, 4)`` Nerfstudio-frame OpenCV c2w."""
    intrinsics: Intrinsics
    metres_per_unit: float


def render_images(renderer: FieldRenderer, poses: Tensor, intrinsics: Intrinsics, scale: float) -> Tensor:
    """``(N, 3, H, W)`` RGB renderings at Nerfstudio-frame OpenCV poses (rendered at ``scale``, upsampled)."""
    small = intrinsics.scaled_to(max(8, round(intrinsics.width * scale)), max(8, round(intrinsics.height * scale)))
    out = []
    for pose in poses:
        c2w = np.eye(4)
        c2w[:3] = pose.detach().double().cpu().numpy()
        rgb = renderer.render(renderer.c2w_from_ns_opencv(c2w), small)["rgb"]
        t = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
        out.append(torch.nn.functional.interpolate(t, size=(intrinsics.height, intrinsics.width), mode="bilinear"))
    return torch.cat(out).to(poses.device)


def apr_losses(
    net: APRNet,
    posemaps: PoseMapRenderer,
    images: Tensor,
    poses: Tensor,
    rendered: Tensor,
    intrinsics: Intrinsics,
    config: APRTrainConfig,
    rvs: Optional[tuple[Tensor, Tensor]] = None,
) -> Dict[str, Tensor]:
    """The PMNet losses of one batch (eq. 2); ``rendered``: renderings at ``poses``."""
    raw, feats = net(images)
    losses = {"pose": pose_loss(raw, poses)}
    if config.image_weight > 0 and len(images) > 1:
        _, feats_rendered = net(rendered)
        negative = feats_rendered.roll(1, dims=0)
        losses["image"] = config.image_weight * triplet_feature_loss(
            feats, feats_rendered, negative, config.triplet_margin
        )
    if config.posemap_weight > 0:
        with torch.no_grad():
            target = posemaps(poses, intrinsics)
        predicted = posemaps(orthonormalise_pose(raw), intrinsics)
        losses["posemap"] = config.posemap_weight * posemap_loss(predicted, target)
    if config.rvs_weight > 0 and rvs is not None:
        rvs_images, rvs_poses = rvs
        rvs_raw, _ = net(rvs_images, with_features=False)
        term = pose_loss(rvs_raw, rvs_poses)
        if config.posemap_weight > 0:
            with torch.no_grad():
                rvs_target = posemaps(rvs_poses, intrinsics)
            rvs_pred = posemaps(orthonormalise_pose(rvs_raw), intrinsics)
            # eq. 1's ||F^_rvs - F_rvs||_2 as a per-map RMS difference
            term = term + torch.sqrt(((rvs_pred - rvs_target) ** 2).mean(dim=(1, 2, 3)) + 1e-12).mean()
        losses["rvs"] = config.rvs_weight * term
    return losses


def train_apr(
    net: APRNet,
    posemaps: PoseMapRenderer,
    renderer: FieldRenderer,
    data: PoseMapData,
    config: APRTrainConfig,
    on_step: Optional[Callable[[int, Dict[str, float]], None]] = None,
) -> List[Dict[str, float]]:
    """Stage 3: train APRNet with L_pose + L_image + L_posemap + L_rvs (see module docstring)."""
    rng = random.Random(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    device = data.images.device
    rendered_all = render_images(renderer, data.poses, data.intrinsics, config.render_scale)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    rvs_images = rvs_poses = None
    history: List[Dict[str, float]] = []
    net.train()
    for step in range(config.iterations):
        if config.rvs_weight > 0 and (rvs_images is None or step % max(1, config.rvs_refresh_every) == 0):
            base = data.poses[torch.randint(0, len(data.poses), (config.rvs_pool_size,), generator=gen)]
            rvs_poses = perturb_poses(base, config.perturbation, data.metres_per_unit, gen)
            rvs_images = render_images(renderer, rvs_poses, data.intrinsics, config.render_scale)
        idx = torch.tensor(rng.sample(range(len(data.images)), min(config.batch_size, len(data.images))), device=device)
        rvs = None
        if rvs_images is not None:
            j = torch.tensor(rng.sample(range(len(rvs_images)), min(config.batch_size, len(rvs_images))), device=device)
            rvs = (rvs_images[j], rvs_poses[j])
        losses = apr_losses(
            net, posemaps, data.images[idx], data.poses[idx], rendered_all[idx], data.intrinsics, config, rvs
        )
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        optimizer.step()
        record = {k: float(v.detach()) for k, v in losses.items()} | {"total": float(total.detach())}
        history.append(record)
        if on_step is not None:
            on_step(step, record)
    net.eval()
    return history


@dataclass
class AlignConfig:
    iterations: int = 200
    lr: float = 1e-5
    """Paper: 1e-5, batch 1."""
    triplet_margin: float = 0.5
    render_scale: float = 0.5
    seed: int = 0


def align_apr(
    net: APRNet,
    posemaps: PoseMapRenderer,
    renderer: FieldRenderer,
    images: Sequence[Tensor],
    intrinsics: Intrinsics,
    config: AlignConfig,
) -> List[Dict[str, float]]:
    """PMNet_ud: self-supervised fine-tuning on unlabelled ``(3, H, W)`` images (eq. 5)."""
    rng = random.Random(config.seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    history = []
    net.train()
    for _ in range(config.iterations):
        image = images[rng.randrange(len(images))][None]
        other = images[rng.randrange(len(images))][None]
        raw, feats = net(image)
        pose = orthonormalise_pose(raw).detach()
        rendered = render_images(renderer, pose, intrinsics, config.render_scale)
        raw_r, feats_r = net(rendered)
        _, feats_other = net(
            render_images(
                renderer,
                orthonormalise_pose(net(other, with_features=False)[0]).detach(),
                intrinsics,
                config.render_scale,
            )
        )
        losses = {"image": triplet_feature_loss(feats, feats_r, feats_other, config.triplet_margin)}
        with torch.no_grad():
            target = posemaps(pose, intrinsics)
        losses["posemap"] = posemap_loss(posemaps(orthonormalise_pose(raw_r), intrinsics), target)
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    net.eval()
    return history
