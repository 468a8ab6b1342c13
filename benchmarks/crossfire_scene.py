"""Benchmark: CrossFire on a scene beside the classical baseline.

Trains ``crossfire-cpu`` (or ``crossfire`` on a GPU) unless ``--load-config`` points at a run,
localizes the query split with ``ns-localize``'s pipeline at each rendered-map resolution of
``--render-scales`` (1 = the paper's, the CNN map's), runs the baseline, and writes
``OUT/crossfire.json`` and ``OUT/crossfire.md`` (median cm / deg, recalls, per-stage times,
training time, model size).

    python benchmarks/crossfire_scene.py --data examples/demo_room --output-dir benchmarks/results
    python benchmarks/crossfire_scene.py --descriptor-loss hinge ...   # the paper's loss on the CPU preset
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

import tyro

from nerfloc_plugins.localize.pipeline import PipelineConfig, RefineConfig
from nerfloc_plugins.localize.report import results_table, stage_lines
from nerfloc_plugins.methods.crossfire.crossfire_localizer import CrossFireLocalizerConfig
from nerfloc_plugins.scripts.localize import Localize
from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline
from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically


@dataclass
class CrossFireBenchmark:
    data: Path = Path("examples/demo_room")
    output_dir: Path = Path("benchmarks/results")
    method: Literal["crossfire-cpu", "crossfire"] = "crossfire-cpu"
    load_config: Optional[Path] = None
    """Skip training and use this run."""
    max_num_iterations: Optional[int] = None
    iterations: int = 3
    """Localization iterations (paper: 3)."""
    render_scales: Tuple[int, ...] = (1, 2)
    """Rendered descriptor-map resolutions relative to the CNN map (one result row each)."""
    descriptor_loss: Optional[Literal["hinge", "contrastive"]] = None
    """Override the preset's descriptor loss when training."""

    def train(self) -> tuple[Path, float]:
        runs = self.output_dir / "runs"
        cmd = [sys.executable, "-m", "nerfstudio.scripts.train", self.method, "--output-dir", str(runs),
               "--experiment-name", self.data.name, "--timestamp", "bench", "--viewer.quit-on-train-completion", "True"]  # fmt: skip
        if self.max_num_iterations:
            cmd += ["--max-num-iterations", str(self.max_num_iterations)]
        if self.descriptor_loss:
            cmd += ["--pipeline.model.descriptor-loss", self.descriptor_loss]
        cmd += ["sevenscenes-data", "--data", str(self.data)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        return runs / self.data.name / self.method / "bench" / "config.yml", time.perf_counter() - start

    def main(self) -> None:
        train_s = None
        config = self.load_config
        if config is None:
            config, train_s = self.train()
        baseline = LocalizeBaseline(fresh=True, data=self.data, output_dir=self.output_dir / "baseline_run").main()
        runs = []
        for scale in self.render_scales:
            metrics = Localize(
                fresh=True,
                load_config=config,
                output_dir=self.output_dir / f"crossfire_run_x{scale}",
                pipeline=PipelineConfig(refine=RefineConfig(iterations=self.iterations - 1)),
                crossfire=CrossFireLocalizerConfig(render_scale=scale),
                baseline_metrics=self.output_dir / "baseline_run" / "metrics.json",
            ).main()
            metrics["method"] = f"crossfire (rendered map x{scale})"
            runs.append(metrics)
        crossfire = runs[0]
        ckpts = sorted((config.parent / "nerfstudio_models").glob("*.ckpt"))
        result = {
            "crossfire": {f"render_scale_{s}": m for s, m in zip(self.render_scales, runs)},
            "baseline": baseline,
            "training_time_s": train_s,
            "checkpoint_mb": ckpts[-1].stat().st_size / 2**20 if ckpts else None,
            "config": str(config),
        }
        write_json_atomically(result, self.output_dir / "crossfire.json")
        stages = stage_lines(runs)
        text = (
            f"# CrossFire on {self.data.name} ({self.method})\n\n{results_table(runs + [baseline])}\n\n"
            f"Per stage (mean):\n{stages}\n\n"
            f"Field parameters {crossfire['map_size_mb']:.1f} MB, checkpoint {result['checkpoint_mb'] or 0:.1f} MB"
            + (f", training {train_s:.0f} s" if train_s else "")
            + "\n"
        )
        write_text_atomically(text, self.output_dir / "crossfire.md")
        print(text)


if __name__ == "__main__":
    tyro.cli(CrossFireBenchmark).main()
