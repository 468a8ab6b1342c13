"""Descriptor synthesis + D2S: pose synthesis (slerp, segment sampling, pairs), export, the match
filter, label inheritance on planted correspondences, and the regressor on tiny sets."""

import csv
import json

import numpy as np
import pytest
import torch

from nerfloc_plugins.geometry.poses import invert_rigid, qvec_to_rotmat, rotmat_to_qvec
from nerfloc_plugins.methods.d2s.d2s_pose_synthesis import (
    PoseSynthesisConfig,
    interpolate_poses,
    nearest_pose_pairs,
    slerp,
    synthesize_poses,
)


def random_c2w(rng, centre):
    q = rng.normal(size=4)
    c2w = np.eye(4)
    c2w[:3, :3] = qvec_to_rotmat(q / np.linalg.norm(q))
    c2w[:3, 3] = centre
    return c2w


def test_slerp_endpoints_unit_norm_and_constant_speed():
    rng = np.random.default_rng(0)
    q0, q1 = rng.normal(size=4), rng.normal(size=4)
    q0, q1 = q0 / np.linalg.norm(q0), q1 / np.linalg.norm(q1)
    s = np.linspace(0, 1, 11)
    q = slerp(q0, q1, s)
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0)
    sign = np.sign(np.dot(q0, q1))
    assert np.allclose(q[0], q0) and np.allclose(q[-1], sign * q1)
    # constant angular speed: equal angles between consecutive samples
    angles = 2 * np.arccos(np.clip(np.abs(np.sum(q[1:] * q[:-1], axis=1)), -1, 1))
    assert np.allclose(angles, angles[0], atol=1e-9)
    # the shorter arc: -q1 is the same rotation and gives the same path
    assert np.allclose(np.abs(slerp(q0, -q1, s)), np.abs(q))


def test_interpolated_centres_lie_on_the_segment_between_camera_centres():
    rng = np.random.default_rng(1)
    a, b = random_c2w(rng, [0.0, 0.0, 0.0]), random_c2w(rng, [1.0, 2.0, -0.5])
    fractions = np.arange(1, 41) / 41
    poses = interpolate_poses(a, b, fractions)
    d = b[:3, 3] - a[:3, 3]
    for pose, s in zip(poses, fractions):
        assert np.allclose(pose[:3, 3], a[:3, 3] + s * d)  # on the segment at fraction s
        assert np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-9)
    # rotation angle from a grows linearly with s
    qa = rotmat_to_qvec(a[:3, :3])
    angles = [2 * np.arccos(min(1.0, abs(float(np.dot(qa, rotmat_to_qvec(p[:3, :3])))))) for p in poses]
    assert np.allclose(np.diff(angles), angles[0], atol=1e-6)
    # the w2c translation (what COLMAP stores) is NOT what is interpolated
    assert not np.allclose(invert_rigid(poses[20])[:3, 3], (invert_rigid(a)[:3, 3] + invert_rigid(b)[:3, 3]) / 2)


def test_nearest_pairs_and_deduplication():
    centres = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [10, 0, 0]])
    assert nearest_pose_pairs(centres, 1) == [(0, 1), (1, 2), (2, 3)]
    assert nearest_pose_pairs(centres, 3) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    rng = np.random.default_rng(2)
    c2ws = [random_c2w(rng, c) for c in centres]
    poses = synthesize_poses(c2ws, PoseSynthesisConfig(top_k=1, samples_per_pair=4))
    assert len(poses) == 3 * 4
    assert {(p.ref_a, p.ref_b) for p in poses} == {(0, 1), (1, 2), (2, 3)}
    # a duplicated training pose adds a zero-length pair whose samples all coincide: kept once
    dup = synthesize_poses(c2ws + [c2ws[0].copy()], PoseSynthesisConfig(top_k=1, samples_per_pair=4))
    assert len(dup) == 3 * 4 + 1


