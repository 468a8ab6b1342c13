"""``ns-nerfloc-train-d2s``: train the D2S regressor on real (and synthetic) keypoint views.

``--data`` is an ``ns-nerfloc-synthesize`` output folder.  ``--synthetic False`` trains on the
real views only (the "D2S without synthesis" baseline of the paper).  Writes ``d2s.pt``,
``d2s_run.yml`` (give it to ``ns-localize --load-config``) and ``training.json`` (losses).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from nerfloc_plugins.methods.d2s.d2s_keypoint_views import load_views
from nerfloc_plugins.methods.d2s.d2s_run import D2SRun, save_run
from nerfloc_plugins.methods.d2s.d2s_trainer import D2STrainConfig, save_d2s, train_d2s
from nerfloc_plugins.utils.atomic import write_json_atomically
from nerfloc_plugins.utils.cli import run_cli
from nerfloc_plugins.utils.devices import resolve_device

CONSOLE = Console()


@dataclass
class TrainD2S:
    """Train D2S on the keypoint views written by ns-nerfloc-synthesize."""

    data: Path
    """Output folder of ns-nerfloc-synthesize (real.npz, synthetic.npz, summary.json)."""
    output_dir: Path = Path("outputs/d2s")
    synthetic: bool = True
    """Train on the kept synthetic views too (False: real views only)."""
    train: D2STrainConfig = field(default_factory=D2STrainConfig)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def main(self) -> dict:
        summary_path = self.data / "summary.json"
        if not summary_path.is_file():
            raise FileNotFoundError(
                f"{summary_path}: not found (--data must be an ns-nerfloc-synthesize output folder)"
            )
        summary = json.loads(summary_path.read_text())
        views = load_views(self.data / "real.npz")
        num_real = len(views)
        if self.synthetic:
            synthetic = self.data / "synthetic.npz"
            if synthetic.is_file():
                views += load_views(synthetic)
            else:
                CONSOLE.print(f"[yellow]no kept synthetic views in {self.data}; training on real views only")
        device = str(resolve_device(self.device))
        CONSOLE.print(f"D2S: {num_real} real + {len(views) - num_real} synthetic views, {self.train.iterations} steps")
        start = time.perf_counter()
        columns = [TextColumn("[bold]training d2s"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("loss {task.fields[loss]}")]  # fmt: skip
        with Progress(*columns) as progress:
            task = progress.add_task("d2s", total=self.train.iterations, loss="-")

            def on_step(step: int, record: dict) -> None:
                if step % 50 == 0:
                    progress.update(task, completed=step + 1, loss=f"{record['total']:.3f}")

            net, history = train_d2s(views, self.train, device, on_step)
        seconds = time.perf_counter() - start
        self.output_dir.mkdir(parents=True, exist_ok=True)
        save_d2s(net, self.output_dir / "d2s.pt", {"num_real": num_real, "num_views": len(views)})
        run = D2SRun(
            nerf_config=Path(summary["nerf_config"]),
            checkpoint=Path("d2s.pt"),
            features=summary["features"],
            max_keypoints=int(summary["max_keypoints"]),
            superpoint_weights=Path(summary["superpoint_weights"]) if summary.get("superpoint_weights") else None,
            synthetic=self.synthetic and len(views) > num_real,
        )
        save_run(run, self.output_dir / "d2s_run.yml")
        tail = history[-max(1, len(history) // 20) :]
        result = {
            "num_real_views": num_real,
            "num_synthetic_views": len(views) - num_real,
            "iterations": self.train.iterations,
            "training_seconds": seconds,
            "final_losses": {k: float(np.mean([h.get(k, 0.0) for h in tail])) for k in tail[-1]},
            "loss_curve": [h["total"] for h in history[:: max(1, len(history) // 200)]],
        }
        write_json_atomically(result, self.output_dir / "training.json")
        CONSOLE.print(
            f"trained in {seconds:.0f} s; final coordinate error {result['final_losses']['coordinate_error_m']:.3f} m; "
            f"ns-localize --load-config {self.output_dir / 'd2s_run.yml'}"
        )
        return result


def entrypoint() -> None:
    run_cli(TrainD2S)


if __name__ == "__main__":
    entrypoint()
