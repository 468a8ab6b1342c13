"""Shared localization pieces on synthetic data with known answers."""

import numpy as np
import pytest
import torch

from nerfloc_plugins.data.frames import Intrinsics
from nerfloc_plugins.geometry.poses import DataparserTransform, invert_rigid, qvec_to_rotmat
from nerfloc_plugins.geometry.projection import project
from nerfloc_plugins.geometry.rays import rays_from_pixels
from nerfloc_plugins.localize import io, matching, metrics
from nerfloc_plugins.localize.stages.pnp import PnPConfig, solve_pnp
from nerfloc_plugins.localize.stages.refine import PhotometricConfig, PhotometricRefiner, perturb
from nerfloc_plugins.localize.stages.retrieval import RetrievalConfig, VladIndex, kmeans

INTR = Intrinsics(200.0, 210.0, 80.0, 60.0, 160, 120)


def known_scene(n=200, seed=0):
    rng = np.random.default_rng(seed)
    w2c = np.eye(4)
    w2c[:3, :3] = qvec_to_rotmat(np.array([0.95, 0.1, -0.2, 0.05]))
    w2c[:3, 3] = [0.3, -0.2, 0.5]
    c2w = invert_rigid(w2c)
    cam = np.stack([rng.uniform(-1.5, 1.5, n), rng.uniform(-1, 1, n), rng.uniform(2, 6, n)], 1)
    points = cam @ c2w[:3, :3].T + c2w[:3, 3]
    uv, _ = project(points, INTR.matrix(), w2c)
    return w2c, points, uv


@pytest.mark.parametrize("solver", ["poselib", "pycolmap"])
def test_pnp_recovers_known_camera_with_outliers(solver):
    w2c, points, uv = known_scene()
    rng = np.random.default_rng(1)
    noisy = uv + rng.normal(scale=0.3, size=uv.shape)
    outliers = rng.choice(len(uv), 60, replace=False)
    noisy[outliers] = rng.uniform([0, 0], [160, 120], size=(60, 2))
    result = solve_pnp(noisy, points, INTR, PnPConfig(solver=solver, threshold_px=8.0))  # 2 px at 160 px width
    assert result.success
    dt, dr = metrics.pose_error(result.w2c, w2c)
    assert dt < 0.01 and dr < 0.2
    inlier_truth = np.ones(len(uv), bool)
    inlier_truth[outliers] = False
    assert (result.inliers == inlier_truth).mean() > 0.95


def test_pnp_threshold_floor_for_cell_centre_points():
    """2D points snapped to 8x8 cell centres (NeRFMatch-Mini): a 2 px threshold keeps few of them,
    the 4*sqrt(2) px floor keeps most of them."""
    w2c, points, uv = known_scene(n=150)
    snapped = (np.floor(uv / 8) * 8 + 4).clip(0, 160)
    plain = solve_pnp(snapped, points, INTR, PnPConfig(threshold_px=8.0))
    floored = solve_pnp(snapped, points, INTR, PnPConfig(threshold_px=8.0), min_threshold_px=4 * 2**0.5)
    assert floored.success and floored.inliers.mean() > 0.8
    assert not plain.success or plain.inliers.mean() < floored.inliers.mean() - 0.2, plain.inliers.mean()
    dt, dr = metrics.pose_error(floored.w2c, w2c)
    assert dt < 0.1 and dr < 1.5


def test_pnp_fails_cleanly_with_too_few_points():
    _, points, uv = known_scene(n=5)
    result = solve_pnp(uv, points, INTR, PnPConfig(min_inliers=6))
    assert not result.success and result.w2c is None


def test_matchers_recover_planted_permutation():
    gen = torch.Generator().manual_seed(0)
    ref = torch.nn.functional.normalize(torch.randn(50, 32, generator=gen), dim=-1)
    perm = torch.randperm(50, generator=gen)
    query = torch.nn.functional.normalize(ref[perm] + 0.05 * torch.randn(50, 32, generator=gen), dim=-1)
    sim = matching.cosine_similarity(query, ref)
    for matches, _ in (
        matching.mutual_nearest_neighbors(sim, threshold=0.5),
        matching.dual_softmax_matches(sim, temperature=0.1, threshold=0.2),
        matching.hungarian_matches(sim, min_score=0.5),
    ):
        assert len(matches) == 50
        assert torch.equal(matches[:, 1], perm[matches[:, 0]])
    # a threshold above every score removes all matches
    assert len(matching.mutual_nearest_neighbors(sim, threshold=1.01)[0]) == 0


def test_batched_mnn_and_dual_softmax_normalisation():
    gen = torch.Generator().manual_seed(1)
    sim = torch.randn(3, 10, 12, generator=gen)
    matches, _ = matching.mutual_nearest_neighbors(sim)
    assert matches.shape[1] == 3
    for b, i, j in matches.tolist():
        assert sim[b, i].argmax() == j and sim[b, :, j].argmax() == i
    p = matching.dual_softmax(sim[0], temperature=0.5)
    assert torch.all(p <= 1) and torch.all(p >= 0)
    # each factor is a softmax: rows of the first factor sum to one
    assert torch.allclose(torch.softmax(sim[0] / 0.5, -1).sum(-1), torch.ones(10))


def test_hungarian_prefers_global_optimum_over_greedy():
    scores = torch.tensor([[0.9, 0.8], [0.85, 0.1]])
    matches, _ = matching.hungarian_matches(scores)
    assert sorted(map(tuple, matches.tolist())) == [(0, 1), (1, 0)]  # 0.8 + 0.85 > 0.9 + 0.1


