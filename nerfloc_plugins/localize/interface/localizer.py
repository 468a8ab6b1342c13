"""What a method supplies to the shared localization pipeline.

A :class:`Localizer` describes a query image and declares one :class:`LocalizerKind`:
it matches the query against map features seen from a pose (:class:`MapViewLocalizer`: render
them from a field, or look them up for a stored reference image), regresses scene coordinates
(:class:`SceneCoordinateLocalizer`) or regresses the pose (:class:`PoseRegressionLocalizer`).
Everything else - retrieval, matching-to-PnP, refinement, metrics, files - is the shared
pipeline in :mod:`nerfloc_plugins.localize.pipeline`.  A method makes its localizer known to
``ns-localize`` with a :class:`~nerfloc_plugins.localize.interface.specs.LocalizerSpec`.

Poses crossing this interface are **camera-to-world, OpenCV axes, dataset metric frame**;
map points are 3D points in the dataset frame; 2D points are pixels (centres at +0.5) at
the resolution of the intrinsics passed along with them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, ClassVar, List, Optional, Protocol, Tuple

import numpy as np
import torch
from torch import Tensor

from nerfloc_plugins.data.frames import Intrinsics, PosedFrame, load_frame_rgb
from nerfloc_plugins.localize.stages.refine import PhotometricConfig

if TYPE_CHECKING:
    from nerfloc_plugins.nerf.field_renderer import FieldRenderer


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


class LocalizerKind(str, Enum):
    """How a localizer turns a query into a pose; the shared pipeline runs one path per kind."""

    MATCHES_MAP_VIEWS = "matches-map-views"
    """prior -> map features at the prior's pose -> match -> PnP (-> refinement when the map
    renders at any pose): the classical baseline, CrossFire, NeRFMatch, NeuraLoc, plain NeRF maps."""
    REGRESSES_SCENE_COORDINATES = "regresses-scene-coordinates"
    """2D-3D matches predicted from the query alone -> PnP (D2S)."""
    REGRESSES_POSE = "regresses-pose"
    """the pose from the query alone (absolute pose regressors: PMNet)."""


class Localizer(ABC):
    """Method-specific part of localization (see module docstring).  Subclass one of
    :class:`MapViewLocalizer`, :class:`SceneCoordinateLocalizer`, :class:`PoseRegressionLocalizer`."""

    kind: ClassVar[LocalizerKind]
    name: str = "localizer"
    #: scene name used in reports and for per-scene thresholds (e.g. "KingsCollege")
    scene: str = "scene"
    #: how far (pixels, query resolution) a matched 2D position may be from the true one by
    #: construction; PnP's inlier threshold is never below it (0: keypoint-accurate)
    keypoint_precision_px: float = 0.0
    #: where the localizer's tensors live (query descriptions, pose priors)
    device: str | torch.device = "cpu"

    @abstractmethod
    def map_frames(self) -> List[PosedFrame]:
        """Reference (mapping) frames: retrieval database, pose priors, report trajectory."""

    @abstractmethod
    def query_frames(self, split: str) -> List[PosedFrame]:
        """Query frames with ground-truth poses."""

    @abstractmethod
    def describe_query(self, frame: PosedFrame) -> QueryDescription:
        """Features of a query image (its pose is not used)."""

    def map_size_bytes(self) -> int:
        """Size of everything the map needs at localization time."""
        return 0

    def describer(self) -> "Localizer":
        """The localizer whose :meth:`describe_query` this one's is (itself by default): cascade
        stages that share one describe each query once."""
        return self

    def map_camera(self) -> Optional[Intrinsics]:
        """The mapping images' camera (the first mapping frame's): the default of query images
        given without one; ``None`` for a map without frames."""
        frames = self.map_frames()
        return frames[0].intrinsics if frames else None

    def map_renderer(self) -> Optional["FieldRenderer"]:
        """The trained field this localizer's map is, when it has one (render-and-match
        refinement renders it); ``None`` otherwise."""
        return None


class MapViewLocalizer(Localizer):
    """Matches the query against map features seen from a pose (:data:`LocalizerKind.MATCHES_MAP_VIEWS`)."""

    kind = LocalizerKind.MATCHES_MAP_VIEWS
    #: True when ``map_view`` can produce features at any pose (iterative and photometric
    #: refinement, APR pose priors); False when it has them only at its mapping frames
    renders_at_any_pose: bool = False

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

    def retrieval_image(self, frame: PosedFrame, source: str) -> np.ndarray:
        """Database image for retrieval: the stored image (``source="images"``), or one the map
        renders at the frame's pose (``"nerf"``, localizers that render)."""
        if source != "images":
            raise ValueError(f"{self.name} retrieves against real images only (--retrieval.source images)")
        return load_frame_rgb(frame)

    def photometric_refiner(self, config: PhotometricConfig) -> Optional["PhotometricPoseRefiner"]:
        """The refiner optimising the pose photometrically through the map, or ``None`` when the
        map has no field to render through."""
        return None

    def add_rendered_view(self, frame: PosedFrame, rgb: np.ndarray, depth: np.ndarray) -> None:
        """Make ``map_view(frame.c2w, frame)`` answer for a view a field rendered (RGB in [0, 1],
        z-depth in metres) at a pose that is not a mapping frame.  Localizers that render at any
        pose need nothing; the others build the view's features from the rendering."""
        if not self.renders_at_any_pose:
            raise ValueError(f"{self.name} cannot use rendered views (--retrieval.synthesize)")


