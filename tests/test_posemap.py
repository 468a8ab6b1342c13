"""PoseMap (NeRF-P + APRNet): pose decoding, differentiable PoseMaps, perturbations, training."""

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from nerfloc_plugins.methods.posemap.posemap_aprnet import (
    APRConfig,
    APRNet,
    PerturbationConfig,
    perturb_poses,
    pose_loss,
    posemap_loss,
)
from nerfloc_plugins.methods.posemap.posemap_nerfp import (
    PoseDecoder,
    PoseMapConfig,
    PoseMapRenderer,
    orthonormalise_pose,
)


def test_orthonormalised_decoder_output_is_a_valid_pose():
    torch.manual_seed(0)
    decoder = PoseDecoder(PoseMapConfig())
    raw = decoder(torch.randn(5, 256, 7, 10))
    assert raw.shape == (5, 12)
    pose = orthonormalise_pose(raw)
    rot = pose[:, :, :3]
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-5)
    assert torch.allclose(torch.det(rot), torch.ones(5), atol=1e-5)
    assert torch.allclose(pose[:, :, 3], raw.reshape(5, 3, 4)[:, :, 3])
    # a proper pose is a fixed point; a reflection is turned into a rotation
    valid = torch.cat([torch.from_numpy(Rotation.random(random_state=1).as_matrix()).float(), torch.ones(3, 1)], 1)
    assert torch.allclose(orthonormalise_pose(valid.reshape(1, 12))[0], valid, atol=1e-5)
    flipped = valid.clone()
    flipped[:, 0] *= -1
    assert float(torch.det(orthonormalise_pose(flipped.reshape(1, 12))[0, :, :3])) > 0.99


def test_perturbations_respect_their_bounds():
    gen = torch.Generator().manual_seed(0)
    base = torch.cat([torch.eye(3), torch.zeros(3, 1)], 1).expand(500, 3, 4).contiguous()
    cfg = PerturbationConfig(max_translation=0.2, max_rotation_deg=10.0)
    out = perturb_poses(base, cfg, metres_per_unit=2.0, generator=gen)  # 1 unit = 2 m: 0.1 units
    t = out[:, :, 3]
    assert float(t.abs().max()) <= 0.1 + 1e-6 and float(t.abs().max()) > 0.09
    euler = Rotation.from_matrix(out[:, :, :3].double().numpy()).as_euler("ZYX", degrees=True)
    assert np.abs(euler).max() <= 10.0 + 1e-4 and np.abs(euler).max() > 9.0
    assert torch.allclose(torch.det(out[:, :, :3]), torch.ones(500), atol=1e-5)


def test_apr_net_shapes_and_offline_random_init(tmp_path):
    with pytest.warns(UserWarning, match="random initialisation"):
        net = APRNet(APRConfig())
    pose, feats = net(torch.rand(2, 3, 96, 128))
    assert pose.shape == (2, 12) and feats.shape == (2, 128, 12, 16)
    assert torch.allclose(feats.norm(dim=1), torch.ones(2, 12, 16), atol=1e-4)
    with pytest.raises(FileNotFoundError, match="VGG16 weights"):
        APRNet(APRConfig(pretrained_weights=tmp_path / "missing.pth"))
    # weights from a local file (here: this net's own) load without a download
    torch.save(
        {
            f"features.{k}": v
            for k, v in torch.nn.Sequential(*net.block12, *net.block3, *net.block4, *net.block5).state_dict().items()
        },
        tmp_path / "vgg.pth",
    )
    again = APRNet(APRConfig(pretrained_weights=tmp_path / "vgg.pth"))
    assert torch.equal(again.block5[0].weight, net.block5[0].weight)


