"""Training loop of the D2S regressor on keypoint views (real and synthetic).

Paper settings (descriptor synthesis Sec. IV-A): Adam, learning rate 5e-4 halved 7 times over
training, batch of 4 images; the reprojection loss joins at 80 % of training (D2S).  Each step
samples ``batch_size`` views uniformly from all views given (real + kept synthetic).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.methods.d2s.d2s_keypoint_views import KeypointView
from nerfloc_plugins.methods.d2s.d2s_model import (
    D2SConfig,
    D2SLossConfig,
    D2SNet,
    coordinate_error,
    coordinate_loss,
    reprojection_loss,
    uncertainty_loss,
)
from nerfloc_plugins.utils.atomic import atomic_path


@dataclass
class D2STrainConfig:
    iterations: int = 30000
    batch_size: int = 4
    lr: float = 5e-4
    lr_decay: float = 0.5
    num_lr_decays: int = 7
    """The learning rate is multiplied by ``lr_decay`` this many times, evenly over training."""
    max_keypoints: int = 1024
    """Keypoints per view per step (a random subset of larger views)."""
    model: D2SConfig = field(default_factory=D2SConfig)
    loss: D2SLossConfig = field(default_factory=D2SLossConfig)
    seed: int = 0


def collate(views: Sequence[KeypointView], max_keypoints: int, rng: random.Random, device) -> Dict[str, Tensor]:
    """Pad views to one keypoint count: descriptors, keypoints, labels, masks, poses, intrinsics."""
    chosen = []
    for v in views:
        idx = np.arange(len(v))
        if len(idx) > max_keypoints:
            idx = np.array(sorted(rng.sample(range(len(v)), max_keypoints)))
        chosen.append(idx)
    n = max(1, max(len(i) for i in chosen))
    b, d = len(views), views[0].descriptors.shape[1]
    desc = np.zeros((b, n, d), np.float32)
    kpts = np.zeros((b, n, 2), np.float32)
    labels = np.zeros((b, n, 3), np.float32)
    labelled = np.zeros((b, n), bool)
    mask = np.zeros((b, n), bool)
    for k, (v, idx) in enumerate(zip(views, chosen)):
        m = len(idx)
        desc[k, :m], kpts[k, :m], mask[k, :m] = v.descriptors[idx], v.keypoints[idx], True
        pts = v.points3d[idx]
        ok = np.isfinite(pts).all(axis=1)
        labels[k, :m][ok], labelled[k, :m] = pts[ok], ok
    w2c = np.stack([invert_rigid(v.c2w) for v in views]).astype(np.float32)
    K = np.stack([v.K for v in views]).astype(np.float32)
    arrays = dict(descriptors=desc, keypoints=kpts, labels=labels, labelled=labelled, mask=mask, w2c=w2c, K=K)
    return {k: torch.from_numpy(a).to(device) for k, a in arrays.items()}


def d2s_losses(
    net: D2SNet, batch: Dict[str, Tensor], progress: float, config: D2SLossConfig
) -> tuple[Dict[str, Tensor], float]:
    """The D2S losses of one batch and the mean coordinate error (metres) of its labelled keypoints."""
    coords, _, rel = net(batch["descriptors"], batch["mask"])
    losses = {
        "coordinate": coordinate_loss(coords, batch["labels"], batch["labelled"]),
        "uncertainty": uncertainty_loss(rel, batch["labelled"], batch["mask"]),
    }
    if progress >= config.reprojection_start:
        unlabelled = batch["mask"] & ~batch["labelled"]
        losses["reprojection"] = reprojection_loss(
            coords, batch["keypoints"], batch["w2c"], batch["K"], unlabelled, progress, config
        )
    return losses, coordinate_error(coords, batch["labels"], batch["labelled"])


def train_d2s(
    views: Sequence[KeypointView],
    config: D2STrainConfig,
    device: str | torch.device = "cpu",
    on_step: Optional[Callable[[int, Dict[str, float]], None]] = None,
) -> tuple[D2SNet, List[Dict[str, float]]]:
    """Train a D2S network on ``views``; returns it and the per-step losses."""
    if not views:
        raise ValueError("D2S training needs at least one keypoint view")
    labelled = np.concatenate([v.points3d[v.labelled] for v in views])
    if len(labelled) == 0:
        raise ValueError("D2S training views have no labelled keypoints (no depth or triangulated points)")
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    net = D2SNet(views[0].descriptors.shape[1], config.model).to(device)
    net.set_normalisation(labelled)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    decay_every = max(1, config.iterations // (config.num_lr_decays + 1))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, decay_every, gamma=config.lr_decay)
    history: List[Dict[str, float]] = []
    net.train()
    for step in range(config.iterations):
        batch = collate(rng.choices(list(views), k=config.batch_size), config.max_keypoints, rng, device)
        losses, error = d2s_losses(net, batch, step / max(1, config.iterations), config.loss)
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        scheduler.step()
        record = {k: float(v.detach()) for k, v in losses.items()}
        record |= {"total": float(total.detach()), "coordinate_error_m": error}
        history.append(record)
        if on_step is not None:
            on_step(step, record)
    net.eval()
    return net, history


def save_d2s(net: D2SNet, path: Path, extra: Optional[dict] = None) -> None:
    """Weights-only-safe checkpoint: state dict, descriptor width, architecture, extras."""
    cfg = net.config
    state = {
        "state_dict": net.state_dict(),
        "descriptor_dim": net.descriptor_dim,
        "model": {"num_layers": cfg.num_layers, "num_heads": cfg.num_heads, "mlp_dims": list(cfg.mlp_dims)},
        "extra": extra or {},
    }
    with atomic_path(Path(path)) as tmp:
        torch.save(state, tmp)


def load_d2s(path: Path, device: str | torch.device = "cpu") -> tuple[D2SNet, dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: D2S checkpoint not found (written by ns-nerfloc-train-d2s)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    m = state["model"]
    net = D2SNet(state["descriptor_dim"], D2SConfig(m["num_layers"], m["num_heads"], tuple(m["mlp_dims"])))
    net.load_state_dict(state["state_dict"])
    return net.to(device).eval(), state.get("extra", {})