def test_pose_exports_round_trip(tmp_path):
    from nerfloc_plugins.data.frames import Intrinsics
    from nerfloc_plugins.geometry.poses import DataparserTransform, w2c_from_qvec_tvec
    from nerfloc_plugins.methods.d2s.d2s_pose_export import CSV_COLUMNS, write_camera_path, write_poses_csv

    rng = np.random.default_rng(3)
    c2ws = [random_c2w(rng, rng.normal(size=3)) for _ in range(4)]
    poses = synthesize_poses(c2ws, PoseSynthesisConfig(top_k=1, samples_per_pair=3))
    names = [f"s{i}" for i in range(len(poses))]
    write_poses_csv(tmp_path / "poses.csv", names, poses, ["a", "b", "c", "d"])
    rows = list(csv.DictReader(open(tmp_path / "poses.csv")))
    assert tuple(rows[0].keys()) == CSV_COLUMNS and len(rows) == len(poses)
    q = np.array([float(rows[5][k]) for k in ("qw", "qx", "qy", "qz")])
    t = np.array([float(rows[5][k]) for k in ("tx", "ty", "tz")])
    assert np.allclose(invert_rigid(w2c_from_qvec_tvec(q, t)), poses[5].c2w, atol=1e-7)
    transform = DataparserTransform(np.eye(4)[:3], 0.5)
    intr = Intrinsics(fx=100.0, fy=100.0, cx=80.0, cy=60.0, width=160, height=120)
    write_camera_path(tmp_path / "path.json", poses, intr, transform)
    path = json.loads((tmp_path / "path.json").read_text())
    assert len(path["camera_path"]) == len(poses) and path["render_width"] == 160
    m = np.array(path["camera_path"][2]["camera_to_world"]).reshape(4, 4)
    assert np.allclose(m[:3, 3], 0.5 * poses[2].c2w[:3, 3])  # scaled into Nerfstudio's frame
    assert np.allclose(m[:3, 1], -poses[2].c2w[:3, 1])  # OpenGL axes: y flipped


def test_min_match_threshold_scales_with_image_size():
    from nerfloc_plugins.methods.d2s.d2s_descriptor_synthesis import scaled_min_matches

    assert scaled_min_matches(500, 640, 480) == 500
    assert scaled_min_matches(500, 160, 120) == 31
    assert scaled_min_matches(500, 8, 6) == 1


class PlantedMatcher:
    """Features given per image; matches = identical descriptors."""

    def __init__(self, features):
        self.features = features

    def extract(self, image):
        return self.features[int(image)]

    def match(self, f0, size0, f1, size1):
        sim = f0.descriptors @ f1.descriptors.T
        i, j = np.nonzero(sim > 0.999)
        return np.stack([i, j], axis=1)


def test_label_inheritance_and_match_filter_on_planted_correspondences():
    from nerfloc_plugins.data.frames import Intrinsics, PosedFrame
    from nerfloc_plugins.features.local_features import LocalFeatures
    from nerfloc_plugins.methods.d2s.d2s_descriptor_synthesis import label_synthetic_view
    from nerfloc_plugins.methods.d2s.d2s_keypoint_views import KeypointView
    from nerfloc_plugins.methods.d2s.d2s_pose_synthesis import SynthesizedPose

    rng = np.random.default_rng(4)
    eye = np.eye(32, dtype=np.float32)
    intr = Intrinsics(fx=50.0, fy=50.0, cx=32.0, cy=24.0, width=64, height=48)
    frame = PosedFrame("ref", None, np.eye(4), intr)
    # reference A has descriptors 0..9 (labels known except #3), B has 10..19
    pts_a = rng.normal(size=(10, 3)).astype(np.float32)
    pts_a[3] = np.nan
    ref_a = KeypointView("a", rng.random((10, 2)), eye[:10], pts_a, np.eye(4), intr.matrix())
    pts_b = rng.normal(size=(10, 3)).astype(np.float32)
    ref_b = KeypointView("b", rng.random((10, 2)), eye[10:20], pts_b, np.eye(4), intr.matrix())
    # synthetic image: keypoints carrying descriptors 2, 3, 5, 12, 25 (25 matches nothing)
    syn_desc = eye[[2, 3, 5, 12, 25]]
    syn = LocalFeatures(rng.random((5, 2)) * 40, syn_desc)
    matcher = PlantedMatcher({0: syn})
    pose = SynthesizedPose(np.eye(4), 0, 1, 0.25)
    result = label_synthetic_view("s", 0, pose, frame, [ref_a, ref_b], matcher, min_matches=4)
    assert result.num_matched == 4 and result.view is not None
    view = result.view
    assert len(view) == 4  # only matched keypoints kept
    assert np.allclose(view.points3d[0], pts_a[2]) and np.allclose(view.points3d[2], pts_a[5])
    assert np.isnan(view.points3d[1]).all()  # its reference keypoint had no label
    assert np.allclose(view.points3d[3], pts_b[2])
    assert np.allclose(view.keypoints, syn.keypoints[:4])
    rejected = label_synthetic_view("s", 0, pose, frame, [ref_a, ref_b], matcher, min_matches=5)
    assert rejected.view is None and rejected.num_matched == 4


