"""Export synthesized poses: a CSV table and a Nerfstudio camera path (``ns-render camera-path``).

CSV columns ``name,qw,qx,qy,qz,tx,ty,tz,ref_a,ref_b``: the pose is **world-to-camera** in the
dataset frame with OpenCV axes (COLMAP/hloc convention, ``geometry/poses.py``); ``ref_a`` /
``ref_b`` are the names of the two training images it was interpolated between.

The camera path is in Nerfstudio's normalised frame with OpenGL axes (what ``ns-render
camera-path --camera-path-filename`` and the viewer read): ``camera_to_world`` row-major 4x4,
vertical ``fov`` in degrees, ``aspect`` = width / height.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from nerfloc_plugins.data.frames import Intrinsics
from nerfloc_plugins.geometry.poses import DataparserTransform, invert_rigid, qvec_tvec_from_w2c, to_homogeneous
from nerfloc_plugins.methods.d2s.d2s_pose_synthesis import SynthesizedPose
from nerfloc_plugins.utils.atomic import write_text_atomically

CSV_COLUMNS = ("name", "qw", "qx", "qy", "qz", "tx", "ty", "tz", "ref_a", "ref_b")


def write_poses_csv(path: Path, names: Sequence[str], poses: Sequence[SynthesizedPose], ref_names: Sequence[str]):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for name, pose in zip(names, poses):
        q, t = qvec_tvec_from_w2c(invert_rigid(pose.c2w))
        writer.writerow([name, *(f"{x:.9f}" for x in (*q, *t)), ref_names[pose.ref_a], ref_names[pose.ref_b]])
    write_text_atomically(buffer.getvalue(), path)


def write_camera_path(
    path: Path, poses: Sequence[SynthesizedPose], intrinsics: Intrinsics, transform: DataparserTransform, fps: int = 10
):
    fov = float(np.degrees(2.0 * np.arctan(intrinsics.height / (2.0 * intrinsics.fy))))
    frames = [
        {
            "camera_to_world": to_homogeneous(transform.c2w_to_nerfstudio(p.c2w)).reshape(-1).tolist(),
            "fov": fov,
            "aspect": intrinsics.width / intrinsics.height,
        }
        for p in poses
    ]
    data = {
        "camera_type": "perspective",
        "render_height": intrinsics.height,
        "render_width": intrinsics.width,
        "fps": fps,
        "seconds": len(frames) / fps,
        "camera_path": frames,
    }
    write_text_atomically(json.dumps(data) + "\n", path)
