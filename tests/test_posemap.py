"""PoseMap (NeRF-P + APRNet): pose decoding, differentiable PoseMaps, perturbations, training."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from nerfloc_plugins.models.apr import APRConfig, APRNet, PerturbationConfig, perturb_poses, pose_loss, posemap_loss
from nerfloc_plugins.models.posemap import PoseDecoder, PoseMapConfig, PoseMapRenderer, orthonormalise_pose


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


@pytest.mark.slow
def test_posemap_gradient_reaches_the_predicted_pose_and_nerf_p_trains(small_nerf_run):
    from nerfloc_plugins.engine.posemap_trainer import NerfPTrainConfig, train_nerf_p
    from nerfloc_plugins.localize.field_renderer import FieldRenderer

    renderer = FieldRenderer(small_nerf_run)
    torch.manual_seed(0)
    posemaps = PoseMapRenderer(renderer.model, PoseMapConfig(stride=8, feature_dim=32, branch_hidden_dim=32))
    frames = renderer.frames("train")
    intr = frames[0].intrinsics
    poses = torch.stack([torch.from_numpy(renderer.c2w_ns_opencv(f.c2w)[:3]).float() for f in frames])
    target = posemaps(poses[:2], intr).detach()
    assert target.shape == (2, 32, 6, 8)
    xi = torch.zeros(2, 6, requires_grad=True)
    from nerfloc_plugins.localize.refine import perturb

    moved = torch.stack([perturb(p, x) for p, x in zip(poses[:2], xi + torch.tensor([0.05, 0, 0, 0, 0.03, 0]))])
    loss = posemap_loss(posemaps(moved, intr), target)
    loss.backward()
    assert float(loss.detach()) > 0 and xi.grad is not None
    assert torch.isfinite(xi.grad).all() and float(xi.grad.abs().sum()) > 0
    # the NeRF stays frozen: no gradient into its parameters
    assert all(p.grad is None for p in renderer.model.parameters())

    decoder = PoseDecoder(PoseMapConfig(feature_dim=32))
    history = train_nerf_p(
        posemaps, decoder, poses, intr, NerfPTrainConfig(iterations=200, batch_size=len(poses), lr=3e-3)
    )
    first, last = np.mean(history[:5]), np.mean(history[-5:])
    # measured on the example scene's CPU NeRF (25 poses): 1.78 -> 0.77 in 150 full-batch steps
    assert last < 0.6 * first, (first, last)
    with torch.no_grad():
        err = pose_loss(orthonormalise_pose(decoder(posemaps(poses, intr))), poses)
    assert math.isfinite(float(err)) and float(err) < 0.6 * first
