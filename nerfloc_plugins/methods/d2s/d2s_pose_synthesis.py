"""Camera pose synthesis between nearby training poses (descriptor synthesis, Sec. III-B).

For every training pose, its ``k`` nearest training poses by **camera centre** (eq. 4-5) form
pairs; each unordered pair is used once.  Between the two poses of a pair, ``n`` poses are
sampled (eq. 6 and 8): the camera centre uniformly on the open segment,
``c = c_a + s (c_b - c_a)`` with ``s = i / (n + 1)``, ``i = 1..n``, and the rotation by
quaternion slerp with the same ``s``.  Poses that coincide (to ``dedup_tolerance`` metres and
degrees) are kept once.

Conventions: poses are dataset-frame **c2w, OpenCV axes**; quaternions ``(w, x, y, z)`` (see
``geometry/poses.py``).  Interpolating the camera centre (c2w translation) rather than the
w2c translation keeps every synthesized camera on the segment between the two cameras.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from nerfloc_plugins.geometry.poses import qvec_to_rotmat, rotmat_to_qvec


@dataclass
class PoseSynthesisConfig:
    top_k: int = 3
    """Nearest training poses (by camera centre) paired with each training pose."""
    samples_per_pair: int = 40
    """``N`` of eq. 6: poses sampled strictly between the two poses of a pair."""
    dedup_tolerance: float = 1e-3
    """Poses closer than this (metres and degrees) are the same pose."""


@dataclass
class SynthesizedPose:
    c2w: np.ndarray
    """4x4 dataset-frame c2w (OpenCV axes)."""
    ref_a: int
    """Index of the first reference (training) pose."""
    ref_b: int
    fraction: float
    """``s`` in (0, 1): 0 would be ``ref_a``, 1 ``ref_b``."""


def slerp(q0: np.ndarray, q1: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (eq. 8) along the shorter arc.

    ``q0``, ``q1``: ``(4,)``; ``fraction``: ``(M,)`` in [0, 1] -> ``(M, 4)`` unit quaternions.
    Nearly identical rotations fall back to normalised linear interpolation.
    """
    q0 = np.asarray(q0, dtype=np.float64) / np.linalg.norm(q0)
    q1 = np.asarray(q1, dtype=np.float64) / np.linalg.norm(q1)
    dot = float(np.dot(q0, q1))
    if dot < 0.0:  # q and -q are the same rotation: take the shorter way round
        q1, dot = -q1, -dot
    s = np.asarray(fraction, dtype=np.float64)[:, None]
    if dot > 1.0 - 1e-9:
        out = (1.0 - s) * q0 + s * q1
    else:
        omega = np.arccos(np.clip(dot, -1.0, 1.0))
        out = (np.sin((1.0 - s) * omega) * q0 + np.sin(s * omega) * q1) / np.sin(omega)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def nearest_pose_pairs(centres: np.ndarray, top_k: int) -> List[Tuple[int, int]]:
    """Unordered pairs ``(i, j)``, ``i < j``: ``j`` among the ``top_k`` nearest centres of ``i``
    or the other way round (eq. 4-5; a pose is never its own neighbour)."""
    centres = np.asarray(centres, dtype=np.float64)
    n = len(centres)
    if n < 2:
        return []
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    k = min(top_k, n - 1)
    neighbours = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return sorted({(min(i, int(j)), max(i, int(j))) for i in range(n) for j in neighbours[i]})


def interpolate_poses(c2w_a: np.ndarray, c2w_b: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """``(M, 4, 4)`` c2w poses: centres on the segment a->b, rotations slerped (eq. 6, 8)."""
    q = slerp(rotmat_to_qvec(c2w_a[:3, :3]), rotmat_to_qvec(c2w_b[:3, :3]), fractions)
    out = np.tile(np.eye(4), (len(fractions), 1, 1))
    out[:, :3, :3] = qvec_to_rotmat(q)
    out[:, :3, 3] = c2w_a[:3, 3] + np.asarray(fractions)[:, None] * (c2w_b[:3, 3] - c2w_a[:3, 3])
    return out


def synthesize_poses(train_c2w: Sequence[np.ndarray], config: PoseSynthesisConfig) -> List[SynthesizedPose]:
    """Novel poses between every pair of nearby training poses, deduplicated."""
    poses = np.asarray(train_c2w, dtype=np.float64)
    n = config.samples_per_pair
    fractions = np.arange(1, n + 1) / (n + 1)
    out: List[SynthesizedPose] = []
    kept_c2w: List[np.ndarray] = []
    for a, b in nearest_pose_pairs(poses[:, :3, 3], config.top_k):
        for c2w, s in zip(interpolate_poses(poses[a], poses[b], fractions), fractions):
            if _is_duplicate(c2w, kept_c2w, config.dedup_tolerance):
                continue
            kept_c2w.append(c2w)
            out.append(SynthesizedPose(c2w=c2w, ref_a=a, ref_b=b, fraction=float(s)))
    return out


def _is_duplicate(c2w: np.ndarray, kept: List[np.ndarray], tolerance: float) -> bool:
    if not kept:
        return False
    stack = np.asarray(kept)
    close = np.linalg.norm(stack[:, :3, 3] - c2w[:3, 3], axis=1) < tolerance
    if not close.any():
        return False
    rel = np.einsum("nji,jk->nik", stack[close, :3, :3], c2w[:3, :3])
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return bool((np.degrees(np.arccos(cos)) < tolerance).any())