def tiny_views(rng, n_views=6, n_points=40, dim=32):
    """Views of one random 3D point set: each point has a fixed descriptor (+ noise)."""
    from nerfloc_plugins.methods.d2s.d2s_keypoint_views import KeypointView

    points = rng.uniform(-1, 1, size=(n_points, 3)) + np.array([0, 0, 3.0])
    desc = rng.normal(size=(n_points, dim))
    views = []
    for v in range(n_views):
        idx = rng.choice(n_points, size=30, replace=False)
        d = desc[idx] + 0.01 * rng.normal(size=(30, dim))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        K = np.array([[100.0, 0, 32], [0, 100, 24], [0, 0, 1]])
        cam = points[idx]
        uv = (cam[:, :2] / cam[:, 2:]) * 100 + np.array([32, 24])
        labels = points[idx].copy()
        labels[:3] = np.nan  # a few unlabelled keypoints per view
        views.append(KeypointView(f"v{v}", uv.astype(np.float32), d.astype(np.float32), labels.astype(np.float32),
                                  np.eye(4), K))  # fmt: skip
    return views, points, desc


def test_d2s_regressor_overfits_a_tiny_set_and_reloads(tmp_path):
    from nerfloc_plugins.methods.d2s.d2s_model import D2SConfig
    from nerfloc_plugins.methods.d2s.d2s_trainer import D2STrainConfig, collate, load_d2s, save_d2s, train_d2s

    rng = np.random.default_rng(5)
    views, _, _ = tiny_views(rng)
    config = D2STrainConfig(
        iterations=300,
        batch_size=4,
        lr=1e-3,
        num_lr_decays=1,
        model=D2SConfig(num_layers=2, num_heads=4, mlp_dims=(128, 128)),
    )
    net, history = train_d2s(views, config)
    first = np.mean([h["coordinate_error_m"] for h in history[:10]])
    last = np.mean([h["coordinate_error_m"] for h in history[-10:]])
    assert last < 0.25 * first and last < 0.1, (first, last)
    assert "reprojection" in history[-1] and "reprojection" not in history[0]  # joins at 80 %
    batch = collate(views, 1024, __import__("random").Random(0), "cpu")
    with torch.no_grad():
        coords, _, rel = net(batch["descriptors"], batch["mask"])
    lab = batch["labelled"]
    err = (coords[lab] - batch["labels"][lab]).norm(dim=-1)
    assert float(err.median()) < 0.1
    assert float(rel[lab].mean()) > float(rel[batch["mask"] & ~lab].mean())  # labelled points more reliable
    save_d2s(net, tmp_path / "d2s.pt")
    loaded, _ = load_d2s(tmp_path / "d2s.pt")
    with torch.no_grad():
        again, _, _ = loaded(batch["descriptors"], batch["mask"])
    assert torch.allclose(again, coords, atol=1e-5)


