"""NeuraLoc: SDF rendering weights, losses, teachers, matching graph and a short training run."""

import copy
import math

import numpy as np
import pytest
import torch

from nerfloc_plugins.localize.interface.localizer import MapView, QueryDescription
from nerfloc_plugins.methods.neuraloc import neuraloc_losses as L
from nerfloc_plugins.methods.neuraloc.neuraloc_localizer import NeuraLocLocalizer, NeuraLocLocalizerConfig
from nerfloc_plugins.methods.neuraloc.neuraloc_teachers import NeuraLocTeacherConfig, NeuraLocTeachers, sample_map


def test_bell_weights_peak_at_the_surface_and_are_symmetric():
    sdf = torch.linspace(-1, 1, 201)
    w = L.bell_weights(sdf, truncation=0.1)
    assert int(w.argmax()) == 100 and math.isclose(float(w[100]), 0.25, rel_tol=1e-6)
    assert torch.allclose(w, w.flip(0), atol=1e-7)
    assert bool((w[100:].diff() <= 0).all())  # decreasing away from the surface
    assert float(w[-1]) < 1e-3  # sigma = 1 (one truncation away): negligible


def test_normalised_weights_sum_to_one_and_ignore_surfaces_behind_the_first():
    t = torch.linspace(0.0, 2.0, 41)[None]
    # SDF (truncation units) with a surface at t = 0.5 and a second one at t = 1.5
    sdf = torch.where(t < 1.0, (0.5 - t) / 0.1, (t - 1.5).abs() / 0.1 * torch.sign(1.5 - t)).clamp(-1, 1)
    w = L.normalised_weights(sdf, t, truncation=0.1, first_surface=True)
    assert math.isclose(float(w.sum()), 1.0, rel_tol=1e-5)
    assert float(w[t > 0.7].sum()) < 1e-6
    depth = float((w * t).sum())
    assert abs(depth - 0.5) < 0.01
    w_all = L.normalised_weights(sdf, t, truncation=0.1, first_surface=False)
    assert float(w_all[t > 1.0].sum()) > 0.3  # without the mask the hidden surface takes weight


def test_free_space_and_sdf_losses_hand_values():
    tr = 0.1
    t = torch.tensor([[0.2, 0.5, 0.95, 1.0, 1.05]])
    d = torch.tensor([1.0])
    perfect = ((d[:, None] - t) / tr).clamp(max=1.0)
    fs, sdf = L.free_space_and_sdf_losses(perfect, t, d, tr)
    assert float(fs) < 1e-10 and float(sdf) < 1e-10
    wrong = perfect.clone()
    wrong[0, 0] = 0.0  # free-space sample claims a surface: (0 - 1)^2 over 2 free samples
    wrong[0, 3] = 0.2  # at the surface: (t + 0.02 - d)^2 over 3 samples in the band
    fs, sdf = L.free_space_and_sdf_losses(wrong, t, d, tr)
    assert math.isclose(float(fs), 0.5, rel_tol=1e-5)
    assert math.isclose(float(sdf), 0.02**2 / 3, rel_tol=1e-4)
    # rays without a depth reading do not count
    fs0, sdf0 = L.free_space_and_sdf_losses(wrong, t, torch.tensor([0.0]), tr)
    assert float(fs0) == 0.0 and float(sdf0) == 0.0


def test_distillation_loss_hand_values():
    a = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    assert float(L.distillation_loss(a, a)) < 1e-6
    assert math.isclose(float(L.distillation_loss(-a, a)), 2.0, rel_tol=1e-5)
    assert float(L.distillation_loss(3.0 * a, a)) < 1e-6  # cosine: scale free


def test_similarity_alignment_is_zero_when_distributions_match_and_has_gradient():
    g2 = torch.nn.functional.normalize(torch.randn(32, 16), dim=-1)
    assert abs(float(L.similarity_alignment_loss(g2, g2.clone(), 0.1))) < 1e-5
    g3 = torch.randn(32, 16, requires_grad=True)
    loss = L.similarity_alignment_loss(g2, g3, 0.1)
    assert float(loss.detach()) > 0.1
    loss.backward()
    assert g3.grad is not None and float(g3.grad.abs().sum()) > 0


