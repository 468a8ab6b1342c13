"""NeRFMatch model: image encoder + NeRFMatch-Mini or full matcher, with its losses.

A batch (see ``methods/nerfmatch/nerfmatch_pipeline.py``) holds ``B`` pairs of a query image
``(B, 3, H, W)`` and the points/features rendered from the frozen NeRF at a reference pose:
``features (B, N_s, C)``, ``points_ns (B, N_s, 3)``, ``valid (B, N_s)``, with ground truth
``gt_cells (B, N_s)`` (-1: no match) and ``gt_pixels (B, N_s, 2)`` (full-resolution pixels).
Mini is trained with the coarse loss only, the full matcher with coarse + fine (Sec. 4.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple, Type

import torch
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn

from nerfloc_plugins.features.matching import mutual_argmax
from nerfloc_plugins.methods.nerfmatch import nerfmatch_losses as losses
from nerfloc_plugins.methods.nerfmatch.nerfmatch_encoder import ImageEncoder, ImageEncoderConfig
from nerfloc_plugins.methods.nerfmatch.nerfmatch_matcher import (
    FINE_HALF_EXTENT_PX,
    MatcherConfig,
    NerfMatcher,
    cell_centre,
    window_centres,
)


@dataclass
class NerfMatchModelConfig(InstantiateConfig):
    _target: Type = field(default_factory=lambda: NerfMatchModel)
    encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    coarse_loss: losses.CoarseLoss = "log"
    """``log``: eq. 3; ``focal``: the authors' code."""
    fine_loss_mult: float = 1.0


class NerfMatchModel(nn.Module):
    def __init__(self, config: NerfMatchModelConfig, nerf_feature_dim: int) -> None:
        super().__init__()
        if config.encoder.coarse_dim != config.matcher.coarse_dim or config.encoder.fine_dim != config.matcher.fine_dim:
            raise ValueError("NeRFMatch: encoder and matcher must share coarse_dim and fine_dim")
        self.config = config
        self.nerf_feature_dim = nerf_feature_dim
        self.encoder = ImageEncoder(config.encoder)
        self.matcher = NerfMatcher(config.matcher, nerf_feature_dim)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def is_full(self) -> bool:
        return self.config.matcher.variant == "full"

    def encode(self, images: Tensor) -> Tuple[Tensor, Tensor, Tuple[int, int]]:
        """Coarse tokens ``(B, N_m, D_c)``, fine map ``(B, D_f, H/2, W/2)``, coarse grid ``(h, w)``."""
        coarse, fine = self.encoder(images)
        h, w = coarse.shape[-2:]
        return coarse.flatten(2).transpose(1, 2), fine, (h, w)

    def forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        tokens, fine, grid = self.encode(batch["images"])
        out = self.matcher.coarse(tokens, grid, batch["features"], batch["points_ns"], batch["valid"])
        out["fine_map"], out["grid"] = fine, torch.tensor(grid)
        return out

    def get_loss_dict(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        gt = batch["gt_cells"]
        loss = {"coarse_loss": losses.coarse_loss(outputs["scores"], gt, self.config.coarse_loss)}
        if self.is_full and self.config.fine_loss_mult > 0:
            b, j = torch.nonzero(gt >= 0, as_tuple=True)
            cells = gt[b, j]
            grid_w = int(outputs["grid"][1])
            target = batch["gt_pixels"][b, j] - window_centres(cells, grid_w).to(gt.device)
            inside = (target.abs() <= FINE_HALF_EXTENT_PX).all(dim=-1)  # fine targets outside the window: skip
            offset, var = self.matcher.fine(
                outputs["fine_map"], outputs["point_features"], b[inside], cells[inside], j[inside], grid_w
            )
            loss["fine_loss"] = self.config.fine_loss_mult * losses.fine_loss(offset, target[inside], var)
        return loss

    @torch.no_grad()
    def get_metrics_dict(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Coarse match precision/recall against the ground-truth cells."""
        matches, _ = mutual_argmax(outputs["scores"], self.config.matcher.match_threshold)
        gt = batch["gt_cells"]
        correct = gt[matches[:, 0], matches[:, 2]] == matches[:, 1]
        num_gt = (gt >= 0).sum().clamp(min=1)
        return {
            "coarse_precision": correct.float().mean() if len(correct) else torch.zeros(()),
            "coarse_recall": correct.sum() / num_gt,
            "num_matches": torch.tensor(float(len(matches)) / gt.shape[0]),
        }

    @torch.no_grad()
    def match(
        self, tokens: Tensor, fine: Tensor, grid: Tuple[int, int], features: Tensor, points_ns: Tensor, valid: Tensor
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """One query vs one rendered view: ``(K, 2)`` (cell, point) matches, their query pixels
        ``(K, 2)`` (cell centres for Mini, fine positions for the full matcher), and scores."""
        out = self.matcher.coarse(tokens, grid, features[None], points_ns[None], valid[None])
        idx, scores = mutual_argmax(out["scores"], self.config.matcher.match_threshold)
        cells, points = idx[:, 1], idx[:, 2]
        if self.is_full:
            offset, _ = self.matcher.fine(fine, out["point_features"], idx[:, 0], cells, points, grid[1])
            pixels = window_centres(cells, grid[1]).to(tokens.device) + offset
        else:
            pixels = cell_centre(cells, grid[1]).to(tokens.device)
        return torch.stack([cells, points], dim=1), pixels, scores
