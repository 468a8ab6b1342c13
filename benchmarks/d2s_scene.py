"""Benchmark: D2S with and without NeRF descriptor synthesis, few-shot, beside the baseline.

1. trains ``nerfloc-nerfacto-cpu`` (``--gpu``: ``nerfloc-nerfacto``) on every ``train_stride``-th
   training frame (the few-shot setting; skipped with ``--nerf-config``);
2. ``ns-nerfloc-synthesize``: poses, rendered views, kept views and labels;
3. ``ns-nerfloc-train-d2s`` on the real views only and on real + synthetic views;
4. ``ns-localize`` both, and the classical baseline mapped on the same few frames and on all.

Writes ``OUT/d2s.json`` and ``OUT/d2s.md``.

    python benchmarks/d2s_scene.py --output-dir benchmarks/results/d2s
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import tyro

from nerfloc_plugins.localize.outputs.tables import results_table, stage_lines
from nerfloc_plugins.methods.d2s.d2s_pose_synthesis import PoseSynthesisConfig
from nerfloc_plugins.methods.d2s.d2s_synthesize import Synthesize
from nerfloc_plugins.methods.d2s.d2s_train import TrainD2S
from nerfloc_plugins.methods.d2s.d2s_trainer import D2STrainConfig
from nerfloc_plugins.scripts.localize import Localize
from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline
from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically


@dataclass
class D2SBenchmark:
    data: Path = Path("examples/demo_room")
    output_dir: Path = Path("benchmarks/results/d2s")
    train_stride: int = 10
    """Few-shot: every n-th training frame (10 -> 10 of the example's 100 frames)."""
    nerf_config: Optional[Path] = None
    """A trained few-shot nerfloc-nerfacto run to reuse (must use the same --train-stride)."""
    gpu: bool = False
    poses: PoseSynthesisConfig = field(default_factory=lambda: PoseSynthesisConfig(samples_per_pair=10))
    """The paper samples 40 poses per pair; 10 keeps CPU rendering short."""
    features: str = "aliked"
    d2s: D2STrainConfig = field(default_factory=lambda: D2STrainConfig(iterations=3000))

    def train_nerf(self) -> tuple[Path, float]:
        method = "nerfloc-nerfacto" if self.gpu else "nerfloc-nerfacto-cpu"
        runs = self.output_dir / "runs"
        cmd = [sys.executable, "-m", "nerfstudio.scripts.train", method, "--output-dir", str(runs),
               "--experiment-name", self.data.name, "--timestamp", "fewshot", "--viewer.quit-on-train-completion", "True",
               "sevenscenes-data", "--data", str(self.data), "--train-stride", str(self.train_stride)]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        return runs / self.data.name / method / "fewshot" / "config.yml", time.perf_counter() - start

    def main(self) -> None:
        nerf_seconds = None
        nerf = self.nerf_config
        if nerf is None:
            nerf, nerf_seconds = self.train_nerf()
        synthesis_dir = self.output_dir / "synthesis"
        summary = Synthesize(
            load_config=nerf,
            output_dir=synthesis_dir,
            poses=self.poses,
            features=self.features,  # type: ignore[arg-type]
        ).main()
        few = LocalizeBaseline(fresh=True, data=self.data, output_dir=self.output_dir / "baseline_fewshot",
                               train_stride=self.train_stride).main()  # fmt: skip
        few["method"] = f"classical-sift, every {self.train_stride}th frame"
        full = LocalizeBaseline(fresh=True, data=self.data, output_dir=self.output_dir / "baseline_all").main()
        full["method"] = "classical-sift, all frames"
        rows, training = [], {}
        for synthetic in (False, True):
            tag = "d2s+synthesis" if synthetic else "d2s"
            run_dir = self.output_dir / tag
            training[tag] = TrainD2S(data=synthesis_dir, output_dir=run_dir, synthetic=synthetic, train=self.d2s).main()
            metrics = Localize(
                fresh=True,
                load_config=run_dir / "d2s_run.yml",
                output_dir=self.output_dir / f"localize-{tag}",
                baseline_metrics=self.output_dir / "baseline_fewshot" / "metrics.json",
            ).main()
            metrics["method"] = tag
            rows.append(metrics)
        result = {
            "rows": rows,
            "baselines": [few, full],
            "synthesis": summary,
            "nerf_training_s": nerf_seconds,
            "d2s_training": {k: {kk: v[kk] for kk in ("num_real_views", "num_synthetic_views", "training_seconds", "final_losses")} for k, v in training.items()},
            "nerf_config": str(nerf),
        }  # fmt: skip
        write_json_atomically(result, self.output_dir / "d2s.json")
        text = (
            f"# D2S + descriptor synthesis on {self.data.name} (few-shot: every {self.train_stride}th training frame)\n\n"
            f"{results_table(rows + [few, full])}\n\n"
            f"Synthesis: {summary['num_training_frames']} training frames -> {summary['num_synthesized']} synthesized "
            f"poses -> {summary['num_kept']} kept (>= {summary['min_matches']} matches, median "
            f"{summary['matches_median']:.0f}); rendering {summary['render_seconds_per_view']:.2f} s/view; "
            f"labels from {summary['labels']}.\n\n"
            f"Per stage (mean):\n{stage_lines(rows)}\n\n"
            f"Training: NeRF {nerf_seconds} s; D2S " + ", ".join(f"{k} {v['training_seconds']:.0f} s" for k, v in training.items()) + "\n"
        )  # fmt: skip
        write_text_atomically(text, self.output_dir / "d2s.md")
        print(text)


if __name__ == "__main__":
    tyro.cli(D2SBenchmark).main()
