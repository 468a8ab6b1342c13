"""Benchmark: the classical baseline on a scene (default: the shipped example room).

Writes ``OUT/baseline.json`` (metrics + per-stage times) and ``OUT/baseline.md`` (table).
Every method benchmark reports its numbers beside these.

    python benchmarks/baseline_scene.py --data examples/demo_room --output-dir benchmarks/results
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from nerfloc_plugins.localize.report import results_table
from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline
from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically


@dataclass
class BaselineBenchmark:
    data: Path = Path("examples/demo_room")
    output_dir: Path = Path("benchmarks/results")
    device: str = "cpu"

    def main(self) -> None:
        start = time.perf_counter()
        run = LocalizeBaseline(
            fresh=True, data=self.data, output_dir=self.output_dir / "baseline_run", device=self.device
        )
        metrics = run.main()
        metrics["wall_time_s"] = time.perf_counter() - start
        write_json_atomically(metrics, self.output_dir / "baseline.json")
        stages = " | ".join(f"{k} {1000 * v['mean_s']:.1f} ms" for k, v in metrics["timings"].items())
        text = f"# Classical baseline on {self.data.name} ({self.device})\n\n{results_table([metrics])}\n\nPer stage (mean): {stages}\n"
        write_text_atomically(text, self.output_dir / "baseline.md")
        print(text)


if __name__ == "__main__":
    tyro.cli(BaselineBenchmark).main()