def _localizer(**kwargs) -> NeuraLocLocalizer:
    loc = object.__new__(NeuraLocLocalizer)  # matching needs no trained map
    loc.config = NeuraLocLocalizerConfig(**kwargs)
    return loc


def _planted(seed: int = 0):
    """20 query keypoints; map = a permutation of them (+noise) and distractors that copy a
    query descriptor but sit in another context."""
    g = torch.Generator().manual_seed(seed)
    n = 20
    desc = torch.nn.functional.normalize(torch.randn(n, 32, generator=g), dim=-1)
    ctx = torch.nn.functional.normalize(torch.randn(n, 8, generator=g), dim=-1)
    perm = torch.randperm(n, generator=g)
    map_desc = torch.nn.functional.normalize(desc[perm] + 0.3 * torch.randn(n, 32, generator=g) / math.sqrt(32), dim=-1)
    map_ctx = ctx[perm]
    # distractors: exact descriptor copies of queries 0..4 with opposite context
    map_desc = torch.cat([map_desc, desc[:5]])
    map_ctx = torch.cat([map_ctx, -ctx[:5]])
    q = QueryDescription(np.zeros((n, 2)), desc, None, context=ctx)  # type: ignore[arg-type]
    v = MapView(np.eye(4), np.zeros((n + 5, 2)), map_desc, np.zeros((n + 5, 3)), None, context=map_ctx)  # type: ignore[arg-type]
    truth = {int(perm[j]): j for j in range(n)}
    return q, v, truth


def test_hungarian_with_context_filter_recovers_planted_assignment():
    q, v, truth = _planted()
    matches = _localizer(context_threshold=0.5, min_score=0.5).match(q, v)
    assert len(matches) == 20
    assert all(truth[int(i)] == int(j) for i, j in matches)
    # without the context term and filter the exact-copy distractors win for queries 0..4
    plain = _localizer(context_weight=0.0, context_threshold=None, min_score=0.5).match(q, v)
    wrong = sum(truth[int(i)] != int(j) for i, j in plain)
    assert wrong >= 4
    # mutual nearest neighbours (ablation) with the same scores also recovers it here
    mnn = _localizer(matching="mnn", min_score=0.5).match(q, v)
    assert all(truth[int(i)] == int(j) for i, j in mnn) and len(mnn) >= 15


def test_aliked_teacher_maps_agree_with_keypoint_descriptors(tmp_path):
    from nerfloc_plugins.data.images import load_rgb
    from nerfloc_plugins.data.synthetic_scene import write_sevenscenes_scene

    write_sevenscenes_scene(tmp_path / "s", width=160, height=120, frames_per_train_seq=1, frames_test=1, supersample=1)
    image = load_rgb(next((tmp_path / "s").rglob("*.color.png")))
    out = NeuraLocTeachers(NeuraLocTeacherConfig(descriptor_stride=2))(image)
    assert out.image_size == (160, 120)
    assert out.descriptor_map.shape == (128, 60, 80) and out.context_map.shape == (192, 16, 20)
    assert len(out.keypoints) > 30
    assert float(out.keypoints[:, 0].max()) < 160 and float(out.keypoints[:, 1].max()) < 120
    dense = sample_map(out.descriptor_map, out.keypoints, out.image_size)
    cos = torch.nn.functional.cosine_similarity(dense, out.keypoint_descriptors)
    assert float(cos.median()) > 0.95
    shuffled = torch.nn.functional.cosine_similarity(dense.roll(7, 0), out.keypoint_descriptors)
    assert float(shuffled.median()) < 0.6


def test_sam_context_needs_a_local_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="sam-checkpoint"):
        NeuraLocTeachers(NeuraLocTeacherConfig(context="sam", sam_checkpoint=tmp_path / "missing.pth"))


