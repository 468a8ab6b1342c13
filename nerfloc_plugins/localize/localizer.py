"""What a method supplies to the shared localization pipeline.

A :class:`Localizer` knows how to describe a query image and how to get map features at a
camera pose (render them from a field, or look them up for a stored reference image).
Everything else - retrieval, matching-to-PnP, refinement, metrics, files - is the shared
pipeline in :mod:`nerfloc_plugins.localize.pipeline`.

Poses crossing this interface are **camera-to-world, OpenCV axes, dataset metric frame**;
map points are 3D points in the dataset frame; 2D points are pixels (centres at +0.5) at
the resolution of the intrinsics passed along with them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
from torch import Tensor

from nerfloc_plugins.data.frames import Intrinsics, PosedFrame
from nerfloc_plugins.localize.refine import PhotometricConfig


@dataclass
class QueryDescription:
    """Query features at the resolution of ``intrinsics``."""

    keypoints: np.ndarray
    """``(N, 2)`` pixels."""
    descriptors: Tensor
    """``(N, D)`` on the localizer's device."""
    intrinsics: Intrinsics
    image: Optional[np.ndarray] = None
    """``(H, W, 3)`` float image at this resolution (for visualisation and refinement)."""
    context: Optional[Tensor] = None
    """``(N, C)`` per-keypoint context features (methods that match with two feature kinds)."""


@dataclass
class MapView:
    """Map features seen from one camera pose."""

    c2w: np.ndarray
    keypoints: np.ndarray
    """``(M, 2)`` pixels in this view."""
    descriptors: Tensor
    """``(M, D)``."""
    points3d: np.ndarray
    """``(M, 3)`` dataset-frame points of the keypoints."""
    intrinsics: Intrinsics
    image: Optional[np.ndarray] = None
    context: Optional[Tensor] = None
    """``(M, C)`` per-point context features (see :class:`QueryDescription`)."""


class Localizer(ABC):
    """Method-specific part of localization (see module docstring)."""

    name: str = "localizer"
    #: scene name used in reports and for per-scene thresholds (e.g. "KingsCollege")
    scene: str = "scene"
    #: True when ``map_view`` can produce features at any pose (iterative refinement works)
    renders_at_any_pose: bool = False
    #: False for scene-coordinate regressors: 2D-3D matches come from the query alone
    #: (:meth:`regress_correspondences`), with no retrieval, rendering or matching
    needs_prior: bool = True
    #: True for absolute pose regressors: the pose comes from :meth:`regress_pose` alone
    regresses_pose: bool = False
    #: how far (pixels, query resolution) a matched 2D position may be from the true one by
    #: construction; PnP's inlier threshold is never below it (0: keypoint-accurate)
    keypoint_precision_px: float = 0.0

    @abstractmethod
    def map_frames(self) -> List[PosedFrame]:
        """Reference (mapping) frames: retrieval database and pose priors."""

    @abstractmethod
    def query_frames(self, split: str) -> List[PosedFrame]:
        """Query frames with ground-truth poses."""

    @abstractmethod
    def describe_query(self, frame: PosedFrame) -> QueryDescription:
        """Features of a query image (its pose is not used)."""

    @abstractmethod
    def map_view(self, c2w: np.ndarray, reference: Optional[PosedFrame] = None) -> MapView:
        """Map features seen from ``c2w``; ``reference`` is the retrieved frame when known."""

    @abstractmethod
    def match(self, query: QueryDescription, view: MapView) -> np.ndarray:
        """``(K, 2)`` index pairs ``(query keypoint, view keypoint)``."""

    def correspondences(self, query: QueryDescription, view: MapView) -> Tuple[np.ndarray, np.ndarray]:
        """``(K, 2)`` matches as in :meth:`match` and the ``(K, 2)`` query pixels of each match.

        The default takes the matched query keypoints; localizers that refine positions below
        their keypoint grid (e.g. NeRFMatch's fine matching) return refined pixels.
        """
        m = self.match(query, view)
        return m, query.keypoints[m[:, 0]]

    def regress_correspondences(self, query: QueryDescription) -> Tuple[np.ndarray, np.ndarray]:
        """``(K, 2)`` query pixels and their ``(K, 3)`` dataset-frame points, predicted from the
        query alone (localizers with ``needs_prior = False``)."""
        raise NotImplementedError(f"{self.name} matches against map views; it does not regress coordinates")

    def regress_pose(self, query: QueryDescription) -> np.ndarray:
        """Dataset-frame OpenCV c2w ``(4, 4)`` predicted from the query alone (``regresses_pose``)."""
        raise NotImplementedError(f"{self.name} does not regress poses")

    def retrieval_image(self, frame: PosedFrame, source: str) -> np.ndarray:
        """Database image for retrieval: the stored image, or one rendered at the frame's pose."""
        raise NotImplementedError(f"{self.name} has no retrieval images from '{source}'")

    def photometric_refiner(self, config: PhotometricConfig):
        """An object with ``refine(c2w, query) -> c2w`` (dataset frame) optimising the pose
        photometrically through the frozen field, or ``None`` when there is no field."""
        return None

    def map_size_bytes(self) -> int:
        """Size of everything the map needs at localization time."""
        return 0


class DatasetFramesLocalizer(Localizer):
    """A localizer without a field whose frames come from a nerfloc dataparser (``self.parser``,
    set by the subclass): mapping frames = its training split, queries = the requested split."""

    parser: "object"

    def map_frames(self) -> List[PosedFrame]:
        if not hasattr(self, "_map_frames"):
            self._map_frames = self.parser.frames("train")
        return self._map_frames

    def query_frames(self, split: str) -> List[PosedFrame]:
        return self.parser.frames("train" if split == "train" else "test")
