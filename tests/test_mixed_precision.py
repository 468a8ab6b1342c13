"""Mixed precision of the GPU presets: which presets train under autocast, and the losses of those
that do computed under autocast agree with float32 (on the CPU autocast gives bfloat16, which keeps
fewer mantissa bits than the float16 CUDA gives: a stricter test of the arithmetic, not of range)."""

import copy
import math

import pytest
import torch


def test_gpu_presets_train_in_mixed_precision_where_it_is_safe():
    from nerfstudio.configs.method_configs import all_methods

    mixed = {name for name, config in all_methods.items() if getattr(config, "mixed_precision", False)}
    gpu = {"nerfloc-nerfacto", "crossfire", "nerfmatch", "nerfmatch-mini", "posemap-nerf", "posemap-apr"}
    assert gpu <= mixed
    # NeuraLoc's eikonal term differentiates the SDF through the hash grid twice: float32 until
    # it has been measured on a GPU; CPU presets never (Nerfstudio turns autocast off on the CPU)
    assert "neuraloc" not in mixed
    assert not {name for name in mixed if name.endswith("-cpu")}


def _close(mixed: float, reference: float, relative: float) -> bool:
    return math.isfinite(mixed) and abs(mixed - reference) <= relative * abs(reference) + 1e-3


@pytest.mark.slow
def test_nerfmatch_losses_and_gradients_under_autocast(small_nerf_run):
    from nerfloc_plugins.method_configs.nerfmatch_config import nerfmatch_mini_cpu

    config = copy.deepcopy(nerfmatch_mini_cpu.config)
    config.pipeline.datamanager.data = small_nerf_run
    config.pipeline.datamanager.min_overlap = 0.1
    torch.manual_seed(0)
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    batch = pipeline.datamanager.collate(pipeline.datamanager.train_pairs()[:4])

    def losses() -> dict:
        out = pipeline.model(batch)
        return pipeline.model.get_loss_dict(out, batch)

    pipeline.eval()
    with torch.no_grad():
        reference = {k: float(v) for k, v in losses().items()}
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = {k: float(v) for k, v in losses().items()}
    assert set(mixed) == set(reference) and reference["coarse_loss"] > 0
    for name in reference:
        assert _close(mixed[name], reference[name], 0.1), (name, mixed[name], reference[name])

    pipeline.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total = sum(losses().values())
    total.backward()
    grads = [p.grad for p in pipeline.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.slow
def test_posemap_nerf_pose_loss_under_autocast(small_nerf_run):
    from nerfstudio.configs.method_configs import all_methods

    from nerfloc_plugins.methods.posemap.posemap_aprnet import pose_loss

    config = copy.deepcopy(all_methods["posemap-nerf-cpu"])
    config.pipeline.datamanager.data = small_nerf_run
    torch.manual_seed(0)
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    poses = pipeline.datamanager.train_poses

    def loss() -> torch.Tensor:
        return pose_loss(pipeline._model({"poses": poses})["raw"], poses)

    with torch.no_grad():
        reference = float(loss())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = float(loss())
    assert reference > 0 and _close(mixed, reference, 0.05), (mixed, reference)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total = loss()
    total.backward()
    grads = [p.grad for p in pipeline.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
