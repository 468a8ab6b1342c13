"""NeRFMatch: matching on planted correspondences, ground truth by projection, losses, feature
rendering from a frozen run, and a short training run that lowers the loss."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.geometry.projection import backproject
from nerfloc_plugins.methods.nerfmatch import nerfmatch_losses as L
from nerfloc_plugins.methods.nerfmatch.nerfmatch_matcher import (
    FINE_HALF_EXTENT_PX,
    MatcherConfig,
    NerfMatcher,
    cell_centres,
    window_centres,
)


def planted(n=24, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(1, n, d, generator=g)
    perm = torch.randperm(n, generator=g)
    nerf = image[:, perm] + 0.05 * torch.randn(1, n, d, generator=g)  # point j is cell perm[j]
    return image, nerf, perm


def test_dual_softmax_mutual_matching_recovers_planted_correspondences():
    image, nerf, perm = planted()
    cfg = MatcherConfig(variant="mini", coarse_dim=16, fine_dim=8, temperature=0.1, nerf_projection_layers=1)
    matcher = NerfMatcher(cfg, 16)
    with torch.no_grad():
        matcher.nerf_proj[0].weight.copy_(torch.eye(16))
        matcher.nerf_proj[0].bias.zero_()
    valid = torch.ones(1, 24, dtype=torch.bool)
    valid[0, 5] = False  # an invalid point never matches
    out = matcher.coarse(image, (4, 6), nerf, torch.zeros(1, 24, 3), valid)
    s = out["scores"][0]
    assert torch.allclose(s[:, 5], torch.zeros(24))
    from nerfloc_plugins.features.matching import mutual_argmax

    idx, _ = mutual_argmax(out["scores"], 0.2)
    cells, points = idx[:, 1], idx[:, 2]
    assert len(idx) == 23 and 5 not in points.tolist()
    assert torch.equal(cells, perm[points])
    # the coarse log loss of these scores is small, and large for a wrong assignment
    gt = perm.clone()[None]
    gt[0, 5] = -1
    assert float(L.coarse_log_loss(out["scores"].detach(), gt)) < 0.05
    assert float(L.coarse_log_loss(out["scores"], gt.roll(1, dims=1).masked_fill(gt < 0, -1))) > 3.0


def test_ground_truth_labels_from_projection():
    from nerfloc_plugins.data.synthetic_scene import look_at_c2w

    K = np.array([[50.0, 0, 32.0], [0, 50.0, 24.0], [0, 0, 1]])
    c2w = look_at_c2w(np.array([0.0, -2.0, 1.0]), np.array([0.0, 0.0, 1.0]))
    uv = np.array([[4.0, 4.0], [13.5, 20.25], [63.9, 47.9], [30.0, 10.0]])
    points = backproject(uv, np.array([1.0, 2.0, 1.5, 3.0]), K, c2w)
    behind = c2w[:3, 3] - 2.0 * c2w[:3, 2]
    points = np.vstack([points, behind, backproject(np.array([[70.0, 10.0]]), np.array([1.0]), K, c2w)])
    valid = np.array([True, True, True, False, True, True])
    cells, pixels = L.coarse_fine_labels(points, valid, K, invert_rigid(c2w), 64, 48)
    # 8x8 cells on an 8 x 6 grid: (4,4) -> 0; (13.5, 20.25) -> row 2, col 1 -> 17; (63.9, 47.9) -> 47
    assert cells.tolist() == [0, 17, 47, -1, -1, -1]
    assert np.allclose(pixels[:3], uv[:3], atol=1e-9)
    # fine target: offset from the window centre (8c + 5, 8r + 5) of the cell
    centre = window_centres(torch.tensor([17]), 8)[0].numpy()
    assert np.allclose(centre, [13.0, 21.0]) and np.allclose(cell_centres(48, 64)[17].numpy(), [12.0, 20.0])


def test_fine_loss_weights_by_inverse_variance():
    offset = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    target = torch.zeros(2, 2)
    variance = torch.tensor([1.0, 0.5])
    # w = [1, 2] / 1.5 -> mean(1/1.5 * 1, 2/1.5 * 3) = (2/3 + 4) / 2
    assert float(L.fine_loss(offset, target, variance)) == pytest.approx((2 / 3 + 4) / 2)
    assert float(L.fine_loss(offset[:0], target[:0], variance[:0])) == 0.0


def test_fine_matching_expectation_finds_the_planted_pixel():
    cfg = MatcherConfig(variant="full", coarse_dim=8, fine_dim=8, num_self_layers=1, num_cross_layers=1, num_heads=2)
    matcher = NerfMatcher(cfg, 8)
    matcher.fine_self = nn.Identity()
    with torch.no_grad():
        matcher.fine_point.weight.copy_(torch.eye(8))
        matcher.fine_point.bias.zero_()
    h2, w2 = 12, 16  # fine map of a 32 x 24 image (coarse grid 3 x 4)
    fine = torch.zeros(1, 8, h2, w2)
    point_feature = torch.zeros(1, 1, 8)
    point_feature[0, 0, 0] = 40.0
    # cell 6 = row 1, col 2: window centre on fine pixel (4*1+2, 4*2+2) = (6, 10); plant at (7, 9)
    fine[0, 0, 7, 9] = 40.0
    offset, var = matcher.fine(fine, point_feature, torch.tensor([0]), torch.tensor([6]), torch.tensor([0]), 4)
    # fine pixel (dy, dx) = (+1, -1) -> (-2, +2) full-resolution pixels
    assert torch.allclose(offset[0], torch.tensor([-2.0, 2.0]), atol=1e-3)
    assert float(var[0]) < 1e-3 and FINE_HALF_EXTENT_PX == 4.0


def test_rendered_point_features_shapes_and_layers(tiny_run):
    from nerfloc_plugins.nerf.field_renderer import FieldRenderer
    from nerfloc_plugins.nerf.point_features import NerfPointFeatures

    renderer = FieldRenderer(tiny_run)
    dims = renderer.model.field.feature_dims()
    frame = renderer.frames("train")[0]  # 48 x 36 -> cropped 48 x 32 -> 6 x 4 points
    hidden = NerfPointFeatures(renderer, ("hidden",)).render(frame.c2w, frame.intrinsics)
    assert hidden.features.shape == (24, dims["hidden"]) and hidden.points.shape == (24, 3)
    assert np.allclose(hidden.pixels[:2], [[4.0, 4.0], [12.0, 4.0]])
    both = NerfPointFeatures(renderer, ("hash", "geo"))
    out = both.render(frame.c2w, frame.intrinsics)
    assert both.feature_dim == dims["hash"] + dims["geo"] == out.features.shape[1]
    # the same rays give the same points whichever layer is read
    assert np.allclose(out.points, hidden.points, atol=1e-5)
    assert torch.allclose(
        out.points_ns, torch.from_numpy(renderer.transform.points_to_nerfstudio(out.points)).float(), atol=1e-5
    )
    with pytest.raises(ValueError, match="NeRF feature layers"):
        NerfPointFeatures(renderer, ("rgb",))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["nerfmatch-mini-cpu", "nerfmatch-cpu"])
def test_short_training_lowers_nerfmatch_loss(small_nerf_run, method, pipeline_trainer):
    from nerfloc_plugins.method_configs.nerfmatch_config import nerfmatch_cpu, nerfmatch_mini_cpu

    spec = nerfmatch_mini_cpu if method == "nerfmatch-mini-cpu" else nerfmatch_cpu
    config = copy.deepcopy(spec.config)
    config.pipeline.datamanager.data = small_nerf_run
    config.pipeline.datamanager.min_overlap = 0.1
    config.optimizers["nerfmatch"]["scheduler"] = None  # no warm-up in a short run
    pipeline, train = pipeline_trainer(config, 120)
    fixed = pipeline.datamanager.collate(pipeline.datamanager.train_pairs()[:8])
    assert (fixed["gt_cells"] >= 0).float().mean() > 0.2  # covisible pairs share points

    def total(batch):
        pipeline.eval()
        with torch.no_grad():
            out = pipeline.model(batch)
            loss = pipeline.model.get_loss_dict(out, batch)
        pipeline.train()
        return {k: float(v) for k, v in loss.items()}

    before = total(fixed)
    train()
    after = total(fixed)
    assert after["coarse_loss"] < 0.7 * before["coarse_loss"], (before, after)
    assert ("fine_loss" in after) == (method == "nerfmatch-cpu")


@pytest.mark.parametrize("backbone", ["convformer_s18", "resnet34", "aliked"])
def test_image_encoder_maps_and_local_weights(backbone, tmp_path):
    from nerfloc_plugins.methods.nerfmatch.nerfmatch_encoder import ImageEncoder, ImageEncoderConfig

    config = ImageEncoderConfig(backbone=backbone, coarse_dim=32, fine_dim=16)
    with pytest.warns(UserWarning, match="random initialisation") if backbone != "aliked" else _no_warning():
        encoder = ImageEncoder(config)
    coarse, fine = encoder(torch.rand(2, 3, 48, 64))
    assert coarse.shape == (2, 32, 6, 8) and fine.shape == (2, 16, 24, 32)
    with pytest.raises(ValueError, match="divisible by 8"):
        encoder(torch.rand(1, 3, 36, 64))
    if backbone == "resnet34":
        path = tmp_path / "resnet34.pth"
        torch.save(encoder.backbone.state_dict(), path)
        loaded = ImageEncoder(ImageEncoderConfig(backbone=backbone, pretrained_weights=path))
        assert all(torch.equal(a, b) for a, b in zip(loaded.backbone.parameters(), encoder.backbone.parameters()))
        with pytest.raises(FileNotFoundError, match="missing.pth"):
            ImageEncoder(ImageEncoderConfig(backbone=backbone, pretrained_weights=tmp_path / "missing.pth"))


def _no_warning():
    import contextlib

    return contextlib.nullcontext()


def test_ns_train_exposes_nerfmatch_options_without_a_subcommand():
    """``ns-train nerfmatch-mini-cpu --pipeline.model.encoder.backbone aliked --data RUN/config.yml``
    parses as written (no hidden ``pipeline:...`` subcommand)."""
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    args = ["nerfmatch-mini-cpu", "--pipeline.model.encoder.backbone", "aliked", "--data", "run/config.yml",
            "--pipeline.datamanager.batch-size", "2"]  # fmt: skip
    config = tyro.cli(AnnotatedBaseConfigUnion, args=args)
    assert config.pipeline.model.encoder.backbone == "aliked"
    assert str(config.data) == "run/config.yml"  # ns-train copies it to pipeline.datamanager.data
    assert config.pipeline.datamanager.batch_size == 2


@pytest.mark.slow
def test_a_map_with_no_covisible_pairs_is_one_line_from_ns_train(small_nerf_run, tmp_path):
    """NeRFMatch builds its training pairs when training starts: none (here an overlap no pair
    reaches) ends ``ns-train`` with one line naming the map run and what to change."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "nerfstudio.scripts.train", "nerfmatch-mini-cpu", "--data", str(small_nerf_run),
           "--max-num-iterations", "2", "--output-dir", str(tmp_path), "--viewer.quit-on-train-completion", "True",
           "--pipeline.datamanager.min-overlap", "1.5"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {small_nerf_run}") and "no covisible training pairs" in last, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