def test_keypoint_views_round_trip_and_bad_file(tmp_path):
    from nerfloc_plugins.methods.d2s.d2s_keypoint_views import load_views, save_views

    views, _, _ = tiny_views(np.random.default_rng(6), n_views=3)
    save_views(views, tmp_path / "v.npz")
    back = load_views(tmp_path / "v.npz")
    assert [v.name for v in back] == [v.name for v in views]
    assert np.array_equal(back[1].points3d, views[1].points3d, equal_nan=True)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_views(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_views(tmp_path / "missing.npz")


def test_triangulated_labels_recover_planted_points():
    from nerfloc_plugins.data.frames import Intrinsics, PosedFrame
    from nerfloc_plugins.features.local_features import LocalFeatures
    from nerfloc_plugins.geometry.projection import project
    from nerfloc_plugins.methods.d2s.d2s_descriptor_synthesis import triangulate_labels

    rng = np.random.default_rng(7)
    points = rng.uniform(-1, 1, size=(25, 3)) + np.array([0, 0, 4.0])
    intr = Intrinsics(fx=300.0, fy=300.0, cx=160.0, cy=120.0, width=320, height=240)
    frames, features = [], []
    eye = np.eye(25, dtype=np.float32)
    for k, x in enumerate([-0.6, 0.0, 0.6]):
        c2w = np.eye(4)
        c2w[:3, 3] = [x, 0.1 * k, 0.0]
        uv, _ = project(points, intr.matrix(), invert_rigid(c2w))
        frames.append(PosedFrame(f"f{k}", None, c2w, intr))
        features.append(LocalFeatures(uv + 0.1 * rng.normal(size=uv.shape), eye))
    labels = triangulate_labels(frames, features, PlantedMatcher({}), neighbours=1)
    for lab in labels:
        ok = np.isfinite(lab).all(axis=1)
        assert ok.mean() > 0.9
        assert np.median(np.linalg.norm(lab[ok] - points[ok], axis=1)) < 0.02


def test_inherited_labels_reproject_onto_keypoints_of_a_novel_view():
    """ALIKED + LightGlue between two real views of the analytic example room and a view rendered
    (exactly) between them: inherited depth-lifted labels project onto the synthetic keypoints."""
    from nerfloc_plugins.data.frames import Intrinsics, PosedFrame
    from nerfloc_plugins.data.synthetic_scene import default_sequences, demo_room, render_view
    from nerfloc_plugins.features.feature_matcher import LocalFeatureMatcher
    from nerfloc_plugins.geometry.projection import project
    from nerfloc_plugins.methods.d2s.d2s_descriptor_synthesis import label_synthetic_view, lift_with_depth, real_view

    boxes = demo_room()
    intr = Intrinsics(525.0, 525.0, 320.0, 240.0, 640, 480).scaled_to(160, 120)
    poses = default_sequences(12, 1)[1][1]
    matcher = LocalFeatureMatcher("aliked")
    refs = []
    for k, c2w in enumerate(poses[:2]):
        rgb, depth = render_view(boxes, c2w, intr, 1)
        frame = PosedFrame(f"r{k}", None, c2w, intr)
        feats = matcher.extract(rgb)
        refs.append(real_view(frame, feats, lift_with_depth(feats, depth, frame)))
    pose = synthesize_poses(poses[:2], PoseSynthesisConfig(top_k=1, samples_per_pair=1))[0]
    assert pose.fraction == 0.5
    image, _ = render_view(boxes, pose.c2w, intr, 1)
    result = label_synthetic_view("s", image, pose, PosedFrame("r0", None, poses[0], intr), refs, matcher, 31)
    assert result.view is not None and result.num_matched >= 31
    v = result.view
    uv, _ = project(v.points3d[v.labelled].astype(np.float64), v.K, invert_rigid(v.c2w))
    errors = np.linalg.norm(uv - v.keypoints[v.labelled], axis=1)
    assert np.median(errors) < 1.5 and np.mean(errors < 4) > 0.8, np.percentile(errors, [25, 50, 75, 90])


@pytest.mark.slow
def test_synthesis_cli_writes_poses_views_and_labels(small_nerf_run, tmp_path):
    """ns-nerfloc-synthesize on a small trained run: pose count, files, kept views and labels."""
    from nerfloc_plugins.methods.d2s.d2s_keypoint_views import load_views
    from nerfloc_plugins.methods.d2s.d2s_pose_synthesis import nearest_pose_pairs
    from nerfloc_plugins.methods.d2s.d2s_synthesize import Synthesize

    out = tmp_path / "synth"
    config = PoseSynthesisConfig(top_k=1, samples_per_pair=3)
    summary = Synthesize(load_config=small_nerf_run, output_dir=out, poses=config, features="sift", eta=100).main()
    real = load_views(out / "real.npz")
    centres = np.array([v.c2w[:3, 3] for v in real])
    assert summary["num_synthesized"] == 3 * len(nearest_pose_pairs(centres, 1))
    assert summary["labels"] == "depth" and summary["real_labelled_fraction"] > 0.5
    assert len(list(csv.DictReader(open(out / "poses.csv")))) == summary["num_synthesized"]
    assert len(json.loads((out / "camera_path.json").read_text())["camera_path"]) == summary["num_synthesized"]
    if summary["num_kept"]:
        views = load_views(out / "synthetic.npz")
        assert len(views) == summary["num_kept"] and all(v.synthetic for v in views)
        assert all(len(v) >= summary["min_matches"] for v in views)
        assert len(list((out / "images").glob("*.png"))) == summary["num_kept"]
    # dropping every view: nothing kept, and the summary says so
    none = Synthesize(load_config=small_nerf_run, output_dir=tmp_path / "none", poses=config, features="sift",
                      eta=10**6).main()  # fmt: skip
    assert none["num_kept"] == 0 and not (tmp_path / "none" / "synthetic.npz").exists()
