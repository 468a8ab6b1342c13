"""CrossFire building blocks: losses on hand-computed tensors, CNN shape, view-independent descriptors."""

import math

import pytest
import torch
from nerfstudio.cameras.rays import Frustums, RaySamples

from nerfloc_plugins.methods.crossfire import crossfire_losses as L
from nerfloc_plugins.methods.crossfire.crossfire_cnn import CrossFireCNN
from nerfloc_plugins.methods.crossfire.crossfire_field import CrossFireField


def test_positive_loss_hand_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [1.0, 0.0], [-1.0, -1.0]])  # cos = 1, 0, -1
    assert float(L.positive_loss(a, b)) == pytest.approx((0 + 1 + 2) / 3)


def test_distance_margin_shape():
    origin = torch.zeros(4, 3)
    pts = torch.tensor([[0.0, 0, 0], [0.25, 0, 0], [0.5, 0, 0], [2.0, 0, 0]])
    t = L.distance_margin(pts, origin, lam=2.0)
    assert torch.allclose(t, torch.tensor([1.0, 0.5, 0.0, 0.0]))


def test_negative_loss_zero_for_far_dissimilar_and_for_near_pairs():
    xyz = torch.tensor([[0.0, 0, 0], [10.0, 0, 0]])
    swap = torch.tensor([[1, 0]])
    orth_img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    orth_ren = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # far apart (t = 0) and orthogonal (cos = 0): nothing to push
    assert float(L.negative_loss(orth_img, orth_ren, xyz, lam=1.0, permutations=swap)) == 0.0
    # far apart but identical descriptors: loss = cos = 1 per pair
    same = torch.ones(2, 2)
    assert float(L.negative_loss(same, same, xyz, lam=1.0, permutations=swap)) == pytest.approx(1.0)
    # the same pair at distance 0.3 with lam = 1: margin 0.7 -> loss 0.3
    near = torch.tensor([[0.0, 0, 0], [0.3, 0, 0]])
    assert float(L.negative_loss(same, same, near, lam=1.0, permutations=swap)) == pytest.approx(0.3)


def test_negative_loss_has_no_gradient_into_geometry():
    xyz = torch.tensor([[0.0, 0, 0], [0.3, 0, 0]], requires_grad=True)
    desc = torch.ones(2, 2, requires_grad=True)
    L.negative_loss(desc, desc, xyz, lam=1.0, permutations=torch.tensor([[1, 0]])).backward()
    assert xyz.grad is None and desc.grad is not None


def test_contrastive_loss_hand_values_and_distance_mask():
    eye = torch.eye(2)
    far = torch.tensor([[0.0, 0, 0], [10.0, 0, 0]])
    tau = 0.5
    # orthogonal, far apart: each row is softmax([1/tau, 0]) -> CE = log(1 + exp(-1/tau))
    expected = math.log(1 + math.exp(-1 / tau))
    assert float(L.contrastive_loss(eye, eye, far, lam=1.0, temperature=tau)) == pytest.approx(expected)
    # the same pair closer than 1 / lam is not a negative: nothing left to separate
    near = torch.tensor([[0.0, 0, 0], [0.3, 0, 0]])
    assert float(L.contrastive_loss(eye, eye, near, lam=1.0, temperature=tau)) == pytest.approx(0.0, abs=1e-6)
    # swapped correspondences are penalised: CE = log(1 + exp(1/tau))
    swapped = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    worse = math.log(1 + math.exp(1 / tau))
    assert float(L.contrastive_loss(eye, swapped, far, lam=1.0, temperature=tau)) == pytest.approx(worse)


def test_contrastive_loss_subsamples_and_has_no_gradient_into_geometry():
    g = torch.Generator().manual_seed(0)
    desc = torch.randn(50, 8, generator=g, requires_grad=True)
    xyz = torch.randn(50, 3, generator=g, requires_grad=True)
    loss = L.contrastive_loss(desc, desc, xyz, lam=10.0, max_cells=20, generator=g)
    loss.backward()
    assert xyz.grad is None and int((desc.grad.abs().sum(dim=1) > 0).sum()) == 20


def test_dssim_and_depth_tv():
    img = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(0))
    assert float(L.dssim(img, img)) == pytest.approx(0.0, abs=1e-6)
    assert float(L.dssim(img, 1 - img)) > 0.3
    flat = torch.full((20, 20), 2.0)
    assert float(L.depth_tv_patches(flat)) == 0.0
    ramp = torch.arange(20.0)[None].repeat(20, 1)  # +1 per column
    assert float(L.depth_tv_patches(ramp, generator=torch.Generator().manual_seed(0))) == pytest.approx(1.0)


def test_cnn_has_eight_conv_layers_and_stride_four():
    cnn = CrossFireCNN(descriptor_dim=32)
    assert cnn.num_conv_layers == 8
    assert cnn(torch.rand(2, 3, 120, 160)).shape == (2, 32, 30, 40)
    assert cnn(torch.rand(1, 3, 50, 66)).shape == (1, 32, 12, 16)
    centres = CrossFireCNN.feature_pixel_centres(120, 160)
    assert (
        centres.shape == (30, 40, 2) and centres[0, 0].tolist() == [2.0, 2.0] and centres[1, 2].tolist() == [10.0, 6.0]
    )


