"""Benchmark: NeRFMatch-Mini and NeRFMatch on a scene beside the classical baseline.

Trains ``nerfmatch-mini-cpu`` and ``nerfmatch-cpu`` (or the GPU methods with ``--gpu``) on a
frozen ``nerfloc-nerfacto`` run unless ``--mini-config`` / ``--full-config`` point at trained
matchers, then localizes the query split with the shared pipeline in several settings:
without refinement, with each method's default refinement (Mini: photometric + re-match;
NeRFMatch: one iterative round), and with a NeRF-rendered retrieval database.  Also times the
rendering of the reference points + features.  Writes ``OUT/nerfmatch.json`` and ``OUT/nerfmatch.md``.

    python benchmarks/nerfmatch_scene.py --nerf-config RUN/config.yml --output-dir benchmarks/results/nerfmatch
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import tyro

from nerfloc_plugins.localize.pipeline import PipelineConfig, RefineConfig
from nerfloc_plugins.localize.pnp import PnPConfig
from nerfloc_plugins.localize.refine import PhotometricConfig
from nerfloc_plugins.localize.report import results_table, stage_lines
from nerfloc_plugins.localize.retrieval import RetrievalConfig
from nerfloc_plugins.methods.nerfmatch.nerfmatch_localizer import NerfMatchLocalizerConfig
from nerfloc_plugins.scripts.localize import Localize
from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline
from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically


@dataclass
class NerfMatchBenchmark:
    nerf_config: Path
    """config.yml of the frozen nerfloc-nerfacto run."""
    data: Path = Path("examples/demo_room")
    output_dir: Path = Path("benchmarks/results/nerfmatch")
    mini_config: Optional[Path] = None
    full_config: Optional[Path] = None
    gpu: bool = False
    """Train the paper-setting methods (nerfmatch-mini, nerfmatch) instead of the CPU presets."""
    max_num_iterations: Optional[int] = None
    photometric_steps: int = 50
    match_threshold: Optional[float] = 0.01
    """Dual-softmax threshold at localization (CPU-trained matchers are under-confident; None: the model's)."""
    pnp_threshold_px: float = 24.0
    """RANSAC threshold at 640 px width (24 = 6 px at 160: Mini's 2D points are 8-px cell centres)."""
    nerf_db: bool = False
    """Also run the NeRF-rendered retrieval database rows (renders every mapping view: slow on CPU)."""

    def train(self, method: str) -> tuple[Path, float]:
        runs = self.output_dir / "runs"
        cmd = [sys.executable, "-m", "nerfstudio.scripts.train", method, "--data", str(self.nerf_config),
               "--output-dir", str(runs), "--experiment-name", self.data.name, "--timestamp", "bench"]  # fmt: skip
        if self.max_num_iterations:
            cmd += ["--max-num-iterations", str(self.max_num_iterations)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        return runs / self.data.name / method / "bench" / "config.yml", time.perf_counter() - start

    def localize(self, config: Path, tag: str, refine: RefineConfig, source: str = "images") -> dict:
        metrics = Localize(
            fresh=True,
            load_config=config,
            output_dir=self.output_dir / tag,
            pipeline=PipelineConfig(
                refine=refine,
                retrieval=RetrievalConfig(source=source),
                pnp=PnPConfig(threshold_px=self.pnp_threshold_px),
            ),
            nerfmatch=NerfMatchLocalizerConfig(match_threshold=self.match_threshold),
            baseline_metrics=self.output_dir / "baseline_run" / "metrics.json",
        ).main()
        metrics["method"] = tag
        return metrics

    def render_timing(self, config: Path, repeats: int = 5) -> Dict[str, float]:
        from nerfloc_plugins.methods.nerfmatch.nerfmatch_localizer import NerfMatchLocalizer

        localizer = NerfMatchLocalizer(config)
        frame = localizer.map_frames()[0]
        localizer.map_view(frame.c2w, frame)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            view = localizer.map_view(frame.c2w, frame)
            times.append(time.perf_counter() - start)
        return {"num_points": len(view.points3d), "median_ms": 1000 * float(np.median(times))}

    def main(self) -> None:
        suffix = "" if self.gpu else "-cpu"
        trained: Dict[str, Optional[float]] = {}
        configs = {}
        for variant, given in (("mini", self.mini_config), ("full", self.full_config)):
            method = ("nerfmatch-mini" if variant == "mini" else "nerfmatch") + suffix
            if given is None:
                configs[variant], trained[variant] = self.train(method)
            else:
                configs[variant], trained[variant] = given, None
        baseline = LocalizeBaseline(fresh=True, data=self.data, output_dir=self.output_dir / "baseline_run").main()
        photometric = RefineConfig(iterations=0, photometric=PhotometricConfig(steps=self.photometric_steps))
        rows: List[dict] = [
            self.localize(configs["mini"], "nerfmatch-mini", RefineConfig(iterations=0)),
            self.localize(configs["mini"], "nerfmatch-mini + photometric + re-match", photometric),
            self.localize(configs["full"], "nerfmatch", RefineConfig(iterations=0)),
            self.localize(configs["full"], "nerfmatch + 1 iterative", RefineConfig(iterations=1)),
        ]
        if self.nerf_db:
            rows += [
                self.localize(configs["mini"], "nerfmatch-mini + photometric, NeRF DB", photometric, source="nerf"),
                self.localize(
                    configs["full"], "nerfmatch + 1 iterative, NeRF DB", RefineConfig(iterations=1), source="nerf"
                ),
            ]
        timing = self.render_timing(configs["full"])
        result = {
            "rows": rows,
            "baseline": baseline,
            "training_time_s": trained,
            "render_points_features": timing,
            "configs": {k: str(v) for k, v in configs.items()},
        }
        write_json_atomically(result, self.output_dir / "nerfmatch.json")
        stages = stage_lines(rows)
        text = (
            f"# NeRFMatch on {self.data.name}\n\n{results_table(rows + [baseline])}\n\n"
            f"Per stage (mean):\n{stages}\n\n"
            f"Rendering {timing['num_points']} points with features: {timing['median_ms']:.1f} ms (median)\n\n"
            f"Training time (s): {trained}\n"
        )
        write_text_atomically(text, self.output_dir / "nerfmatch.md")
        print(text)


if __name__ == "__main__":
    tyro.cli(NerfMatchBenchmark).main()
