"""GPU check: each method's GPU preset trained briefly on a paper-resolution scene, then per-query
latency, rendering throughput and peak GPU memory, written as JSON after every step (a slot that
ends early still leaves what was measured). Started by ``run.sh`` (wheels installed first).

Steps (about 6 min on one H200; each has its own time limit):
1. environment: torch / CUDA versions, the GPU, whether tiny-cuda-nn imports;
2. a 640x480 scene in 7-Scenes layout (``nerfloc-make-scene``, the paper resolution of 7-Scenes);
3. ``ns-train`` of ``nerfloc-nerfacto``, ``crossfire``, ``neuraloc`` for ``--iterations`` steps and
   ``nerfmatch-mini`` on the Nerfacto run: seconds per iteration, peak GPU memory (nvidia-smi);
4. ``ns-localize`` of each run on the scene's queries: median seconds per query and per stage;
5. rendering throughput of the Nerfacto run (``benchmarks/render_speed.py``): rays/s per sampling.

GPU figures in the docs come from this file's JSON only; none has been measured yet.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import tyro

ROOT = Path(__file__).resolve().parents[2]


class PeakMemory:
    """Peak ``memory.used`` (MiB) of the GPU while a step runs, polled with nvidia-smi."""

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
                pass
            self.stop.wait(0.2)

    def __enter__(self) -> "PeakMemory":
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        self.thread.join()


@dataclass
class GpuCheck:
    output_dir: Path = Path("benchmarks/results/gpu_check")
    iterations: int = 300
    """Training steps per method (brief: the check measures speed and memory, not accuracy)."""
    methods: tuple = ("nerfloc-nerfacto", "crossfire", "neuraloc")
    max_queries: int = 10

    def main(self) -> None:
        self.out = self.output_dir.resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.report = {"steps": {}}
        self.environment()
        scene = self.out / "scene_640x480"
        self.step("scene", ["nerfloc-make-scene", "--output-dir", str(scene), "--width", "640", "--height", "480",
                            "--frames-per-train-seq", "30", "--frames-test", str(self.max_queries), "--supersample", "1"],
                  limit=150)  # fmt: skip
        runs = {}
        for method in self.methods:
            runs[method] = self.train(method, ["sevenscenes-data", "--data", str(scene)])
        if runs.get("nerfloc-nerfacto"):
            runs["nerfmatch-mini"] = self.train("nerfmatch-mini", ["--data", str(runs["nerfloc-nerfacto"])])
        for method, config in runs.items():
            if config is not None:
                self.localize(method, config)
        if runs.get("nerfloc-nerfacto"):
            self.step("render_speed", [sys.executable, str(ROOT / "benchmarks" / "render_speed.py"), "--map",
                      str(runs["nerfloc-nerfacto"]), "--output-dir", str(self.out / "render_speed"), "--max-queries", "4"],
                      limit=90)  # fmt: skip
            speed = self.out / "render_speed" / "render_speed.json"
            if speed.is_file():
                self.report["render_speed"] = json.loads(speed.read_text())
                self.save()
        print(json.dumps({k: v for k, v in self.report.items() if k != "render_speed"}, indent=1)[:4000])

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

    def step(self, name: str, cmd: List[str], limit: int) -> Optional[dict]:
        if cmd[0] in ("nerfloc-make-scene", "ns-train", "ns-localize"):
            module = {"nerfloc-make-scene": "nerfloc_plugins.scripts.make_scene", "ns-train": "nerfstudio.scripts.train",
                      "ns-localize": "nerfloc_plugins.scripts.localize"}[cmd[0]]  # fmt: skip
            cmd = [sys.executable, "-m", module, *cmd[1:]]
        start = time.perf_counter()
        with PeakMemory() as memory, open(self.out / f"{name}.log", "w") as log:
            try:
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=limit, cwd=ROOT).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        record = {"returncode": rc, "seconds": time.perf_counter() - start, "peak_gpu_mib": memory.peak}
        self.report["steps"][name] = record
        self.save()
        return record if rc == 0 else None

    def train(self, method: str, data_args: List[str]) -> Optional[Path]:
        runs = self.out / "runs"
        cmd = ["ns-train", method, "--max-num-iterations", str(self.iterations), "--steps-per-save", str(self.iterations),
               "--output-dir", str(runs), "--experiment-name", "gpu", "--timestamp", "t", "--vis", "tensorboard",
               "--viewer.quit-on-train-completion", "True", *data_args]  # fmt: skip
        record = self.step(f"train_{method}", cmd, limit=150)
        if record is None:
            return None
        record["s_per_iteration_incl_startup"] = record["seconds"] / self.iterations
        config = runs / "gpu" / method / "t" / "config.yml"
        return config if config.is_file() else None

    def localize(self, method: str, config: Path) -> None:
        out = self.out / f"localize_{method}"
        record = self.step(f"localize_{method}", ["ns-localize", "--load-config", str(config), "--output-dir", str(out),
                                                  "--max-queries", str(self.max_queries), "--fresh"], limit=120)  # fmt: skip
        metrics = out / "metrics.json"
        if record is not None and metrics.is_file():
            m = json.loads(metrics.read_text())
            record["query_s_median"] = m["timings"]["total"]["median_s"]
            record["stages_median_s"] = {k: v["median_s"] for k, v in m["timings"].items()}
            record["median_translation_cm"] = m.get("median_translation_cm")
            self.save()

    def save(self) -> None:
        tmp = self.out / ".gpu_check.json.tmp"
        tmp.write_text(json.dumps(self.report, indent=2) + "\n")
        tmp.replace(self.out / "gpu_check.json")


if __name__ == "__main__":
    tyro.cli(GpuCheck).main()
