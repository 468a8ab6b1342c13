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

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import List, Optional, Tuple

import tyro
from render_speed import parse_sampling, speed_table, time_rendering  # noqa: E402  (benchmarks/)

from nerfloc_plugins.localize.pipeline import PipelineConfig
from nerfloc_plugins.localize.render_match import RenderMatchConfig
from nerfloc_plugins.localize.report import results_table, stage_lines
from nerfloc_plugins.nerf.field_renderer import FieldRenderer
from nerfloc_plugins.scripts.localize import Localize
from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline
from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically


@dataclass
class RenderMatchBenchmark:
    map: Path
    """config.yml of the map to render (baseline + render-and-match, rendering speed)."""
    data: Path = Path("examples/demo_room")
    runs: Tuple[Path, ...] = ()
    """Method runs to localize with and without render-and-match on their own field."""
    output_dir: Path = Path("benchmarks/results/render_match")
    features: Tuple[str, ...] = ("aliked", "sift")
    samples: Tuple[str, ...] = ("run", "band:8,8,8", "32,16,16")
    """Ray-sampling settings to time and localize with (``run``, ``P,..,N``, ``band:P,..,N``; see
    benchmarks/render_speed.py)."""
    iterations: int = 3
    max_queries: Optional[int] = None
    render_match: RenderMatchConfig = field(default_factory=RenderMatchConfig)
    """Other render-and-match options (iterations, features, samples and map are set per row)."""

    def rendering(self) -> List[dict]:
        renderer = FieldRenderer(self.map)
        return time_rendering(renderer, renderer.frames("test")[: self.max_queries], self.samples)

    def pipeline(self, iterations: int, features: str = "aliked", samples: str = "run", map_: Optional[Path] = None):
        rm = replace(
            self.render_match, iterations=iterations, features=features, sampling=parse_sampling(samples), map=map_
        )
        return PipelineConfig(render_match=rm)

    def main(self) -> None:
        out = self.output_dir
        baseline_metrics = out / "baseline" / "metrics.json"
        rendering = self.rendering()
        rows = []
        base = LocalizeBaseline(
            fresh=True,
            data=self.data, output_dir=out / "baseline", max_queries=self.max_queries, map_matching="views",
            pipeline=PipelineConfig(),
        ).main()  # fmt: skip
        rows.append(base)
        for features in self.features:
            for samples in self.samples:
                tag = f"baseline+rm-{features}-{samples.replace(',', '_')}"
                metrics = LocalizeBaseline(
                    fresh=True,
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
                    fresh=True,
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
        text = (
            f"# Render-and-match refinement on {self.data.name}\n\nMap: `{self.map}`\n\n"
            f"{speed_table(rendering)}\n\n{results_table(rows)}\n\nPer stage (mean):\n{stage_lines(rows)}\n"
        )
        write_text_atomically(text, out / "render_match.md")
        print(text)


if __name__ == "__main__":
    tyro.cli(RenderMatchBenchmark).main()
