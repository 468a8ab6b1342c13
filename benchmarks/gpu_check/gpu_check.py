"""GPU check: every method's GPU preset trained briefly on a 640x480 scene (7-Scenes' resolution),
then per-query latency per stage, rendering speed (rays/s), peak GPU memory and the half-precision
paths, within one command of the GPU machine (``run.sh``: at most 10 minutes, no network).

Results (the only files written to ``--output-dir``; the machine returns a handful of files):
``gpu_check.json`` (rewritten after every step, so a check cut short still leaves what it measured)
and ``gpu_check.md`` (the same as tables). Scenes, runs and logs go to ``--work-dir`` (not returned);
a failed step's log tail is kept in the JSON.

Every step has its own time limit and the whole check a budget (``--budget-s``): a step is given at
most what is left, and steps that no longer fit are recorded as skipped, in order of importance
(environment, scene, Nerfacto map, render probe, CrossFire, NeuraLoc, NeRFMatch-Mini, localization
of each, PoseMap). ``--dry-run`` runs the same steps on the CPU at toy size (64x48, 3 iterations):
what the tests run to check the commands, the files written and the imports the wheel kit must hold.

GPU figures in the docs come from this file's JSON only.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import tyro

from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically

HERE = Path(__file__).resolve().parent
MODULES = {
    "nerfloc-make-scene": "nerfloc_plugins.scripts.make_scene",
    "ns-train": "nerfstudio.scripts.train",
    "ns-localize": "nerfloc_plugins.scripts.localize",
}
"""Commands run as ``python -m`` (the kit installs packages with ``--target``: no console scripts)."""

STEP_LIMITS_S: Dict[str, int] = {
    "scene": 90,
    "train": 100,
    "render_probe": 60,
    "localize": 60,
}
"""Each step's own time limit (seconds), before the budget cuts it."""

CPU_RAYS = {m: ["--pipeline.datamanager.train-num-rays-per-batch", "512"] for m in ("nerfloc-nerfacto", "neuraloc")}
"""Dry run: ray batches of the ray-sampling presets cut to fit a CPU."""


class PeakMemory:
    """Peak ``memory.used`` (MiB) of the GPU while a step runs, polled with nvidia-smi (0 without one)."""

    def __init__(self) -> None:
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def poll(self) -> None:
        while not self.stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=5,
                )  # fmt: skip
                self.peak = max(self.peak, max(int(v) for v in out.stdout.split()))
            except (OSError, ValueError, subprocess.TimeoutExpired):
                return
            self.stop.wait(0.2)

    def __enter__(self) -> "PeakMemory":
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        self.thread.join()


