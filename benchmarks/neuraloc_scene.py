"""Benchmark: NeuraLoc on a scene beside the classical baseline, with Table IV ablations.

Trains ``neuraloc-cpu`` (``--method neuraloc`` on a GPU) unless ``--load-config`` points at a
run; ``--kl-ablation`` also trains (or ``--no-kl-config`` reuses) a run without L_kl.  Localizes
the query split with the default matching graph and the cheap ablations (no context candidate
filter, mutual nearest neighbours instead of Hungarian, context also in the score), runs the baseline and
writes ``OUT/neuraloc.json`` and ``OUT/neuraloc.md``: median cm / deg, recalls, per-stage times,
training time, parameter and checkpoint sizes.

    python benchmarks/neuraloc_scene.py --data examples/demo_room --output-dir benchmarks/results/neuraloc
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Optional

import tyro

from nerfloc_plugins.localize.pipeline import PipelineConfig, RefineConfig
from nerfloc_plugins.localize.report import results_table, stage_lines
from nerfloc_plugins.methods.neuraloc.neuraloc_localizer import NeuraLocLocalizerConfig
from nerfloc_plugins.scripts.localize import Localize
from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline
from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically


@dataclass
class NeuraLocBenchmark:
    data: Path = Path("examples/demo_room")
    output_dir: Path = Path("benchmarks/results/neuraloc")
    method: Literal["neuraloc-cpu", "neuraloc"] = "neuraloc-cpu"
    load_config: Optional[Path] = None
    """Skip training and use this run."""
    kl_ablation: bool = False
    """Also train a run with ``--pipeline.model.kl-mult 0`` (Fig. 5 (b) vs (c))."""
    no_kl_config: Optional[Path] = None
    """A trained run without L_kl to use for that row instead of training one."""
    max_num_iterations: Optional[int] = None
    refine_iterations: int = 1
    """Shared iterative refinement passes after the first PnP."""
    localizer: NeuraLocLocalizerConfig = field(default_factory=NeuraLocLocalizerConfig)

    def train(self, timestamp: str, extra: tuple[str, ...] = ()) -> tuple[Path, float]:
        runs = self.output_dir / "runs"
        cmd = [sys.executable, "-m", "nerfstudio.scripts.train", self.method, "--output-dir", str(runs),
               "--experiment-name", self.data.name, "--timestamp", timestamp, "--viewer.quit-on-train-completion", "True"]  # fmt: skip
        if self.max_num_iterations:
            cmd += ["--max-num-iterations", str(self.max_num_iterations)]
        cmd += [*extra, "sevenscenes-data", "--data", str(self.data)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        return runs / self.data.name / self.method / timestamp / "config.yml", time.perf_counter() - start

    def localize(self, config: Path, tag: str, label: str, localizer: NeuraLocLocalizerConfig) -> dict:
        metrics = Localize(
            fresh=True,
            load_config=config,
            output_dir=self.output_dir / f"run_{tag}",
            pipeline=PipelineConfig(refine=RefineConfig(iterations=self.refine_iterations)),
            neuraloc=localizer,
            baseline_metrics=self.output_dir / "baseline_run" / "metrics.json",
        ).main()
        metrics["method"] = label
        return metrics

    def main(self) -> None:
        train_s = None
        config = self.load_config
        if config is None:
            config, train_s = self.train("bench")
        baseline = LocalizeBaseline(fresh=True, data=self.data, output_dir=self.output_dir / "baseline_run").main()
        full = self.localizer
        variants = [
            ("full", "neuraloc (full)", full),
            ("no_filter", "w/o match candidate filter", replace(full, context_threshold=None)),
            ("mnn", "w/o graph match (MNN)", replace(full, matching="mnn")),
            (
                "alpha_1",
                "context in the score (alpha 1)",
                replace(full, context_weight=1.0, min_score=full.min_score + 0.6),
            ),
        ]
        rows = [self.localize(config, tag, label, cfg) for tag, label, cfg in variants]
        no_kl = self.no_kl_config
        no_kl_train_s = None
        if no_kl is None and self.kl_ablation:
            no_kl, no_kl_train_s = self.train("bench_no_kl", ("--pipeline.model.kl-mult", "0"))
        if no_kl is not None:
            rows.append(self.localize(no_kl, "no_kl", "w/o KL similarity alignment", full))
        ckpts = sorted((config.parent / "nerfstudio_models").glob("*.ckpt"))
        result = {
            "neuraloc": {tag: row for (tag, _, _), row in zip(variants, rows)},
            "no_kl": rows[-1] if no_kl is not None else None,
            "baseline": baseline,
            "training_time_s": train_s,
            "no_kl_training_time_s": no_kl_train_s,
            "parameters_mb": rows[0]["map_size_mb"],
            "checkpoint_mb": ckpts[-1].stat().st_size / 2**20 if ckpts else None,
            "config": str(config),
        }
        write_json_atomically(result, self.output_dir / "neuraloc.json")
        text = (
            f"# NeuraLoc on {self.data.name} ({self.method})\n\n{results_table(rows + [baseline])}\n\n"
            f"Per stage (mean):\n{stage_lines(rows[:1])}\n\n"
            f"Map: parameters {result['parameters_mb']:.2f} MB (float32), checkpoint file "
            f"{result['checkpoint_mb'] or 0:.2f} MB (with optimiser state)"
            + (f"; training {train_s:.0f} s" if train_s else "")
            + "\n"
        )
        write_text_atomically(text, self.output_dir / "neuraloc.md")
        print(text)


if __name__ == "__main__":
    tyro.cli(NeuraLocBenchmark).main()
