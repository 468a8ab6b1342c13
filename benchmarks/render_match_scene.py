"""Benchmark: render-and-match refinement after every localizer, and rendering speed.

For a trained map (``--map``, any nerfloc run whose field renders RGB + depth):
1. **rendering**: every query view rendered at the query resolution with the run's sample schedule
   and with fewer samples per ray (``--samples``): seconds per view, rays/s, PSNR against the
   real image, median |depth - ground truth|;
2. **localization**: the classical baseline alone and followed by render-and-match on ``--map``
   (each of ``--features``, each of ``--samples``), and each run in ``--runs`` (its own localizer,
   default options) alone and followed by render-and-match on its own field.

Writes ``OUT/render_match.json`` and ``OUT/render_match.md``.

    python benchmarks/render_match_scene.py --map outputs/demo_room/nerfloc-nerfacto-cpu/<ts>/config.yml \\
        --runs outputs/demo_room/crossfire-cpu/<ts>/config.yml --output-dir benchmarks/results/render_match
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import tyro

from nerfloc_plugins.data.frames import load_depth_meters
from nerfloc_plugins.data.images import load_rgb
from nerfloc_plugins.localize.pipeline import PipelineConfig
from nerfloc_plugins.localize.render_match import RenderMatchConfig
from nerfloc_plugins.localize.report import results_table, stage_lines
from nerfloc_plugins.nerf.field_renderer import FieldRenderer
from nerfloc_plugins.scripts.localize import Localize
from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline
from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically


def parse_samples(text: str) -> Optional[Tuple[int, ...]]:
    """``"run"`` -> None (the run's schedule), ``"16,8,8"`` -> (16, 8, 8)."""
    return None if text == "run" else tuple(int(v) for v in text.split(","))


@dataclass
class RenderMatchBenchmark:
    map: Path
    """config.yml of the map to render (baseline + render-and-match, rendering speed)."""
    data: Path = Path("examples/demo_room")
    runs: Tuple[Path, ...] = ()
    """Method runs to localize with and without render-and-match on their own field."""
    output_dir: Path = Path("benchmarks/results/render_match")
    features: Tuple[str, ...] = ("aliked", "sift")
    samples: Tuple[str, ...] = ("run", "32,16,16", "16,8,8")
    """Sample settings (proposal levels, NeRF) to time; ``run`` = the run's own schedule."""
    iterations: int = 3
    max_queries: Optional[int] = None
    render_match: RenderMatchConfig = field(default_factory=RenderMatchConfig)
    """Other render-and-match options (iterations, features, samples and map are set per row)."""

    def rendering(self) -> List[dict]:
        renderer = FieldRenderer(self.map)
        parser = renderer.parser
        frames = renderer.frames("test")[: self.max_queries]
        rows = []
        for setting in self.samples:
            seconds, psnr, depth_err, rays = [], [], [], 0
            for frame in frames:
                start = time.perf_counter()
                out = renderer.render(frame.c2w, frame.intrinsics, samples=parse_samples(setting))
                seconds.append(time.perf_counter() - start)
                rays += frame.intrinsics.width * frame.intrinsics.height
                mse = float(np.mean((out["rgb"] - load_rgb(frame.image_path)) ** 2))
                psnr.append(-10 * np.log10(max(mse, 1e-10)))
                if frame.depth_path is not None:
                    size = (frame.intrinsics.width, frame.intrinsics.height)
                    gt = load_depth_meters(
                        frame.depth_path, parser.depth_unit_scale_factor, parser.depth_invalid_values, size
                    )
                    ok = np.isfinite(gt) & (gt > 0)
                    depth_err.append(float(np.median(np.abs(out["depth"][ok] - gt[ok]))))
            rows.append(
                {
                    "samples": setting,
                    "s_per_view": float(np.mean(seconds)),
                    "rays_per_s": rays / max(sum(seconds), 1e-9),
                    "psnr_db": float(np.mean(psnr)),
                    "median_depth_error_m": float(np.median(depth_err)) if depth_err else None,
                }
            )
            print(rows[-1])
        return rows

    def pipeline(self, iterations: int, features: str = "aliked", samples: str = "run", map_: Optional[Path] = None):
        rm = replace(
            self.render_match, iterations=iterations, features=features, samples=parse_samples(samples), map=map_
        )
        return PipelineConfig(render_match=rm)

    def main(self) -> None:
        out = self.output_dir
        baseline_metrics = out / "baseline" / "metrics.json"
        rendering = self.rendering()
        rows = []
        base = LocalizeBaseline(
            data=self.data, output_dir=out / "baseline", max_queries=self.max_queries, map_matching="views",
            pipeline=PipelineConfig(),
        ).main()  # fmt: skip
        rows.append(base)
        for features in self.features:
            for samples in self.samples:
                tag = f"baseline+rm-{features}-{samples.replace(',', '_')}"
                metrics = LocalizeBaseline(
                    data=self.data,
                    output_dir=out / tag,
                    max_queries=self.max_queries,
                    pipeline=self.pipeline(self.iterations, features, samples, self.map),
                    map_matching="views",
                ).main()
                metrics["method"] = f"baseline + render-match ({features}, samples {samples})"
                rows.append(metrics)
        for run in self.runs:
            for iterations in (0, self.iterations):
                tag = f"{run.parent.parent.name}{'+rm' if iterations else ''}"
                metrics = Localize(
                    load_config=run,
                    output_dir=out / tag,
                    max_queries=self.max_queries,
                    pipeline=self.pipeline(iterations, self.features[0], self.samples[-1]),
                    baseline_metrics=baseline_metrics,
                ).main()
                if iterations:
                    metrics["method"] += f" + render-match ({self.features[0]}, samples {self.samples[-1]})"
                rows.append(metrics)
        result = {"map": str(self.map), "rendering": rendering, "localization": rows}
        write_json_atomically(result, out / "render_match.json")
        speed = "\n".join(
            f"| {r['samples']} | {r['s_per_view']:.2f} | {r['rays_per_s']:.0f} | {r['psnr_db']:.2f} | "
            f"{100 * (r['median_depth_error_m'] or float('nan')):.1f} |"
            for r in rendering
        )
        text = (
            f"# Render-and-match refinement on {self.data.name}\n\nMap: `{self.map}`\n\n"
            "| samples per ray | s / view | rays / s | PSNR dB | median depth error cm |\n"
            "| --- | --- | --- | --- | --- |\n"
            f"{speed}\n\n{results_table(rows)}\n\nPer stage (mean):\n{stage_lines(rows)}\n"
        )
        write_text_atomically(text, out / "render_match.md")
        print(text)


if __name__ == "__main__":
    tyro.cli(RenderMatchBenchmark).main()