class SceneCoordinateLocalizer(Localizer):
    """Predicts 2D-3D matches from the query alone (:data:`LocalizerKind.REGRESSES_SCENE_COORDINATES`)."""

    kind = LocalizerKind.REGRESSES_SCENE_COORDINATES

    @abstractmethod
    def regress_correspondences(self, query: QueryDescription) -> Tuple[np.ndarray, np.ndarray]:
        """``(K, 2)`` query pixels and their ``(K, 3)`` dataset-frame points."""

    def match_evidence(
        self, query: QueryDescription, points2d: np.ndarray, points3d: np.ndarray, inliers: np.ndarray
    ) -> Optional[Tuple[MapView, np.ndarray, np.ndarray]]:
        """For the report's match figure: a map view and ``(query keypoint, view keypoint)``
        matches with their inlier flags, from the correspondences PnP used; ``None`` when the
        localizer has no map image to show (regressors)."""
        return None


class PoseRegressionLocalizer(Localizer):
    """Predicts the pose from the query alone (:data:`LocalizerKind.REGRESSES_POSE`)."""

    kind = LocalizerKind.REGRESSES_POSE

    @abstractmethod
    def regress_pose(self, query: QueryDescription) -> np.ndarray:
        """Dataset-frame OpenCV c2w ``(4, 4)``."""


class PhotometricPoseRefiner(Protocol):
    """What :meth:`MapViewLocalizer.photometric_refiner` returns."""

    def refine(self, c2w: np.ndarray, query: QueryDescription) -> np.ndarray:
        """Refined dataset-frame OpenCV c2w from ``c2w``."""


class PosePrior(Protocol):
    """A pose prior for another localizer's render -> match -> PnP (``ns-localize --pose-prior``):
    e.g. an absolute pose regressor."""

    name: str
    """Short name for reports (``"<localizer> + <name> prior"``)."""

    def prior_frame(self, query: PosedFrame) -> PosedFrame:
        """A reference frame at the prior pose of ``query`` (dataset frame, the query's camera)."""


class DatasetFramesMixin:
    """Frames of a localizer without a field, from a nerfloc dataparser (``self.parser``, set by
    the subclass): mapping frames = its training split, queries = the requested split."""

    parser: "object"

    def map_frames(self) -> List[PosedFrame]:
        if not hasattr(self, "_map_frames"):
            self._map_frames = self.parser.frames("train")
        return self._map_frames

    def query_frames(self, split: str) -> List[PosedFrame]:
        return self.parser.frames("train" if split == "train" else "test")
