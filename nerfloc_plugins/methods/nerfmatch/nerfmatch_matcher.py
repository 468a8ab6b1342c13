"""NeRFMatch matching heads (Sec. 4): NeRFMatch-Mini and the full coarse-to-fine matcher.

Shapes (batched over ``B`` query/reference pairs):
* image coarse features ``(B, N_m, D_c)`` on the ``H/8 x W/8`` grid (row-major, cell ``i`` =
  ``r * W/8 + c`` centred on pixel ``(8c + 4, 8r + 4)``), fine map ``(B, D_f, H/2, W/2)``;
* NeRF features ``(B, N_s, C)`` of the rendered points, their Nerfstudio-frame coordinates
  ``(B, N_s, 3)`` (the space the NeRF's own encoding sees) and a validity mask ``(B, N_s)``.

Both variants project the NeRF features to ``D_c`` (a linear layer) and score with cosine
similarity followed by the dual softmax with temperature; matches are mutual maxima above a
probability threshold.  The full matcher adds 2D sine positional encoding of the image cells,
self-attention blocks shared by image and point tokens, NeRF positional encoding of the 3D
points concatenated before the cross-attention, and fine matching: each coarse match's 5x5
window of the fine map (centred on fine pixel ``(4r + 2, 4c + 2)``, i.e. full-resolution pixel
``(8c + 5, 8r + 5)``) gets a self-attention block, the point's feature is projected to ``D_f``,
and the expectation of the softmax heatmap gives the sub-cell position; its total variance
weights the fine loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Literal, Optional, Tuple

import torch
from torch import Tensor, nn

from nerfloc_plugins.features.matching import dual_softmax

WINDOW = 5
"""Fine window side on the 1/2 map (paper: w = 5)."""
FINE_HALF_EXTENT_PX = 4.0
"""Full-resolution pixels from the window centre to its outermost fine-pixel centre (2 fine px)."""


@dataclass
class MatcherConfig:
    variant: Literal["mini", "full"] = "full"
    coarse_dim: int = 256
    fine_dim: int = 128
    temperature: float = 0.1
    """Dual-softmax temperature on cosine similarities."""
    match_threshold: float = 0.2
    """Minimum dual-softmax probability of a match at inference."""
    num_self_layers: int = 4
    num_cross_layers: int = 2
    num_heads: int = 8
    point_encoding_frequencies: int = 6
    """NeRF positional encoding of the 3D points (full matcher): sin/cos at 2^0..2^(L-1)."""
    nerf_projection_layers: int = 2
    """Layers of the projection aligning NeRF features to D_c (1 = linear; 2 = linear-ReLU-linear,
    needed for Nerfacto's 32-d hash-grid features, see docs/nerfmatch.md)."""


def sine_encoding_2d(dim: int, height: int, width: int, device=None) -> Tensor:
    """DETR/LoFTR-style 2D sine positional encoding ``(height * width, dim)``, row-major."""
    if dim % 4:
        raise ValueError(f"2D positional encoding needs a dimension divisible by 4, got {dim}")
    y, x = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    freqs = torch.exp(torch.arange(0, dim // 2, 2, device=device).float() * (-math.log(10000.0) / (dim // 2)))
    px, py = x.reshape(-1, 1) * freqs, y.reshape(-1, 1) * freqs
    return torch.cat([px.sin(), px.cos(), py.sin(), py.cos()], dim=-1)


def nerf_positional_encoding(points: Tensor, num_frequencies: int) -> Tensor:
    """``[x, sin(2^k pi x), cos(2^k pi x)]_k`` as in NeRF; ``(..., 3) -> (..., 3 + 6L)``."""
    scales = (2.0 ** torch.arange(num_frequencies, device=points.device, dtype=points.dtype)) * math.pi
    angles = points[..., None, :] * scales[:, None]
    return torch.cat([points, angles.sin().flatten(-2), angles.cos().flatten(-2)], dim=-1)


def _encoder_layer(dim: int, heads: int) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)


class CrossBlock(nn.Module):
    """Pre-norm cross-attention + feed-forward: ``x`` attends to ``context``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor, context: Tensor, context_padding: Optional[Tensor] = None) -> Tensor:
        kv = self.norm_kv(context)
        x = x + self.attn(self.norm_q(x), kv, kv, key_padding_mask=context_padding, need_weights=False)[0]
        return x + self.ff(self.norm_ff(x))


class NerfMatcher(nn.Module):
    """NeRFMatch-Mini (``variant="mini"``) or NeRFMatch (``"full"``) on one NeRF feature width."""

    def __init__(self, config: MatcherConfig, nerf_feature_dim: int) -> None:
        super().__init__()
        self.config = config
        dc, df = config.coarse_dim, config.fine_dim
        layers: list = [nn.Linear(nerf_feature_dim, dc)]
        for _ in range(config.nerf_projection_layers - 1):
            layers += [nn.ReLU(inplace=True), nn.Linear(dc, dc)]
        self.nerf_proj = nn.Sequential(*layers)
        if config.variant == "full":
            self.self_layers = nn.ModuleList(
                _encoder_layer(dc, config.num_heads) for _ in range(config.num_self_layers)
            )
            pe_dim = 3 + 6 * config.point_encoding_frequencies
            self.point_merge = nn.Linear(dc + pe_dim, dc)
            self.cross_img = nn.ModuleList(CrossBlock(dc, config.num_heads) for _ in range(config.num_cross_layers))
            self.cross_pts = nn.ModuleList(CrossBlock(dc, config.num_heads) for _ in range(config.num_cross_layers))
            self.fine_self = _encoder_layer(df, max(1, config.num_heads // 2))
            self.fine_point = nn.Linear(dc, df)

    # ------------------------------------------------------------------ coarse
    def coarse(
        self, image_coarse: Tensor, grid_hw: Tuple[int, int], nerf_features: Tensor, points_ns: Tensor, valid: Tensor
    ) -> Dict[str, Tensor]:
        """Dual-softmax scores ``(B, N_m, N_s)`` (invalid points score 0) and the matched features."""
        img = image_coarse
        pts = self.nerf_proj(nerf_features)
        padding = ~valid
        if self.config.variant == "full":
            img = img + sine_encoding_2d(img.shape[-1], grid_hw[0], grid_hw[1], img.device)[None]
            for layer in self.self_layers:  # shared weights for both domains
                img = layer(img)
                pts = layer(pts, src_key_padding_mask=padding)
            pe = nerf_positional_encoding(points_ns, self.config.point_encoding_frequencies)
            pts = self.point_merge(torch.cat([pts, pe], dim=-1))
            for block_i, block_p in zip(self.cross_img, self.cross_pts):
                img, pts = block_i(img, pts, padding), block_p(pts, img)
        sim = torch.einsum("bnd,bmd->bnm", nn.functional.normalize(img, dim=-1), nn.functional.normalize(pts, dim=-1))
        sim = sim.masked_fill(padding[:, None, :], -1e4 * self.config.temperature)
        scores = dual_softmax(sim, self.config.temperature) * valid[:, None, :]
        return {"scores": scores, "image_features": img, "point_features": pts}

    # -------------------------------------------------------------------- fine
    def fine(
        self, fine_map: Tensor, point_features: Tensor, batch: Tensor, cells: Tensor, points: Tensor, grid_w: int
    ) -> Tuple[Tensor, Tensor]:
        """Sub-cell positions of coarse matches ``(batch, cells, points)`` (each ``(K,)``).

        Returns the expected offset ``(K, 2)`` (x, y) from the window centre in full-resolution
        pixels and the heatmap's total variance ``(K,)`` in the same normalised units as the
        offsets divided by ``FINE_HALF_EXTENT_PX`` (i.e. window coordinates in [-1, 1]).
        """
        if self.config.variant != "full":
            raise RuntimeError("NeRFMatch-Mini has no fine matching")
        k = batch.shape[0]
        df = fine_map.shape[1]
        if k == 0:
            return fine_map.new_zeros((0, 2)), fine_map.new_zeros((0,))
        padded = nn.functional.pad(fine_map, (0, 1, 0, 1))
        windows = nn.functional.unfold(padded, WINDOW, stride=4)  # (B, df * 25, N_m)
        windows = windows.view(fine_map.shape[0], df, WINDOW * WINDOW, -1)
        win = windows[batch, :, :, cells].permute(0, 2, 1)  # (K, 25, df)
        win = self.fine_self(win)
        query = self.fine_point(point_features[batch, points])  # (K, df)
        heat = torch.softmax(torch.einsum("kd,kwd->kw", query, win) / math.sqrt(df), dim=-1)
        g = torch.linspace(-1.0, 1.0, WINDOW, device=fine_map.device)
        gy, gx = torch.meshgrid(g, g, indexing="ij")
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # (25, 2) (x, y)
        mean = heat @ grid
        var = (heat @ grid.square() - mean.square()).sum(dim=-1)
        return mean * FINE_HALF_EXTENT_PX, var


def cell_centre(cells: Tensor, grid_w: int) -> Tensor:
    """Full-resolution pixel ``(8c + 4, 8r + 4)`` (x, y) of each coarse cell index ``r * grid_w + c``."""
    r, c = cells // grid_w, cells % grid_w
    return torch.stack([8.0 * c + 4.0, 8.0 * r + 4.0], dim=-1)


def window_centres(cells: Tensor, grid_w: int) -> Tensor:
    """Full-resolution pixel ``(8c + 5, 8r + 5)`` of the fine window centre of each coarse cell index."""
    return cell_centre(cells, grid_w) + 1.0


def cell_centres(height: int, width: int) -> Tensor:
    """``(H/8 * W/8, 2)`` centres of all coarse cells of an image, row-major."""
    return cell_centre(torch.arange((height // 8) * (width // 8)), width // 8)