def test_descriptor_head_ignores_view_direction():
    torch.manual_seed(0)
    field = CrossFireField(
        torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), num_images=2, implementation="torch",
        log2_hashmap_size=12, num_levels=4, max_res=64, descriptor_dim=16,
    )  # fmt: skip
    n = 5
    origins = torch.zeros(n, 1, 3)
    starts, ends = torch.full((n, 1, 1), 0.4), torch.full((n, 1, 1), 0.6)
    dirs_a = torch.nn.functional.normalize(torch.randn(n, 1, 3), dim=-1)
    # same sample positions reached from other origins along other directions
    positions = origins + dirs_a * 0.5
    dirs_b = torch.nn.functional.normalize(torch.randn(n, 1, 3), dim=-1)
    origins_b = positions - dirs_b * 0.5

    def samples(o, d, cam):
        frustums = Frustums(origins=o, directions=d, starts=starts, ends=ends, pixel_area=torch.ones(n, 1, 1))
        return RaySamples(frustums=frustums, camera_indices=torch.full((n, 1, 1), cam))

    with torch.no_grad():
        _, _, fa = field.density_and_features(samples(origins, dirs_a, 0), ("hash", "geo"))
        _, _, fb = field.density_and_features(samples(origins_b, dirs_b, 1), ("hash", "geo"))
        da, db = field.descriptors(fa), field.descriptors(fb)
        out_a = field.get_outputs(samples(origins, dirs_a, 0), density_embedding=fa["geo"])
        out_b = field.get_outputs(samples(origins_b, dirs_b, 1), density_embedding=fb["geo"])
    assert da.shape == (n, 1, 16)
    assert torch.allclose(da, db, atol=1e-5)
    # while the colour does depend on direction/appearance
    rgb_a = next(v for k, v in out_a.items() if k.value == "rgb")
    rgb_b = next(v for k, v in out_b.items() if k.value == "rgb")
    assert not torch.allclose(rgb_a, rgb_b, atol=1e-4)
    assert math.isfinite(float(da.sum()))


def eval_losses(pipeline, idx: int = 0) -> dict:
    """CrossFire's image losses on training image ``idx`` (no proposal terms, no grad)."""
    dm = pipeline.datamanager
    batch = dm.cached_train[idx]  # loads the cache (and the cameras) on first use
    camera = dm.train_cameras[idx : idx + 1].to(pipeline.device)
    camera.metadata = {"cam_idx": idx}
    pipeline.model.eval()
    with torch.no_grad():
        out = pipeline.model(camera)
        loss = pipeline.model.get_loss_dict(out, batch, pipeline.model.get_metrics_dict(out, batch))
    pipeline.model.train()
    return {k: float(v) for k, v in loss.items()}


@pytest.mark.slow
@pytest.mark.parametrize("descriptor_loss", ["hinge", "contrastive"])
def test_few_training_steps_lower_crossfire_losses(tmp_path, descriptor_loss, pipeline_trainer):
    import copy

    from nerfloc_plugins.method_configs.crossfire_config import crossfire_cpu

    from nerfloc_plugins.data.synthetic_scene import write_sevenscenes_scene

    scene = tmp_path / "scene"
    write_sevenscenes_scene(scene, width=64, height=48, frames_per_train_seq=4, frames_test=1, supersample=1)
    config = copy.deepcopy(crossfire_cpu.config)
    config.pipeline.datamanager.dataparser.data = scene
    config.pipeline.model.descriptor_loss = descriptor_loss
    pipeline, train = pipeline_trainer(config, 60)
    before = eval_losses(pipeline)
    train()
    after = eval_losses(pipeline)
    assert after["rgb_loss"] < 0.7 * before["rgb_loss"], (before, after)
    desc_before = sum(v for k, v in before.items() if k.startswith("descriptor_"))
    desc_after = sum(v for k, v in after.items() if k.startswith("descriptor_"))
    assert any(k.startswith(f"descriptor_{'pos' if descriptor_loss == 'hinge' else 'contrastive'}") for k in after)
    assert desc_after < 0.8 * desc_before, (before, after)
    # the viewer's PCA colouring was fitted and maps descriptors into [0, 1]
    assert bool(pipeline.model.descriptor_pca.fitted)
    if descriptor_loss == "contrastive":
        check_viewer_similarity_pick(pipeline)


def check_viewer_similarity_pick(pipeline) -> None:
    """A click picks the descriptor along its ray; the similarity map is 1 on that ray."""
    from nerfstudio.viewer.viewer_elements import ViewerClick

    model = pipeline.model
    model.eval()
    camera = pipeline.datamanager.train_cameras[0:1].to(pipeline.device)
    rays = camera.generate_rays(camera_indices=0, keep_shape=True)
    centre = rays[rays.shape[0] // 2, rays.shape[1] // 2 : rays.shape[1] // 2 + 1]
    o, d = centre.origins[0].tolist(), centre.directions[0].tolist()
    assert "descriptor_similarity" not in model.get_outputs(model.collider(centre))
    model.pick_descriptor(ViewerClick(origin=tuple(o), direction=tuple(d), screen_pos=(0.5, 0.5)))
    with torch.no_grad():
        out = model.get_outputs_for_camera(camera)
    sim = out["descriptor_similarity"][..., 0]
    assert sim.shape == (camera.height.item(), camera.width.item())
    assert float(sim[sim.shape[0] // 2, sim.shape[1] // 2]) > 0.99
    assert float(sim.min()) >= 0.0 and float(sim.median()) < 0.9
    model.train()