def test_sam_context_from_a_kornia_sam(tmp_path):
    """The SAM path with a tiny randomly initialised kornia SAM (real checkpoints: vit_b/l/h)."""
    from kornia.models.sam import Sam, SamConfig

    from nerfloc_plugins.methods.neuraloc.neuraloc_teachers import SamContext

    sam = Sam.from_config(
        SamConfig(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=1, encoder_global_attn_indexes=(0,))
    )
    ctx = SamContext(NeuraLocTeacherConfig(context="sam"), torch.device("cpu"), sam=sam)
    out = ctx(torch.rand(120, 160, 3))
    assert out.shape == (256, 48, 64)  # 1024 / 16 = 64 cells wide; 120 * 1024/160 / 16 = 48 high
    assert torch.allclose(out.norm(dim=0), torch.ones(48, 64), atol=1e-4)


@pytest.mark.slow
def test_few_training_steps_lower_neuraloc_losses(tmp_path, monkeypatch):
    from nerfloc_plugins.method_configs.neuraloc_config import neuraloc_cpu
    from nerfstudio.engine.optimizers import Optimizers

    from nerfloc_plugins.data.synthetic_scene import write_sevenscenes_scene

    monkeypatch.setenv("NERFLOC_CACHE_DIR", str(tmp_path / "cache"))
    scene = tmp_path / "scene"
    write_sevenscenes_scene(scene, width=64, height=48, frames_per_train_seq=4, frames_test=1, supersample=1)
    config = copy.deepcopy(neuraloc_cpu.config)
    config.pipeline.datamanager.dataparser.data = scene
    config.pipeline.datamanager.train_num_rays_per_batch = 512
    torch.manual_seed(0)
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    assert len(pipeline.descriptor_maps) == 8 and len(list((tmp_path / "cache" / "teachers").glob("*.pt"))) == 8
    assert pipeline.descriptor_maps.groups[0].device.type == "cpu" and len(pipeline.keypoints) == 8
    optimizers = Optimizers(config.optimizers, pipeline.get_param_groups())
    history = []
    for step in range(80):
        _, loss, _ = pipeline.get_train_loss_dict(step)
        optimizers.zero_grad_all()
        sum(loss.values()).backward()
        optimizers.optimizer_step_all()
        history.append({k: float(v) for k, v in loss.items()})

    def mean(key, part):
        return float(np.mean([h[key] for h in part]))

    first, last = history[:10], history[-10:]
    for key in ("rgb_loss", "depth_loss", "sdf_loss", "free_space_loss", "distillation_loss"):
        assert mean(key, last) < 0.6 * mean(key, first), (key, mean(key, first), mean(key, last))
    assert mean("kl_loss", last) < mean("kl_loss", first)
    # rendering without depth finds the surface: depth error on a training view is small
    pipeline.eval()
    camera = pipeline.datamanager.train_dataset.cameras[0:1]
    with torch.no_grad():
        out = pipeline.model.get_outputs_for_camera(camera)
    depth_gt = pipeline.datamanager.train_dataset.get_metadata({"image_idx": 0})["depth_image"][..., 0]
    rays = camera.generate_rays(camera_indices=0, keep_shape=True)
    z = out["depth"][..., 0] / rays.metadata["directions_norm"][..., 0]
    ok = depth_gt > 0
    err_m = float(((z - depth_gt)[ok]).abs().median()) * pipeline.model.metres_per_unit
    assert err_m < 0.15, err_m
    assert out["descriptor_pca"].shape == (48, 64, 3) and out["normals"].shape == (48, 64, 3)


def test_context_centring_keeps_the_filter_working_with_a_common_component():
    """Offline context features share a large common component (all cosines high); centring on
    the query's mean context restores the candidate filter."""
    q, v, truth = _planted(seed=1)
    common = 3.0 * torch.nn.functional.normalize(torch.ones(1, 8), dim=-1)
    q.context = torch.nn.functional.normalize(q.context + common, dim=-1)
    v.context = torch.nn.functional.normalize(v.context + common, dim=-1)
    centred = _localizer(context_threshold=0.3, min_score=0.5).match(q, v)
    assert all(truth[int(i)] == int(j) for i, j in centred) and len(centred) == 20
    raw = _localizer(context_threshold=0.3, min_score=0.5, centre_context=False).match(q, v)
    assert sum(truth[int(i)] != int(j) for i, j in raw) >= 4
