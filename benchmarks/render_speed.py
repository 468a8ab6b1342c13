"""Benchmark: rendering speed and quality of a trained map under each ray-sampling setting.

Every query view of the run's dataset (``--max-queries`` of them) is rendered at the query
resolution with each ``--settings`` entry:

* ``run``            the run's own sampling schedule (the reference);
* ``32,16,16``       fewer samples per ray in one pass (proposal levels, then NeRF);
* ``band:8,8,8``     depth-guided coarse-to-fine (coarse pass with the run's schedule at 1/4
  resolution, then every pixel sampled inside its depth band with these samples);
  ``band:8,8,8@32,16,16`` also gives the coarse pass fewer samples.

Reported per setting: seconds per view, rays per second (full-resolution pixels / s), PSNR
against the real image and against the ``run`` rendering, median |depth - sensor depth| and
median |depth - run depth| (mm), and the peak accelerator memory on CUDA.

Writes ``OUT/render_speed.json`` and ``OUT/render_speed.md``.

    python benchmarks/render_speed.py --map outputs/office/nerfloc-nerfacto-cpu/<ts>/config.yml \\
        --output-dir benchmarks/results/render_speed
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import tyro

from nerfloc_plugins.data.frames import PosedFrame, load_depth_meters
from nerfloc_plugins.data.images import load_rgb
from nerfloc_plugins.localize.outputs.tables import number
from nerfloc_plugins.nerf.field_renderer import FieldRenderer
from nerfloc_plugins.nerf.render_sampling import RenderSampling
from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically


def parse_sampling(text: str) -> RenderSampling:
    """``run`` | ``P,..,N`` | ``band:P,..,N[@P,..,N]`` -> :class:`RenderSampling` (module docstring)."""

    def numbers(part: str) -> Optional[Tuple[int, ...]]:
        return None if part == "run" else tuple(int(v) for v in part.split(","))

    try:
        if text.startswith("band:"):
            band, _, coarse = text[len("band:") :].partition("@")
            return RenderSampling(samples=numbers(coarse or "run"), band_samples=numbers(band))
        return RenderSampling(samples=numbers(text))
    except ValueError:
        raise SystemExit(f"error: --settings {text!r}: expected run, P,..,N or band:P,..,N[@P,..,N]") from None


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10 * np.log10(max(float(np.mean((a - b) ** 2)), 1e-10)))


def time_rendering(renderer: FieldRenderer, frames: Sequence[PosedFrame], settings: Sequence[str]) -> List[Dict]:
    """One row per setting (see module docstring); the ``run`` renderings are the reference."""
    parser = renderer.parser
    reference = [renderer.render(f.c2w, f.intrinsics, sampling=RenderSampling()) for f in frames]
    rows = []
    for setting in settings:
        sampling = parse_sampling(setting)
        seconds, psnr_real, psnr_run, depth_err, depth_vs_run, rays = [], [], [], [], [], 0
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        for frame, ref in zip(frames, reference):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = renderer.render(frame.c2w, frame.intrinsics, sampling=sampling)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
            rays += frame.intrinsics.width * frame.intrinsics.height
            psnr_real.append(psnr(out["rgb"], load_rgb(frame.image_path)))
            psnr_run.append(psnr(out["rgb"], ref["rgb"]))
            depth_vs_run.append(float(np.median(np.abs(out["depth"] - ref["depth"]))))
            if frame.depth_path is not None:
                size = (frame.intrinsics.width, frame.intrinsics.height)
                gt = load_depth_meters(
                    frame.depth_path, parser.depth_unit_scale_factor, parser.depth_invalid_values, size
                )
                ok = np.isfinite(gt) & (gt > 0)
                depth_err.append(float(np.median(np.abs(out["depth"][ok] - gt[ok]))))
        rows.append(
            {
                "setting": setting,
                "sampling": sampling.describe(),
                "s_per_view": float(np.mean(seconds)),
                "rays_per_s": rays / max(sum(seconds), 1e-9),
                "psnr_db": float(np.mean(psnr_real)),
                "psnr_vs_run_db": float(np.mean(psnr_run)),
                "median_depth_error_mm": 1000 * float(np.median(depth_err)) if depth_err else None,
                "median_depth_vs_run_mm": 1000 * float(np.median(depth_vs_run)),
                "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
            }
        )
        print(rows[-1])
    return rows


def speed_table(rows: Sequence[Dict]) -> str:
    lines = [
        "| sampling | s / view | rays / s | PSNR dB | PSNR vs run dB | depth error mm | depth vs run mm | GPU MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['sampling']} | {r['s_per_view']:.2f} | {r['rays_per_s']:.0f} | {r['psnr_db']:.2f} | "
            f"{r['psnr_vs_run_db']:.1f} | {number(r['median_depth_error_mm'], '.1f')} | "
            f"{r['median_depth_vs_run_mm']:.1f} | {number(r['peak_gpu_mib'], '.0f')} |"
        )
    return "\n".join(lines)


@dataclass
class RenderSpeedBenchmark:
    map: Path
    """config.yml of the trained run to render (Nerfacto-based for sample settings other than run)."""
    output_dir: Path = Path("benchmarks/results/render_speed")
    settings: Tuple[str, ...] = ("run", "32,16,16", "16,8,8", "band:16,8,16", "band:8,8,8", "band:8,8,8@32,16,16")
    max_queries: int = 8

    def main(self) -> Dict:
        renderer = FieldRenderer(self.map)
        frames = renderer.frames("test")[: self.max_queries]
        if not frames:
            raise SystemExit(f"error: {self.map}: the run's dataset has no test frames to render")
        rows = time_rendering(renderer, frames, self.settings)
        device = (
            torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
        )
        size = f"{frames[0].intrinsics.width}x{frames[0].intrinsics.height}"
        result = {"map": str(self.map), "device": device, "views": len(frames), "size": size, "rows": rows}
        write_json_atomically(result, self.output_dir / "render_speed.json")
        text = (
            f"# Rendering speed of `{self.map}`\n\n{len(frames)} query views at {size}, {device}.\n\n"
            f"{speed_table(rows)}\n"
        )
        write_text_atomically(text, self.output_dir / "render_speed.md")
        print(text)
        return result


if __name__ == "__main__":
    tyro.cli(RenderSpeedBenchmark).main()
