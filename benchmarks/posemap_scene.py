"""Benchmark: PoseMap / PMNet on a scene beside the classical baseline (Table 5 ablation).

Trains (or reuses with ``--*-config``) the stage-1 NeRF, NeRF-P (``posemap-nerf``), APRNet with
all losses (PMNet), APRNet without ``L_posemap`` (Table 5b, Exp. 1), and the self-supervised
alignment of the full APR (PMNet_ud).  Localizes the query split with each APR alone, with
PMNet_ud as the prior of render -> match -> PnP refinement on each ``--refine-configs`` run (the
stage-1 NeRF's rendered-features localizer by default; CrossFire / NeRFMatch / NeuraLoc runs
also work), and the baseline.  Also times the APR forward pass alone (batch 1, query size).
Writes ``OUT/posemap.json`` and ``OUT/posemap.md``.

    python benchmarks/posemap_scene.py --data examples/demo_room --output-dir benchmarks/results/posemap
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch
import tyro

from nerfloc_plugins.data.images import load_rgb
from nerfloc_plugins.localize.pipeline import PipelineConfig, RefineConfig
from nerfloc_plugins.localize.report import results_table, stage_lines
from nerfloc_plugins.methods.posemap.posemap_localizer import APRPoseRegressor
from nerfloc_plugins.scripts.localize import Localize
from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline
from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically


@dataclass
class PoseMapBenchmark:
    data: Path = Path("examples/demo_room")
    output_dir: Path = Path("benchmarks/results/posemap")
    gpu: bool = False
    """Use the GPU presets (``posemap-*`` instead of ``posemap-*-cpu``)."""
    nerf_config: Optional[Path] = None
    posemap_nerf_config: Optional[Path] = None
    apr_config: Optional[Path] = None
    apr_no_posemap_config: Optional[Path] = None
    align_config: Optional[Path] = None
    refine_configs: Tuple[Path, ...] = ()
    """Runs whose localizer refines from the APR prior (default: the stage-1 NeRF)."""
    refine_iterations: int = 2

    def method(self, name: str) -> str:
        return name if self.gpu else f"{name}-cpu"

    def train(self, method: str, timestamp: str, data: Optional[Path], extra: tuple = ()) -> tuple[Path, float]:
        runs = self.output_dir / "runs"
        cmd = [sys.executable, "-m", "nerfstudio.scripts.train", method, "--output-dir", str(runs),
               "--experiment-name", self.data.name, "--timestamp", timestamp,
               "--viewer.quit-on-train-completion", "True", *extra]  # fmt: skip
        cmd += ["sevenscenes-data", "--data", str(self.data)] if data is None else ["--data", str(data)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        return runs / self.data.name / method / timestamp / "config.yml", time.perf_counter() - start

    def localize(self, config: Path, tag: str, label: str, prior: Optional[Path] = None) -> dict:
        metrics = Localize(
            fresh=True,
            load_config=config,
            output_dir=self.output_dir / f"run_{tag}",
            pipeline=PipelineConfig(refine=RefineConfig(iterations=self.refine_iterations)),
            pose_prior=prior,
            baseline_metrics=self.output_dir / "baseline_run" / "metrics.json",
        ).main()
        metrics["method"] = label
        return metrics

    def forward_ms(self, config: Path, image: Path, repeats: int = 50) -> float:
        """Median wall time of one APR forward pass (batch 1, after warm-up)."""
        regressor = APRPoseRegressor(config)
        rgb = load_rgb(image)
        for _ in range(5):
            regressor.predict(rgb)
        times = []
        for _ in range(repeats):
            if regressor.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            regressor.predict(rgb)
            if regressor.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(1000 * (time.perf_counter() - start))
        return statistics.median(times)

    def main(self) -> None:
        train_s = {}
        nerf = self.nerf_config
        if nerf is None:
            nerf, train_s["nerf"] = self.train(self.method("nerfloc-nerfacto"), "bench", None)
        nerf_p = self.posemap_nerf_config
        if nerf_p is None:
            nerf_p, train_s["posemap_nerf"] = self.train(self.method("posemap-nerf"), "bench", nerf)
        apr = self.apr_config
        if apr is None:
            apr, train_s["apr"] = self.train(self.method("posemap-apr"), "bench", nerf_p)
        no_pm = self.apr_no_posemap_config
        if no_pm is None:
            no_pm, train_s["apr_no_posemap"] = self.train(
                self.method("posemap-apr"), "bench_no_posemap", nerf_p, ("--pipeline.losses.posemap-weight", "0")
            )
        align = self.align_config
        if align is None:
            align, train_s["align"] = self.train(self.method("posemap-align"), "bench", apr)
        baseline = LocalizeBaseline(fresh=True, data=self.data, output_dir=self.output_dir / "baseline_run").main()
        rows = [
            self.localize(apr, "pmnet", "PMNet (L_pose+L_image+L_rvs+L_posemap)"),
            self.localize(no_pm, "no_posemap", "APR w/o L_posemap"),
            self.localize(align, "pmnet_ud", "PMNet_ud (+ self-supervised alignment)"),
        ]
        for i, run in enumerate(self.refine_configs or (nerf,)):
            method = run.parent.parent.name
            rows.append(self.localize(run, f"prior_{i}", f"PMNet_ud prior + {method} refinement", prior=align))
        query = sorted((self.data / "seq-03").glob("*.color.png"))
        forward = self.forward_ms(align, query[0]) if query else float("nan")
        result = {
            "rows": rows,
            "baseline": baseline,
            "training_time_s": train_s,
            "apr_forward_ms": forward,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "configs": {
                "nerf": str(nerf),
                "posemap_nerf": str(nerf_p),
                "apr": str(apr),
                "no_posemap": str(no_pm),
                "align": str(align),
            },  # fmt: skip
        }
        write_json_atomically(result, self.output_dir / "posemap.json")
        times = ", ".join(f"{k} {v:.0f} s" for k, v in train_s.items())
        text = (
            f"# PoseMap / PMNet on {self.data.name} ({'GPU' if self.gpu else 'CPU'} presets)\n\n"
            f"{results_table(rows + [baseline])}\n\nPer stage (mean):\n{stage_lines(rows)}\n\n"
            f"APR forward pass (batch 1, {result['device']}): {forward:.2f} ms median; "
            f"APR parameters {rows[0]['map_size_mb']:.2f} MB" + (f"; training: {times}" if times else "") + "\n"
        )
        write_text_atomically(text, self.output_dir / "posemap.md")
        print(text)


if __name__ == "__main__":
    tyro.cli(PoseMapBenchmark).main()
