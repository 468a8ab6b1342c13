"""Round trips of the one pose-conventions module."""

import json

import numpy as np
import pytest
import torch
from nerfstudio.data.dataparsers.base_dataparser import transform_poses_to_original_space

from nerfloc_plugins.geometry import poses


def random_c2w(rng: np.random.Generator, n: int) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    out = np.tile(np.eye(4), (n, 1, 1))
    out[:, :3, :3] = poses.qvec_to_rotmat(q)
    out[:, :3, 3] = rng.normal(scale=3.0, size=(n, 3))
    return out


def test_invert_rigid_round_trip_and_product_is_identity():
    rng = np.random.default_rng(0)
    c2w = random_c2w(rng, 5)
    w2c = poses.invert_rigid(c2w)
    np.testing.assert_allclose(poses.invert_rigid(w2c), c2w, atol=1e-12)
    np.testing.assert_allclose(c2w @ w2c, np.tile(np.eye(4), (5, 1, 1)), atol=1e-12)
    # the camera centre maps to the origin of the camera frame
    centre_cam = w2c[:, :3, :3] @ c2w[:, :3, 3, None] + w2c[:, :3, 3, None]
    np.testing.assert_allclose(centre_cam, 0.0, atol=1e-12)


def test_opencv_opengl_flip_is_self_inverse_and_turns_forward_axis():
    rng = np.random.default_rng(1)
    c2w = random_c2w(rng, 3)
    flipped = poses.flip_opencv_opengl(c2w)
    np.testing.assert_allclose(poses.flip_opencv_opengl(flipped), c2w, atol=1e-12)
    # OpenCV looks along +z_cam, OpenGL along -z_cam: same world viewing direction
    np.testing.assert_allclose(c2w[:, :3, 2], -flipped[:, :3, 2], atol=1e-12)
    np.testing.assert_allclose(c2w[:, :3, 3], flipped[:, :3, 3])


def test_quaternion_round_trip_and_known_value():
    rng = np.random.default_rng(2)
    q = rng.normal(size=(10, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q *= np.sign(q[:, :1])
    np.testing.assert_allclose(poses.rotmat_to_qvec(poses.qvec_to_rotmat(q)), q, atol=1e-10)
    # 90 degrees about z: (w, x, y, z) = (cos45, 0, 0, sin45)
    rz = poses.qvec_to_rotmat(np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)]))
    np.testing.assert_allclose(rz @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError):
        poses.qvec_to_rotmat(np.zeros(4))


def test_colmap_qt_round_trip_and_cambridge_centre():
    rng = np.random.default_rng(3)
    c2w = random_c2w(rng, 4)
    w2c = poses.invert_rigid(c2w)
    q, t = poses.qvec_tvec_from_w2c(w2c)
    np.testing.assert_allclose(poses.w2c_from_qvec_tvec(q, t), w2c, atol=1e-10)
    # Cambridge stores the w2c quaternion and the camera centre
    np.testing.assert_allclose(poses.c2w_from_w2c_qvec_and_center(q, c2w[:, :3, 3]), c2w, atol=1e-10)


def test_dataparser_transform_round_trips_and_matches_nerfstudio():
    rng = np.random.default_rng(4)
    rot = poses.qvec_to_rotmat(rng.normal(size=4))
    transform = poses.DataparserTransform(np.concatenate([rot, rng.normal(size=(3, 1))], 1), 0.37)
    c2w = random_c2w(rng, 6)
    ns = transform.c2w_to_nerfstudio(c2w)
    np.testing.assert_allclose(transform.c2w_to_dataset(ns), c2w, atol=1e-10)
    # independent check against Nerfstudio's own inverse
    ref = transform_poses_to_original_space(
        torch.from_numpy(ns), torch.from_numpy(transform.transform), transform.scale, camera_convention="opencv"
    ).numpy()
    np.testing.assert_allclose(ref, c2w[:, :3], atol=1e-10)
    # points follow the same similarity as camera centres
    np.testing.assert_allclose(transform.points_to_nerfstudio(c2w[:, :3, 3]), ns[:, :3, 3], atol=1e-10)
    pts = rng.normal(size=(7, 3))
    np.testing.assert_allclose(transform.points_to_dataset(transform.points_to_nerfstudio(pts)), pts, atol=1e-10)
    assert transform.length_to_dataset(0.37) == pytest.approx(1.0)


def test_dataparser_transform_reads_nerfstudio_json(tmp_path):
    path = tmp_path / "dataparser_transforms.json"
    path.write_text(json.dumps({"transform": np.eye(4)[:3].tolist(), "scale": 0.5}))
    t = poses.DataparserTransform.from_json(path)
    assert t.scale == 0.5 and t.transform.shape == (3, 4)
    path.write_text(json.dumps({"scale": 0.5}))
    with pytest.raises(ValueError, match="dataparser_transforms.json"):
        poses.DataparserTransform.from_json(path)


def test_projection_round_trip_and_ray_length_conversion():
    from nerfloc_plugins.geometry.projection import backproject, project, ray_length_per_unit_z

    rng = np.random.default_rng(5)
    K = np.array([[100.0, 0, 40.0], [0, 110.0, 30.0], [0, 0, 1]])
    c2w = random_c2w(rng, 1)[0]
    uv = rng.uniform(0, 80, size=(20, 2))
    z = rng.uniform(0.5, 5.0, size=20)
    pts = backproject(uv, z, K, c2w)
    uv2, z2 = project(pts, K, poses.invert_rigid(c2w))
    np.testing.assert_allclose(uv2, uv, atol=1e-9)
    np.testing.assert_allclose(z2, z, atol=1e-9)
    # distance from the camera centre = z-depth * ray length per unit z
    scale = ray_length_per_unit_z(80, 60, K)
    assert scale.shape == (60, 80) and scale.min() >= 1.0
    i, j = 7, 52
    p = backproject(np.array([j + 0.5, i + 0.5]), 2.0, K, c2w)
    assert np.linalg.norm(p - c2w[:3, 3]) == pytest.approx(2.0 * scale[i, j])