def ns_train(method: str, data: Path, out: Path, iterations: int, *extra: str) -> Path:
    """Run ``ns-train method --data data`` for a few iterations; its config.yml."""
    cmd = [
        sys.executable, "-m", "nerfstudio.scripts.train", method, "--data", str(data),
        "--max-num-iterations", str(iterations), "--steps-per-save", str(iterations),
        "--output-dir", str(out), "--experiment-name", "pm", "--timestamp", "t",
        "--viewer.quit-on-train-completion", "True", *extra,
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "pm" / method / "t" / "config.yml"


def method_config(name: str, data: Path):
    from nerfstudio.configs.method_configs import all_methods

    config = copy.deepcopy(all_methods[name])
    config.pipeline.datamanager.data = data
    return config


@pytest.fixture(scope="module")
def posemap_nerf_run(small_nerf_run, tmp_path_factory) -> Path:
    """config.yml of a 40-step ``posemap-nerf-cpu`` run on ``small_nerf_run``."""
    return ns_train("posemap-nerf-cpu", small_nerf_run, tmp_path_factory.mktemp("posemap"), 40)


@pytest.mark.slow
def test_posemap_gradient_reaches_the_predicted_pose(small_nerf_run):
    from nerfloc_plugins.localize.stages.refine import perturb
    from nerfloc_plugins.nerf.field_renderer import FieldRenderer

    renderer = FieldRenderer(small_nerf_run)
    torch.manual_seed(0)
    posemaps = PoseMapRenderer(renderer.model, PoseMapConfig(stride=8, feature_dim=32, branch_hidden_dim=32))
    frames = renderer.frames("train")
    intr = frames[0].intrinsics
    poses = torch.stack([torch.from_numpy(renderer.c2w_ns_opencv(f.c2w)[:3]).float() for f in frames])
    target = posemaps(poses[:2], intr).detach()
    assert target.shape == (2, 32, 6, 8)
    xi = torch.zeros(2, 6, requires_grad=True)
    moved = torch.stack([perturb(p, x) for p, x in zip(poses[:2], xi + torch.tensor([0.05, 0, 0, 0, 0.03, 0]))])
    loss = posemap_loss(posemaps(moved, intr), target)
    loss.backward()
    assert float(loss.detach()) > 0 and xi.grad is not None
    assert torch.isfinite(xi.grad).all() and float(xi.grad.abs().sum()) > 0
    # the NeRF stays frozen: no gradient into its parameters
    assert all(p.grad is None for p in renderer.model.parameters())


@pytest.mark.slow
def test_nerf_p_training_lowers_the_pose_regression_error(small_nerf_run, pipeline_trainer):
    pipeline, run = pipeline_trainer(method_config("posemap-nerf-cpu", small_nerf_run), 150)
    poses = pipeline.datamanager.train_poses

    def error() -> float:
        with torch.no_grad():
            return float(pose_loss(pipeline._model({"poses": poses})["raw"], poses))

    before = error()
    history = run()
    after = error()
    assert np.mean([h["pose"] for h in history[-10:]]) < 0.7 * np.mean([h["pose"] for h in history[:10]])
    assert after < 0.6 * before, (before, after)


@pytest.mark.slow
def test_short_apr_training_lowers_the_losses(posemap_nerf_run, pipeline_trainer):
    config = method_config("posemap-apr-cpu", posemap_nerf_run)
    config.pipeline.datamanager.rvs_pool_size = 8
    config.pipeline.datamanager.rvs_refresh_every = 50
    config.pipeline.model.input_scale = 1.0  # 64x48 images: VGG16 needs >= 32 px per side
    pipeline, run = pipeline_trainer(config, 120)
    history = run()
    assert set(history[0]) == {"pose", "image", "posemap", "rvs"}
    # L_posemap stays near 1 (uncorrelated maps) until predictions come close to the truth
    for term in ("pose", "rvs"):
        first = np.mean([h[term] for h in history[:15]])
        last = np.mean([h[term] for h in history[-15:]])
        assert last < first, (term, first, last)
    first = np.mean([sum(h.values()) for h in history[:15]])
    last = np.mean([sum(h.values()) for h in history[-15:]])
    assert last < 0.9 * first, (first, last)


@pytest.mark.slow
def test_apr_runs_localize_alone_and_as_a_prior(posemap_nerf_run, small_nerf_run, tmp_path):
    from nerfloc_plugins.geometry.pose_errors import pose_error
    from nerfloc_plugins.geometry.poses import invert_rigid
    from nerfloc_plugins.localize.localizers.rendered_features import RenderedFeaturesLocalizer
    from nerfloc_plugins.localize.map_sources import pose_prior_of_run, run_localizer
    from nerfloc_plugins.localize.pipeline_config import PipelineConfig
    from nerfloc_plugins.localize.stages.priors import PriorSource
    from nerfloc_plugins.methods.posemap.posemap_localizer import APRLocalizer
    from nerfloc_plugins.nerf.field_renderer import FieldRenderer
    from nerfloc_plugins.scripts.localize import Localize

    apr_run = ns_train("posemap-apr-cpu", posemap_nerf_run, tmp_path / "apr", 10, "--pipeline.model.input-scale", "1")
    aligned = ns_train("posemap-align-cpu", apr_run, tmp_path / "align", 4)
    metrics = Localize(aligned, output_dir=tmp_path / "loc").main()
    assert metrics["method"] == "pmnet_ud" and metrics["num_queries"] == 2
    assert (tmp_path / "loc" / "report.md").is_file()

    # make the APR answer one known pose: zero head, offset = a test frame's NeRF-frame pose
    renderer = FieldRenderer(small_nerf_run)
    frame = renderer.frames("test")[1]
    ckpt = sorted((apr_run.parent / "nerfstudio_models").glob("*.ckpt"))[-1]
    full = torch.load(ckpt, weights_only=True)
    full["pipeline"]["_model.net.pose_head.weight"].zero_()
    full["pipeline"]["_model.net.pose_head.bias"].zero_()
    ns_pose = torch.from_numpy(renderer.c2w_ns_opencv(frame.c2w)[:3]).float()
    full["pipeline"]["_model.net.pose_offset"] = ns_pose.flatten()
    torch.save(full, ckpt)
    localizer = APRLocalizer(apr_run)
    dt, dr = pose_error(invert_rigid(localizer.regress_pose(localizer.describe_query(frame))), invert_rigid(frame.c2w))
    assert dt < 1e-4 and dr < 0.1, (dt, dr)  # float32 pose: arccos resolution ~0.05 deg
    # as the prior of a field localizer (ns-localize --pose-prior, through the APR's localizer spec):
    # the prior frame is at the APR pose
    field_localizer = run_localizer(small_nerf_run)
    assert isinstance(field_localizer, RenderedFeaturesLocalizer)
    prior = PriorSource(field_localizer, PipelineConfig(), pose_prior_of_run(apr_run, field_localizer.device))
    (chosen,) = prior(renderer.frames("test")[0], None)
    dt, dr = pose_error(invert_rigid(chosen.c2w), invert_rigid(frame.c2w))
    assert dt < 1e-4 and dr < 0.1, (dt, dr)  # float32 pose: arccos resolution ~0.05 deg


def test_posemap_pose_gradient_is_rescaled_per_pose():
    from nerfloc_plugins.methods.posemap.posemap_losses import clip_row_gradients

    x = torch.randn(3, 12, requires_grad=True)
    weights = torch.tensor([1e6, 1e-3, 10.0])[:, None] * torch.ones(3, 12)
    (clip_row_gradients(x, 0.5) * weights).sum().backward()
    norms = x.grad.norm(dim=-1)
    assert torch.allclose(norms[0], torch.tensor(0.5)) and torch.allclose(norms[2], torch.tensor(0.5))
    assert torch.allclose(norms[1], torch.tensor(1e-3 * 12**0.5))  # small gradients pass unchanged


def test_alignment_keeps_batch_norm_statistics_frozen():
    with pytest.warns(UserWarning):
        net = APRNet(APRConfig(width=0.25))
    bn = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bn) == 13 and all(m.training for m in bn)
    before = bn[0].running_mean.clone()
    net.freeze_batch_norm = True
    net.train()
    assert net.training and not any(m.training for m in bn)
    net(torch.rand(1, 3, 64, 64))
    assert torch.equal(bn[0].running_mean, before)  # a batch-1 step leaves the statistics alone
