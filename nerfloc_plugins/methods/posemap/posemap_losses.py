"""PMNet's training losses for one batch (PoseMap Sec. 3.1 and 3.3).

* :func:`apr_losses` (eq. 2): ``L_pose`` (L2 on the 3x4 pose) + ``L_image`` (DFNet triplet: real
  image vs the rendering at its pose vs a rendering of another pose in the batch) +
  ``L_posemap`` (1 - cos between the PoseMaps at the predicted and the true pose; the gradient
  reaches the prediction through the rendering) + ``L_rvs`` (eq. 1) on randomly perturbed
  poses and their renderings.
* :func:`align_losses` (eq. 5, PMNet_ud): an unlabelled image ``I``, its predicted pose ``p^``,
  the rendering ``I'`` at ``p^`` and the prediction ``p^'`` on ``I'``:
  ``L_image(I, I', negative) + L_posemap(PoseMap(p^'), PoseMap(p^))`` (``p^`` is the target:
  the pose ``I'`` was rendered at).

All poses are OpenCV c2w in the frozen field's (Nerfstudio) frame, ``(B, 3, 4)``.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from nerfloc_plugins.data.frames import Intrinsics
from nerfloc_plugins.methods.posemap.posemap_aprnet import (
    APRLossConfig,
    APRNet,
    pose_loss,
    posemap_loss,
    triplet_feature_loss,
)
from nerfloc_plugins.methods.posemap.posemap_nerfp import PoseMapRenderer, orthonormalise_pose


def clip_row_gradients(x: Tensor, max_norm: float) -> Tensor:
    """Identity whose backward rescales the gradient of each row of ``x`` ``(B, D)`` to a norm of
    at most ``max_norm`` (only the gradient flowing through the returned tensor)."""
    if max_norm <= 0 or not x.requires_grad:
        return x
    y = x * 1.0
    y.register_hook(lambda g: g * (max_norm / g.norm(dim=-1, keepdim=True).clamp(min=1e-20)).clamp(max=1.0))
    return y


def posemap_maps(posemaps: PoseMapRenderer, raw: Tensor, intrinsics: Intrinsics, config: APRLossConfig) -> Tensor:
    """PoseMaps at raw predicted poses ``(B, 12)``, their gradient at each pose clipped to
    ``posemap_grad_clip / B`` (L_pose's per-pose gradient norm is ``1 / B``)."""
    raw = clip_row_gradients(raw, config.posemap_grad_clip / len(raw))
    return posemaps(orthonormalise_pose(raw), intrinsics)


def posemap_term(
    posemaps: PoseMapRenderer, raw: Tensor, target_poses: Tensor, intrinsics: Intrinsics, config: APRLossConfig
) -> Tensor:
    """``L_posemap`` of raw predictions ``(B, 12)`` against target poses (targets not differentiated)."""
    with torch.no_grad():
        target = posemaps(target_poses, intrinsics)
    return posemap_loss(posemap_maps(posemaps, raw, intrinsics, config), target)


def apr_losses(
    net: APRNet,
    posemaps: PoseMapRenderer,
    images: Tensor,
    poses: Tensor,
    rendered: Tensor,
    intrinsics: Intrinsics,
    config: APRLossConfig,
    rvs: Optional[Tuple[Tensor, Tensor]] = None,
) -> Dict[str, Tensor]:
    """Weighted PMNet terms of one batch; ``rendered``: renderings at ``poses``; ``rvs``:
    ``(images, poses)`` of random view synthesis.  A term with weight 0 is not computed."""
    raw, feats = net(images, with_features=config.image_weight > 0)
    losses: Dict[str, Tensor] = {}
    if config.pose_weight > 0:
        losses["pose"] = config.pose_weight * pose_loss(raw, poses)
    if config.image_weight > 0 and len(images) > 1:
        _, feats_rendered = net(rendered)
        negative = feats_rendered.roll(1, dims=0)  # a rendering of another pose of the batch
        losses["image"] = config.image_weight * triplet_feature_loss(
            feats, feats_rendered, negative, config.triplet_margin
        )
    if config.posemap_weight > 0:
        losses["posemap"] = config.posemap_weight * posemap_term(posemaps, raw, poses, intrinsics, config)
    if config.rvs_weight > 0 and rvs is not None:
        rvs_images, rvs_poses = rvs
        rvs_raw, _ = net(rvs_images, with_features=False)
        term = pose_loss(rvs_raw, rvs_poses)
        if config.posemap_weight > 0:
            with torch.no_grad():
                rvs_target = posemaps(rvs_poses, intrinsics)
            rvs_pred = posemap_maps(posemaps, rvs_raw, intrinsics, config)
            # eq. 1's ||F^_rvs - F_rvs||_2 as a per-map RMS difference
            term = term + torch.sqrt(((rvs_pred - rvs_target) ** 2).mean(dim=(1, 2, 3)) + 1e-12).mean()
        losses["rvs"] = config.rvs_weight * term
    return losses


def align_losses(
    net: APRNet,
    posemaps: PoseMapRenderer,
    images: Tensor,
    predicted: Tensor,
    rendered: Tensor,
    negatives: Tensor,
    intrinsics: Intrinsics,
    config: APRLossConfig,
) -> Dict[str, Tensor]:
    """Eq. 5 on unlabelled ``images``; ``predicted``: their (detached, orthonormal) predicted
    poses, ``rendered``: renderings at them, ``negatives``: renderings of other poses."""
    _, feats = net(images)
    raw_rendered, feats_rendered = net(rendered)
    _, feats_negative = net(negatives)
    losses = {
        "image": config.image_weight
        * triplet_feature_loss(feats, feats_rendered, feats_negative, config.triplet_margin)
    }
    if config.posemap_weight > 0:
        losses["posemap"] = config.posemap_weight * posemap_term(posemaps, raw_rendered, predicted, intrinsics, config)
    return losses