def test_metrics_against_hand_computation():
    gt = np.eye(4)
    est = np.eye(4)
    est[:3, :3] = qvec_to_rotmat(np.array([np.cos(np.radians(6)), 0, np.sin(np.radians(6)), 0]))  # 12 deg about y
    est[:3, 3] = -est[:3, :3] @ np.array([0.03, 0.04, 0.0])  # camera centre moved by 5 cm
    dt, dr = metrics.pose_error(est, gt)
    assert dt == pytest.approx(0.05) and dr == pytest.approx(12.0)
    errors = metrics.query_errors({"a": est, "b": gt, "c": None}, {"a": gt, "b": gt, "c": gt, "d": gt})
    assert [e.failed for e in errors] == [False, False, True, True]
    summary = metrics.summarize(errors)
    assert summary["recall"]["5cm_5deg"] == pytest.approx(0.25)  # only "b"; failures count
    assert summary["recall"]["10cm_10deg"] == pytest.approx(0.25)  # 12 deg misses 10 deg
    assert summary["recall"]["50cm_5deg"] == pytest.approx(0.25)
    assert summary["median_translation_cm"] == np.inf  # half the queries failed
    assert summary["num_failed"] == 2


def test_poses_file_round_trips_through_dataset_frame(tmp_path):
    rng = np.random.default_rng(3)
    transform = DataparserTransform(
        np.concatenate([qvec_to_rotmat(rng.normal(size=4)), rng.normal(size=(3, 1))], 1), 0.3
    )
    c2w_ns = transform.c2w_to_nerfstudio(invert_rigid(known_scene()[0]))
    w2c_dataset = invert_rigid(transform.c2w_to_dataset(c2w_ns))
    io.write_poses({"seq-03/frame-000000.color.png": w2c_dataset}, tmp_path / "poses.txt")
    back = io.read_poses(tmp_path / "poses.txt")
    np.testing.assert_allclose(back["seq-03/frame-000000.color.png"], w2c_dataset, atol=1e-8)
    np.testing.assert_allclose(back["seq-03/frame-000000.color.png"], known_scene()[0], atol=1e-8)


def test_pairs_file_and_errors(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("q1 db1\nq1 db2\nq2 db3\n")
    assert io.read_pairs(path) == {"q1": ["db1", "db2"], "q2": ["db3"]}
    path.write_text("q1 db1\nq2\n")
    with pytest.raises(ValueError, match=r"pairs.txt:2: expected 'query_name db_name'"):
        io.read_pairs(path)


def test_kmeans_and_vlad_retrieve_the_same_image():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 5
    x = torch.from_numpy(np.concatenate([c + rng.normal(size=(50, 8)) for c in centres])).float()
    found = kmeans(x, 4, seed=0).numpy()
    assert np.linalg.norm(found[:, None] - centres[None], axis=-1).min(axis=0).max() < 1.0
    images = [rng.normal(size=(80, 16)).astype(np.float32) for _ in range(6)]
    index = VladIndex(RetrievalConfig(num_clusters=8))
    index.fit(images)
    for i, desc in enumerate(images):
        assert index.search(desc[:60], top_k=2)[0][0] == i  # a subset of an image's features finds it


def room_renderer(origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Analytic scene: inside of the box [-2, 2] x [-2, 2] x [0, 3] with a smooth 3D colour field."""
    lo = torch.tensor([-2.0, -2.0, 0.0])
    hi = torch.tensor([2.0, 2.0, 3.0])
    bound = torch.where(dirs > 0, hi, lo)
    t = ((bound - origins) / dirs).min(dim=-1).values
    p = origins + t[:, None] * dirs
    x, y, z = p.unbind(-1)
    return torch.stack(
        [
            0.5 + 0.25 * torch.sin(2 * x + 1.3 * z) * torch.cos(1.7 * y),
            0.5 + 0.25 * torch.cos(1.5 * y - 0.8 * x + z),
            0.5 + 0.2 * torch.sin(2.2 * z + 0.5 * x * y),
        ],
        dim=-1,
    )


def test_photometric_refinement_converges_on_analytic_scene():
    from nerfloc_plugins.data.synthetic_scene import look_at_c2w

    K = torch.tensor(INTR.matrix(), dtype=torch.float32)
    v, u = torch.meshgrid(torch.arange(120) + 0.5, torch.arange(160) + 0.5, indexing="ij")
    uv = torch.stack([u, v], -1).reshape(-1, 2)
    gt_c2w = look_at_c2w(np.array([0.3, -0.2, 1.4]), np.array([2.0, 2.0, 1.0]))
    gt = torch.tensor(gt_c2w[:3], dtype=torch.float32)
    target = room_renderer(*rays_from_pixels(gt, K, uv)).reshape(120, 160, 3)
    start = np.vstack([perturb(gt, torch.tensor([0.04, -0.03, 0.02, 0.01, -0.015, 0.02])).numpy(), [0, 0, 0, 1]])
    refiner = PhotometricRefiner(room_renderer, PhotometricConfig(steps=300, lr=2e-3, num_rays=2048))
    refined, losses = refiner.refine(start, target.numpy(), INTR.matrix())
    dt0, dr0 = metrics.pose_error(invert_rigid(start), invert_rigid(gt_c2w))
    dt1, dr1 = metrics.pose_error(invert_rigid(refined), invert_rigid(gt_c2w))
    assert losses[-1] < 0.2 * losses[0]
    assert dt1 < 0.2 * dt0 and dr1 < 0.2 * dr0, (dt0, dt1, dr0, dr1)
