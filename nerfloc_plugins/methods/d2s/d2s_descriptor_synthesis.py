"""Descriptor synthesis (Sec. III-C/D): label real keypoints, render novel views, match them to
their reference images, keep good views, and let matched keypoints inherit 3D labels.

* Real (reference) views: keypoints + descriptors of each training image; the 3D label of a
  keypoint is its depth-lifted point (dataset depth maps) or, without depth, a point
  triangulated with ``pycolmap.estimate_triangulation`` from matches with its nearest training
  images at their known poses.
* Synthetic views: rendered at the synthesized poses; matched to both reference images of
  their pose (``ref_a``, ``ref_b``).  A view is kept when at least ``eta`` of its keypoints
  match (eta is given for 640x480 images and scaled with the pixel count); only matched
  keypoints are kept (the paper collects "the matched keypoints and descriptors"), each
  inheriting the 3D label of the reference keypoint it matched (the closer reference first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.features.feature_matcher import LocalFeatureMatcher
from nerfloc_plugins.features.local_features import LocalFeatures
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.geometry.projection import backproject_with_depth_map
from nerfloc_plugins.methods.d2s.d2s_keypoint_views import KeypointView
from nerfloc_plugins.methods.d2s.d2s_pose_synthesis import SynthesizedPose, nearest_pose_pairs

ETA_REFERENCE_PIXELS = 640 * 480
"""``eta`` (min. matches) is stated for 640x480 images, the resolution of the paper's datasets."""


def scaled_min_matches(eta: int, width: int, height: int) -> int:
    """``eta`` for a ``width x height`` image: scaled with the pixel count, at least 1."""
    return max(1, int(round(eta * width * height / ETA_REFERENCE_PIXELS)))


def lift_with_depth(features: LocalFeatures, depth: np.ndarray, frame: PosedFrame) -> np.ndarray:
    """``(N, 3)`` dataset-frame points of keypoints from a z-depth map (metres; NaN: no depth)."""
    return backproject_with_depth_map(features.keypoints, depth, frame.intrinsics.matrix(), frame.c2w)


def real_view(frame: PosedFrame, features: LocalFeatures, points3d: np.ndarray) -> KeypointView:
    return KeypointView(
        name=frame.name,
        keypoints=features.keypoints.astype(np.float32),
        descriptors=features.descriptors.astype(np.float32),
        points3d=points3d.astype(np.float32),
        c2w=frame.c2w,
        K=frame.intrinsics.matrix(),
    )


def triangulate_labels(
    frames: Sequence[PosedFrame],
    features: Sequence[LocalFeatures],
    matcher: LocalFeatureMatcher,
    neighbours: int = 3,
    max_error_px: float = 4.0,
    min_angle_deg: float = 1.0,
) -> List[np.ndarray]:
    """3D labels of every keypoint by two-view triangulation with the nearest training images
    (known poses; pycolmap LO-RANSAC triangulation; NaN where no good point)."""
    import pycolmap

    labels = [np.full((len(f), 3), np.nan) for f in features]
    centres = np.array([f.c2w[:3, 3] for f in frames])
    cameras = [
        pycolmap.Camera(
            model="PINHOLE", width=f.intrinsics.width, height=f.intrinsics.height,
            params=[f.intrinsics.fx, f.intrinsics.fy, f.intrinsics.cx, f.intrinsics.cy],
        )
        for f in frames
    ]  # fmt: skip
    poses = [pycolmap.Rigid3d(invert_rigid(f.c2w)[:3]) for f in frames]
    options = pycolmap.EstimateTriangulationOptions()
    options.min_tri_angle = np.radians(min_angle_deg)
    options.residual_type = pycolmap.TriangulationResidualType.REPROJECTION_ERROR
    options.ransac.max_error = max_error_px
    for a, b in nearest_pose_pairs(centres, neighbours):
        fa, fb = frames[a], frames[b]
        size_a, size_b = (fa.intrinsics.width, fa.intrinsics.height), (fb.intrinsics.width, fb.intrinsics.height)
        for i, j in matcher.match(features[a], size_a, features[b], size_b):
            if np.isfinite(labels[a][i]).all() and np.isfinite(labels[b][j]).all():
                continue
            obs = np.stack([features[a].keypoints[i], features[b].keypoints[j]]).astype(np.float64)
            result = pycolmap.estimate_triangulation(obs, [poses[a], poses[b]], [cameras[a], cameras[b]], options)
            if result is None or not np.all(result["inliers"]):
                continue
            xyz = np.asarray(result["xyz"], dtype=np.float64)
            for view, k in ((a, i), (b, j)):
                if not np.isfinite(labels[view][k]).all():
                    labels[view][k] = xyz
    return labels


def inherit_labels(
    num_keypoints: int, reference: KeypointView, matches: np.ndarray, labels: Optional[np.ndarray] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """Labels of a synthetic view's keypoints from ``matches`` ``(K, 2)`` = (reference keypoint,
    synthetic keypoint): each matched synthetic keypoint takes its reference keypoint's 3D point
    unless ``labels`` (``(N, 3)``, NaN = none yet) already has one.  Returns the labels and the
    ``(N,)`` mask of matched synthetic keypoints."""
    labels = np.full((num_keypoints, 3), np.nan) if labels is None else labels.copy()
    matched = np.zeros(num_keypoints, dtype=bool)
    if len(matches):
        ref_idx, syn_idx = matches[:, 0], matches[:, 1]
        matched[syn_idx] = True
        free = ~np.isfinite(labels[syn_idx]).all(axis=1)
        labels[syn_idx[free]] = reference.points3d[ref_idx[free]]
    return labels, matched


@dataclass
class SyntheticViewResult:
    view: Optional[KeypointView]
    """The kept view (matched keypoints only) or None when it had fewer than ``min_matches``."""
    num_matched: int


def label_synthetic_view(
    name: str,
    image: np.ndarray,
    pose: SynthesizedPose,
    frame: PosedFrame,
    references: Sequence[KeypointView],
    matcher: LocalFeatureMatcher,
    min_matches: int,
) -> SyntheticViewResult:
    """Detect on a rendered ``image`` at ``pose`` (intrinsics of ``frame``), match to its two
    reference views, filter by ``min_matches`` and inherit labels."""
    features = matcher.extract(image)
    size = (frame.intrinsics.width, frame.intrinsics.height)
    order = (pose.ref_a, pose.ref_b) if pose.fraction <= 0.5 else (pose.ref_b, pose.ref_a)
    labels, matched = None, np.zeros(len(features), dtype=bool)
    for ref in order:
        reference = references[ref]
        ref_features = LocalFeatures(reference.keypoints.astype(np.float64), reference.descriptors)
        matches = matcher.match(ref_features, size, features, size)
        labels, m = inherit_labels(len(features), reference, matches, labels)
        matched |= m
    num = int(matched.sum())
    if num < min_matches:
        return SyntheticViewResult(None, num)
    view = KeypointView(
        name=name,
        keypoints=features.keypoints[matched].astype(np.float32),
        descriptors=features.descriptors[matched].astype(np.float32),
        points3d=labels[matched].astype(np.float32),
        c2w=pose.c2w,
        K=frame.intrinsics.matrix(),
        synthetic=True,
    )
    return SyntheticViewResult(view, num)
