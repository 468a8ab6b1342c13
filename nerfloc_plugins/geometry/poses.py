"""The one place where camera pose conventions are converted.

Conventions used across nerfloc (state them once, convert here, nowhere else):

* **c2w** ("camera-to-world") maps camera coordinates to world coordinates:
  ``x_world = R_c2w @ x_cam + t_c2w``; ``t_c2w`` is the camera centre in the world.
* **w2c** ("world-to-camera") is its inverse; COLMAP/hloc poses (``qw qx qy qz tx ty tz``)
  and Cambridge Landmarks quaternions are w2c.
* **OpenCV axes**: camera x right, y down, z forward (datasets: 7-Scenes, Cambridge,
  12-Scenes, Replica, COLMAP).  **OpenGL axes** (Nerfstudio cameras): x right, y up,
  z backward.  Switching between them negates the camera's y and z axes, i.e. the 2nd and
  3rd columns of a c2w rotation; the operation is its own inverse.
* Quaternions are ``(w, x, y, z)`` (Hamilton, scalar first), as in COLMAP and hloc.
* **Dataset frame** = the dataset's own metric world frame (metres).  **Nerfstudio frame** =
  the normalised frame the field is trained in: ``c2w_ns = scale * (T @ c2w_gl)`` on the
  translation, with ``T`` the 3x4 ``dataparser_transform`` and ``scale`` the
  ``dataparser_scale`` that Nerfstudio saves to ``dataparser_transforms.json``.

Arrays are float64 numpy unless a function says otherwise; ``*`` batch dimensions are
supported everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

_OPENCV_OPENGL_FLIP = np.diag([1.0, -1.0, -1.0])


def to_homogeneous(pose: np.ndarray) -> np.ndarray:
    """Pad ``(*, 3, 4)`` poses to ``(*, 4, 4)``; ``(*, 4, 4)`` poses pass through."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape[-2:] == (4, 4):
        return pose.copy()
    if pose.shape[-2:] != (3, 4):
        raise ValueError(f"expected poses of shape (*, 3, 4) or (*, 4, 4), got {pose.shape}")
    bottom = np.broadcast_to(np.array([0.0, 0.0, 0.0, 1.0]), pose.shape[:-2] + (1, 4))
    return np.concatenate([pose, bottom], axis=-2)


def invert_rigid(pose: np.ndarray) -> np.ndarray:
    """Invert rigid ``(*, 3|4, 4)`` transforms (c2w <-> w2c); returns ``(*, 4, 4)``."""
    pose = to_homogeneous(pose)
    rot = pose[..., :3, :3]
    trans = pose[..., :3, 3]
    out = np.zeros_like(pose)
    rot_t = np.swapaxes(rot, -1, -2)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rot_t, trans)
    out[..., 3, 3] = 1.0
    return out


def flip_opencv_opengl(c2w: np.ndarray) -> np.ndarray:
    """Switch a c2w pose between OpenCV and OpenGL camera axes (self-inverse)."""
    out = np.array(c2w, dtype=np.float64, copy=True)
    out[..., :3, :3] = out[..., :3, :3] @ _OPENCV_OPENGL_FLIP
    return out


def qvec_to_rotmat(qvec: np.ndarray) -> np.ndarray:
    """``(*, 4)`` quaternions ``(w, x, y, z)`` -> ``(*, 3, 3)`` rotation matrices (normalised)."""
    qvec = np.asarray(qvec, dtype=np.float64)
    norm = np.linalg.norm(qvec, axis=-1, keepdims=True)
    if np.any(norm < 1e-12) or not np.all(np.isfinite(qvec)):
        raise ValueError("quaternion must be finite and non-zero")
    xyzw = np.concatenate([qvec[..., 1:], qvec[..., :1]], axis=-1) / norm
    flat = Rotation.from_quat(xyzw.reshape(-1, 4)).as_matrix()
    return flat.reshape(qvec.shape[:-1] + (3, 3))


def rotmat_to_qvec(rotmat: np.ndarray) -> np.ndarray:
    """``(*, 3, 3)`` rotations -> ``(*, 4)`` unit quaternions ``(w, x, y, z)`` with ``w >= 0``."""
    rotmat = np.asarray(rotmat, dtype=np.float64)
    xyzw = Rotation.from_matrix(rotmat.reshape(-1, 3, 3)).as_quat()
    wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=-1)
    wxyz *= np.where(wxyz[:, :1] < 0, -1.0, 1.0)
    return wxyz.reshape(rotmat.shape[:-2] + (4,))