def training_speed(run: Path) -> dict:
    """Median seconds per iteration, median training rays/s and peak GPU memory (MiB) that Nerfstudio
    logged to the run's TensorBoard events (the first logged step, with start-up costs, left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    speed: dict = {}
    for events in sorted(run.glob("events.out.tfevents*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags = set(accumulator.Tags()["scalars"])
        for tag, key, reduce in (("Train Iter (time)", "s_per_iteration", statistics.median),
                                 ("Train Rays / Sec", "rays_per_s", statistics.median),
                                 ("GPU Memory (MB)", "torch_peak_gpu_mib", max)):  # fmt: skip
            if tag in tags:
                values = [e.value for e in accumulator.Scalars(tag)]
                speed[key] = float(reduce(values[1:] or values))
    return speed


def brief_training_command(method: str, iterations: int, runs: Path, args: List[str], steps_per_log: int) -> List[str]:
    """``ns-train`` of ``method`` for ``iterations`` steps into ``runs/<experiment>/<method>/t`` (one
    checkpoint at the end, no evaluation, TensorBoard logs every ``steps_per_log`` for
    :func:`training_speed`); ``args``: options, then the dataparser / ``--data``."""
    return ["ns-train", method, "--max-num-iterations", str(iterations), "--steps-per-save", str(iterations),
            "--steps-per-eval-batch", "0", "--steps-per-eval-image", str(10 * iterations),
            "--steps-per-eval-all-images", str(10 * iterations), "--logging.steps-per-log", str(steps_per_log),
            "--output-dir", str(runs.parent), "--experiment-name", runs.name, "--timestamp", "t", "--vis", "tensorboard",
            "--viewer.quit-on-train-completion", "True", *args]  # fmt: skip


@dataclass
class GpuCheck:
    output_dir: Path = Path("benchmarks/results/gpu_check")
    """Results only: gpu_check.json and gpu_check.md."""
    work_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "nerfloc_gpu_check")
    """Scenes, runs and logs (not returned by the GPU machine)."""
    budget_s: float = 480.0
    """All steps together (run.sh's installation comes before, within the command's 10 minutes)."""
    iterations: int = 200
    """Training steps per method (the check measures speed and memory, not accuracy)."""
    width: int = 640
    height: int = 480
    frames_per_train_seq: int = 30
    queries: int = 5
    methods: Tuple[str, ...] = (
        "nerfloc-nerfacto",
        "crossfire",
        "neuraloc",
        "nerfmatch-mini",
        "posemap-nerf",
        "posemap-apr",
    )
    """GPU presets trained; NeRFMatch and PoseMap's NeRF-P start from the nerfloc-nerfacto run, PoseMap's
    APR from the NeRF-P run."""
    dry_run: bool = False
    """On the CPU at toy size (64x48, 3 iterations, 1 query): checks every command and file here."""

    def __post_init__(self) -> None:
        if self.dry_run:
            self.width, self.height, self.frames_per_train_seq, self.queries, self.iterations = 64, 48, 4, 1, 3

    def main(self) -> None:
        self.out = self.output_dir.resolve()
        self.work = self.work_dir.resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        self.deadline = time.monotonic() + self.budget_s
        self.report: dict = {"dry_run": self.dry_run, "iterations": self.iterations, "steps": {}}
        self.environment()
        scene = self.work / f"scene_{self.width}x{self.height}"
        made = self.step("scene", ["nerfloc-make-scene", "--output-dir", str(scene), "--width", str(self.width),
                                   "--height", str(self.height), "--frames-per-train-seq", str(self.frames_per_train_seq),
                                   "--frames-test", str(self.queries), "--supersample", "1"])  # fmt: skip
        runs: Dict[str, Optional[Path]] = {}
        if made is not None:
            data = ["sevenscenes-data", "--data", str(scene)]
            runs["nerfloc-nerfacto"] = self.train("nerfloc-nerfacto", data)
            if runs["nerfloc-nerfacto"] is not None:
                self.render_probe(runs["nerfloc-nerfacto"])
            for method in ("crossfire", "neuraloc"):
                if method in self.methods:
                    runs[method] = self.train(method, data)
            if "nerfmatch-mini" in self.methods and runs["nerfloc-nerfacto"] is not None:
                runs["nerfmatch-mini"] = self.train("nerfmatch-mini", ["--data", str(runs["nerfloc-nerfacto"])])
            for method in ("crossfire", "neuraloc", "nerfmatch-mini"):
                if runs.get(method) is not None:
                    self.localize(method, runs[method])
            if "posemap-nerf" in self.methods and runs["nerfloc-nerfacto"] is not None:
                runs["posemap-nerf"] = self.train("posemap-nerf", ["--data", str(runs["nerfloc-nerfacto"])])
            if "posemap-apr" in self.methods and runs.get("posemap-nerf") is not None:
                runs["posemap-apr"] = self.train("posemap-apr", ["--data", str(runs["posemap-nerf"])])
                if runs["posemap-apr"] is not None:
                    self.localize("posemap-apr", runs["posemap-apr"])
        self.report["runs"] = {m: str(c) for m, c in runs.items() if c is not None}
        self.save()
        failed = [name for name, record in self.report["steps"].items() if record.get("returncode") != 0]
        print((self.out / "gpu_check.md").read_text())
        print(f"failed or skipped steps: {failed}" if failed else "every step passed")

    def environment(self) -> None:
        import torch

        env = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}  # fmt: skip
        try:
            import tinycudann  # noqa: F401

            env["tinycudann"] = True
        except Exception as err:  # not installed or not built for this GPU: Nerfacto falls back to PyTorch
            env["tinycudann"] = f"not usable ({type(err).__name__})"
        self.report["environment"] = env
        self.save()

    def step(self, name: str, cmd: List[str], kind: Optional[str] = None) -> Optional[dict]:
        """Run one command under its limit and what is left of the budget; its record, or None if it
        failed, timed out or did not fit."""
        left = self.deadline - time.monotonic()
        limit = min(STEP_LIMITS_S[kind or name], left)
        if limit < 10:
            self.report["steps"][name] = {"returncode": "skipped (budget spent)"}
            self.save()
            return None
        if cmd[0] in MODULES:
            cmd = [sys.executable, "-m", MODULES[cmd[0]], *cmd[1:]]
        log_path = self.work / "logs" / f"{name}.log"
        start = time.perf_counter()
        with PeakMemory() as memory, open(log_path, "w") as log:
            try:
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=limit, cwd=self.work).returncode
            except subprocess.TimeoutExpired:
                rc = f"timeout ({limit:.0f} s)"
        record = {"returncode": rc, "seconds": round(time.perf_counter() - start, 2), "peak_gpu_mib": memory.peak}
        if rc != 0:
            record["log_tail"] = log_path.read_text(errors="replace").splitlines()[-25:]
        self.report["steps"][name] = record
        self.save()
        return record if rc == 0 else None

    def train(self, method: str, data_args: List[str]) -> Optional[Path]:
        runs = self.work / "runs" / "gpu"
        device = ["--machine.device-type", "cpu", *CPU_RAYS.get(method, [])] if self.dry_run else []
        cmd = brief_training_command(method, self.iterations, runs, [*device, *data_args], steps_per_log=10)
        record = self.step(f"train_{method}", cmd, kind="train")
        config = runs / method / "t" / "config.yml"
        if record is None or not config.is_file():
            return None
        record.update(training_speed(config.parent))
        self.save()
        return config

    def render_probe(self, config: Path) -> None:
        result = self.work / "render_probe.json"
        record = self.step("render_probe", [sys.executable, str(HERE / "render_probe.py"), "--config", str(config),
                                            "--output", str(result), "--repeats", "1" if self.dry_run else "3"])  # fmt: skip
        if record is not None and result.is_file():
            record.update(json.loads(result.read_text()))
            self.save()

    def localize(self, method: str, config: Path) -> None:
        out = self.work / f"localize_{method}"
        record = self.step(f"localize_{method}", ["ns-localize", "--load-config", str(config), "--output-dir", str(out),
                                                  "--max-queries", str(self.queries), "--fresh"], kind="localize")  # fmt: skip
        metrics = out / "metrics.json"
        if record is not None and metrics.is_file():
            m = json.loads(metrics.read_text())
            record["query_s_median"] = m["timings"]["total"]["median_s"]
            record["stages_median_s"] = {k: v["median_s"] for k, v in m["timings"].items() if k != "total"}
            record["median_translation_cm"] = m.get("median_translation_cm")
            self.save()

    def markdown(self) -> str:
        env = self.report.get("environment", {})
        lines = [f"# GPU check{' (dry run, CPU)' if self.dry_run else ''}", "",
                 f"{env.get('gpu') or 'no GPU'}; torch {env.get('torch')} (CUDA {env.get('cuda')}); "
                 f"tiny-cuda-nn: {env.get('tinycudann')}; {self.width}x{self.height}, {self.iterations} iterations", "",
                 "| step | result | s | s/iteration | train rays/s | query s (median) | peak GPU MiB |",
                 "|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, r in self.report["steps"].items():
            cells = [r.get("returncode"), r.get("seconds"), r.get("s_per_iteration"), r.get("rays_per_s"),
                     r.get("query_s_median"), r.get("peak_gpu_mib")]  # fmt: skip
            text = ["ok" if c == 0 and i == 0 else "-" if c is None else f"{c:.4g}" if isinstance(c, float) else str(c)
                    for i, c in enumerate(cells)]  # fmt: skip
            lines.append(f"| {name} | " + " | ".join(text) + " |")
        probe = self.report["steps"].get("render_probe", {})
        for key in ("fp16_grid", "autocast"):
            if key in probe:
                lines.append(f"\n{key}: max |rgb - float32| {probe[key]['max_abs_rgb']:.4f}, "
                             f"median |depth - float32| {probe[key]['median_abs_depth_m']:.4f} m, finite {probe[key]['finite']}")  # fmt: skip
        return "\n".join(lines) + "\n"

    def save(self) -> None:
        write_json_atomically(self.report, self.out / "gpu_check.json")
        write_text_atomically(self.markdown(), self.out / "gpu_check.md")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    tyro.cli(GpuCheck).main()
