"""Render probe of a trained map on the GPU check's device: seconds per view and rays/s of the run's
renderer (CUDA synchronised), and the half-precision paths a GPU user meets - the hash grid returning
fp16 (what tiny-cuda-nn's grid gives the torch MLPs outside autocast) and the render under autocast
(fp16 on CUDA, bf16 on the CPU) - each compared with the float32 render of the same query view.

Writes one JSON object (``--output``): ``device``, ``s_per_view``, ``rays_per_s``, ``peak_gpu_mib``
(torch's allocator), ``fp16_grid`` / ``autocast`` {``max_abs_rgb``, ``median_abs_depth_m``,
``finite``}."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from nerfloc_plugins.nerf.field_renderer import FieldRenderer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _difference(out: dict, reference: dict) -> dict:
    return {
        "max_abs_rgb": float(np.abs(out["rgb"] - reference["rgb"]).max()),
        "median_abs_depth_m": float(np.median(np.abs(out["depth"] - reference["depth"]))),
        "finite": bool(np.isfinite(out["rgb"]).all() and np.isfinite(out["depth"]).all()),
    }


@dataclass
class RenderProbe:
    config: Path
    """A run's ``config.yml`` (a Nerfacto-field map: nerfloc-nerfacto, CrossFire, NeRFMatch, PoseMap)."""
    output: Path
    repeats: int = 3

    def main(self) -> None:
        renderer = FieldRenderer(self.config)
        device = next(renderer.model.parameters()).device
        frame = renderer.frames("test")[0]
        renderer.render(frame.c2w, frame.intrinsics)  # warm-up (kernels, caches)
        _sync(device)
        start = time.perf_counter()
        for _ in range(self.repeats):
            reference = renderer.render(frame.c2w, frame.intrinsics)
        _sync(device)
        seconds = (time.perf_counter() - start) / self.repeats
        result = {
            "device": str(device),
            "width": frame.intrinsics.width,
            "height": frame.intrinsics.height,
            "s_per_view": seconds,
            "rays_per_s": frame.intrinsics.width * frame.intrinsics.height / seconds,
        }
        grid = getattr(renderer.model.field, "mlp_base_grid", None)
        if grid is not None:
            full = grid.forward
            grid.forward = lambda x: full(x).half()
            try:
                result["fp16_grid"] = _difference(renderer.render(frame.c2w, frame.intrinsics), reference)
            finally:
                del grid.forward
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        with torch.autocast(device.type, dtype=dtype):
            result["autocast"] = {
                "dtype": str(dtype),
                **_difference(renderer.render(frame.c2w, frame.intrinsics), reference),
            }
        if device.type == "cuda":
            result["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        self.output.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result))


if __name__ == "__main__":
    tyro.cli(RenderProbe).main()
