"""Half-precision hash features (what tiny-cuda-nn's grid returns) through the torch MLPs of the
nerfloc-nerfacto field, outside autocast: every render (viewer, eval, FieldRenderer, refinement)."""

from pathlib import Path

import numpy as np
import pytest

from nerfloc_plugins.nerf.field_renderer import FieldRenderer


@pytest.mark.slow
def test_an_fp16_hash_grid_renders_like_the_float32_one(tiny_run: Path, monkeypatch):
    import torch

    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        renderer = FieldRenderer(tiny_run)
        assert torch.backends.cuda.matmul.allow_tf32  # loading a run enables TF32 matmuls on CUDA
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    frame = renderer.frames("train")[0]
    reference = renderer.render(frame.c2w, frame.intrinsics)
    grid = renderer.model.field.mlp_base_grid
    full = grid.forward
    calls = []
    monkeypatch.setattr(grid, "forward", lambda x: calls.append(1) or full(x).half())  # tiny-cuda-nn's dtype
    half = renderer.render(frame.c2w, frame.intrinsics)
    assert calls and half["rgb"].dtype == np.float32
    assert np.abs(half["rgb"] - reference["rgb"]).max() < 0.02
    assert np.median(np.abs(half["depth"] - reference["depth"])) < 0.01


@pytest.mark.slow
def test_cpu_bfloat16_autocast_renders_like_float32(tiny_run: Path):
    """Mixed precision on the CPU (bfloat16 autocast, what ``--mixed-precision`` gives a CPU run's
    matmuls): the renders a map serves keep their colours and depths."""
    import torch

    renderer = FieldRenderer(tiny_run)
    frame = renderer.frames("train")[0]
    reference = renderer.render(frame.c2w, frame.intrinsics)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = renderer.render(frame.c2w, frame.intrinsics)
    assert mixed["rgb"].dtype == np.float32 and mixed["depth"].dtype == np.float64
    assert np.abs(mixed["rgb"] - reference["rgb"]).mean() < 0.02
    assert np.median(np.abs(mixed["depth"] - reference["depth"])) < 0.02