def w2c_from_qvec_tvec(qvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """COLMAP/hloc ``(q, t)`` (world-to-camera) -> ``(*, 4, 4)`` w2c matrix."""
    rot = qvec_to_rotmat(qvec)
    tvec = np.asarray(tvec, dtype=np.float64)
    out = np.zeros(rot.shape[:-2] + (4, 4))
    out[..., :3, :3] = rot
    out[..., :3, 3] = tvec
    out[..., 3, 3] = 1.0
    return out


def qvec_tvec_from_w2c(w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(*, 3|4, 4)`` w2c -> COLMAP/hloc ``(qvec (w,x,y,z), tvec)``."""
    w2c = to_homogeneous(w2c)
    return rotmat_to_qvec(w2c[..., :3, :3]), w2c[..., :3, 3].copy()


def c2w_from_w2c_qvec_and_center(qvec_w2c: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Cambridge-style pose (w2c rotation quaternion + camera centre) -> ``(*, 4, 4)`` c2w."""
    rot_w2c = qvec_to_rotmat(qvec_w2c)
    out = np.zeros(rot_w2c.shape[:-2] + (4, 4))
    out[..., :3, :3] = np.swapaxes(rot_w2c, -1, -2)
    out[..., :3, 3] = np.asarray(center, dtype=np.float64)
    out[..., 3, 3] = 1.0
    return out


@dataclass(frozen=True)
class DataparserTransform:
    """Similarity between the dataset's metric frame and Nerfstudio's normalised frame.

    ``transform`` is the 3x4 rigid matrix and ``scale`` the scalar that Nerfstudio applies
    (in this order) to OpenGL c2w poses expressed in the dataset frame.
    """

    transform: np.ndarray
    scale: float

    @classmethod
    def identity(cls) -> "DataparserTransform":
        return cls(np.eye(4)[:3], 1.0)

    @classmethod
    def from_json(cls, path: Path) -> "DataparserTransform":
        """Read Nerfstudio's ``dataparser_transforms.json`` (saved next to every checkpoint)."""
        try:
            meta = json.loads(Path(path).read_text())
            transform = np.asarray(meta["transform"], dtype=np.float64)
            scale = float(meta["scale"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: expected JSON with 'transform' (3x4) and 'scale': {err}") from err
        if transform.shape != (3, 4):
            raise ValueError(f"{path}: 'transform' must be 3x4, got {transform.shape}")
        return cls(transform, scale)

    @property
    def matrix(self) -> np.ndarray:
        """The rigid part as a 4x4 matrix."""
        return to_homogeneous(self.transform)

    def c2w_to_nerfstudio(self, c2w_opencv: np.ndarray) -> np.ndarray:
        """Dataset-frame OpenCV c2w ``(*, 3|4, 4)`` -> Nerfstudio-frame OpenGL c2w ``(*, 3, 4)``."""
        c2w_gl = flip_opencv_opengl(to_homogeneous(c2w_opencv))
        out = np.einsum("ij,...jk->...ik", self.matrix, c2w_gl)
        out[..., :3, 3] *= self.scale
        return out[..., :3, :]

    def c2w_to_dataset(self, c2w_ns_opengl: np.ndarray) -> np.ndarray:
        """Nerfstudio-frame OpenGL c2w ``(*, 3|4, 4)`` -> dataset-frame OpenCV c2w ``(*, 4, 4)``."""
        pose = to_homogeneous(c2w_ns_opengl)
        pose[..., :3, 3] /= self.scale
        out = np.einsum("ij,...jk->...ik", np.linalg.inv(self.matrix), pose)
        return flip_opencv_opengl(out)

    def points_to_nerfstudio(self, points: np.ndarray) -> np.ndarray:
        """``(*, 3)`` dataset-frame points -> Nerfstudio frame."""
        points = np.asarray(points, dtype=np.float64)
        return (points @ self.transform[:, :3].T + self.transform[:, 3]) * self.scale

    def points_to_dataset(self, points: np.ndarray) -> np.ndarray:
        """``(*, 3)`` Nerfstudio-frame points -> dataset frame (metres)."""
        points = np.asarray(points, dtype=np.float64) / self.scale
        return (points - self.transform[:, 3]) @ self.transform[:, :3]

    def length_to_dataset(self, length: np.ndarray | float) -> np.ndarray | float:
        """A distance in Nerfstudio units -> metres in the dataset frame."""
        return length / self.scale
