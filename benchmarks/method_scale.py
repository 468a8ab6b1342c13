"""Every method's costs against the number of mapping frames, on the CPU (issue 26's scale table):
for each scene size, a 640x480 scene (``nerfloc-make-scene``), then for each method's CPU preset a
short ``ns-train`` (setup seconds: start-up, image loading, caches, teachers, covisibility; seconds per
iteration from Nerfstudio's logs; peak host memory of the process tree) and ``ns-localize`` on a few
queries (median seconds per query, the setup before the first query, peak host memory), and the
classical default (``ns-localize-baseline``: map building + queries).

    python benchmarks/method_scale.py --frames 100 300 1000 --output-dir benchmarks/results/method_scale

Writes ``method_scale.json`` (after every step) and ``method_scale.md``. Each size runs in its own
cache folder, so each setup is paid in full. Scenes and runs go to ``--work-dir``. A 1000-frame size
takes hours on 2 cores: with ``--resume`` (the default) a rerun keeps the rows that succeeded in
``method_scale.json`` and the scenes and runs in ``--work-dir`` (choose one that outlives the session),
and measures only what is missing or failed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import psutil
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent / "gpu_check"))
from gpu_check import MODULES, brief_training_command, training_speed  # noqa: E402

from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically  # noqa: E402

MODULES = {**MODULES, "ns-localize-baseline": "nerfloc_plugins.scripts.localize_baseline"}


def run_measured(cmd: List[str], log: Path, limit_s: float, env: Dict[str, str]) -> dict:
    """Run ``cmd`` (output to ``log``), polling the resident memory of its process tree every 0.5 s;
    killed at ``limit_s``. Returns returncode, seconds and peak host MiB."""
    if cmd[0] in MODULES:
        cmd = [sys.executable, "-m", MODULES[cmd[0]], *cmd[1:]]
    start = time.perf_counter()
    peak = 0
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
        root = psutil.Process(proc.pid)
        returncode = None
        while returncode is None:
            try:
                peak = max(peak, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
            except psutil.Error:
                pass
            if time.perf_counter() - start > limit_s:
                for p in [*root.children(recursive=True), root]:
                    p.kill()
                proc.wait()
                returncode = f"timeout ({limit_s:.0f} s)"
                break
            time.sleep(0.5)
            returncode = proc.poll()
    record = {
        "returncode": returncode,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_host_mib": peak // 2**20,
    }
    if returncode != 0:
        record["log_tail"] = log.read_text(errors="replace").splitlines()[-15:]
    return record


def succeeded(row: dict) -> bool:
    """Whether every command of a row returned 0 (the scene row is a command record itself)."""
    records = [row] if "returncode" in row else [row[k] for k in ("train", "localize") if k in row]
    return bool(records) and all(r["returncode"] == 0 for r in records)


ORDER = ["scene rendering", "classical default", "nerfloc-nerfacto-cpu", "crossfire-cpu", "neuraloc-cpu",
         "nerfmatch-mini-cpu", "posemap-nerf-cpu", "posemap-apr-cpu"]  # fmt: skip


@dataclass
class MethodScale:
    output_dir: Path = Path("benchmarks/results/method_scale")
    work_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "nerfloc_method_scale")
    frames: Tuple[int, ...] = (100, 300, 1000)
    """Mapping frames per scene (two training sequences of half as many)."""
    width: int = 640
    height: int = 480
    iterations: int = 8
    """Training steps per method: enough for a steady seconds-per-iteration (logged every 2 steps)."""
    map_iterations: int = 300
    """Training steps of the ``nerfloc-nerfacto-cpu`` map that NeRFMatch and PoseMap's NeRF-P start from:
    NeRFMatch pairs training frames by the map's rendered depth, which a 20-step map does not have."""
    queries: int = 3
    methods: Tuple[str, ...] = (
        "nerfloc-nerfacto-cpu", "crossfire-cpu", "neuraloc-cpu", "nerfmatch-mini-cpu", "posemap-nerf-cpu", "posemap-apr-cpu",
    )  # fmt: skip
    """CPU presets. NeRFMatch and PoseMap's NeRF-P train on the nerfloc-nerfacto-cpu run, PoseMap's APR on NeRF-P."""
    step_limit_s: float = 3600.0
    resume: bool = True
    """Keep the rows of ``method_scale.json`` that succeeded (with their scenes and runs) and measure the rest."""

    def main(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.rows: List[dict] = []
        previous = self.output_dir / "method_scale.json"
        if self.resume and previous.is_file():
            self.rows = [row for row in json.loads(previous.read_text())["rows"] if succeeded(row)]
        for n in self.frames:
            self.size(n)
        print((self.output_dir / "method_scale.md").read_text())

    def size(self, n: int) -> None:
        work = (self.work_dir / f"frames_{n}").resolve()
        work.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "NERFLOC_CACHE_DIR": str(work / "cache")}
        scene = work / "scene"

        def step(name: str, cmd: List[str]) -> dict:
            return run_measured(cmd, work / f"{name}.log", self.step_limit_s, env)

        if self.done(n, "scene rendering") is None or not scene.is_dir():
            # a new scene: nothing measured on the old one stands
            self.rows = [r for r in self.rows if r["frames"] != n]
            made = step("scene", ["nerfloc-make-scene", "--output-dir", str(scene), "--width", str(self.width), "--height",
                              str(self.height), "--frames-per-train-seq", str(n // 2), "--frames-test", str(self.queries),
                              "--supersample", "1", "--workers", str(os.cpu_count() or 1)])  # fmt: skip
            self.add(n, "scene rendering", made)
            if made["returncode"] != 0:
                return
        if self.done(n, "classical default") is None:
            baseline = step("classical", ["ns-localize-baseline", "--data", str(scene), "--output-dir", str(work / "classical"),
                                      "--max-queries", str(self.queries), "--fresh"])  # fmt: skip
            self.add(n, "classical default", {"localize": self.with_queries(baseline, work / "classical")})
        data = ["sevenscenes-data", "--data", str(scene)]
        runs: Dict[str, Optional[Path]] = {}
        retrained = set()
        for method in self.methods:
            source = {"nerfmatch-mini-cpu": "nerfloc-nerfacto-cpu", "posemap-nerf-cpu": "nerfloc-nerfacto-cpu",
                      "posemap-apr-cpu": "posemap-nerf-cpu"}.get(method)  # fmt: skip
            if source is not None and runs.get(source) is None:
                continue
            config = work / "runs" / "scale" / method / "t" / "config.yml"
            if self.done(n, method) is not None and config.is_file() and source not in retrained:
                runs[method] = config
                continue
            retrained.add(method)
            shutil.rmtree(config.parent, ignore_errors=True)  # no events of an earlier try in the speed figures
            self.rows = [r for r in self.rows if (r["frames"], r["method"]) != (n, method)]
            args = ["--data", str(runs[source])] if source else data
            iterations = self.map_iterations if method == "nerfloc-nerfacto-cpu" else self.iterations
            cmd = brief_training_command(method, iterations, work / "runs" / "scale", args, steps_per_log=2)
            train = step(f"train_{method}", cmd)
            runs[method] = config if train["returncode"] == 0 and config.is_file() else None
            record: dict = {"train": train}
            if config.parent.is_dir():  # also a run cut at the step limit: the steps it logged
                train.update(training_speed(config.parent))
            if runs[method] is not None:
                if "s_per_iteration" in train:
                    train["setup_s"] = round(train["seconds"] - iterations * train["s_per_iteration"], 1)
                if method not in ("nerfloc-nerfacto-cpu", "posemap-nerf-cpu"):  # maps other methods localize with
                    out = work / f"localize_{method}"
                    located = step(f"localize_{method}", ["ns-localize", "--load-config", str(config), "--output-dir",
                                                          str(out), "--max-queries", str(self.queries), "--fresh"])  # fmt: skip
                    record["localize"] = self.with_queries(located, out)
            self.add(n, method, record)

    def done(self, frames: int, method: str) -> Optional[dict]:
        """The row of ``method`` at ``frames`` mapping frames, if it is there (only rows that succeeded are kept)."""
        return next((r for r in self.rows if (r["frames"], r["method"]) == (frames, method)), None)

    def with_queries(self, record: dict, out: Path) -> dict:
        metrics = out / "metrics.json"
        if record["returncode"] == 0 and metrics.is_file():
            total = json.loads(metrics.read_text())["timings"]["total"]
            record["query_s_median"] = round(total["median_s"], 3)
            record["setup_s"] = round(record["seconds"] - self.queries * total["mean_s"], 1)
        return record

    def add(self, frames: int, method: str, record: dict) -> None:
        self.rows.append({"frames": frames, "method": method, **record})
        self.rows.sort(key=lambda r: (r["frames"], ORDER.index(r["method"]) if r["method"] in ORDER else len(ORDER)))
        write_json_atomically({"width": self.width, "height": self.height, "iterations": self.iterations,
                               "map_iterations": self.map_iterations, "queries": self.queries, "rows": self.rows},
                              self.output_dir / "method_scale.json")  # fmt: skip
        write_text_atomically(self.markdown(), self.output_dir / "method_scale.md")

    def markdown(self) -> str:
        def cell(value) -> str:
            return "-" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)

        lines = [f"# Method costs against scene size ({self.width}x{self.height}, CPU, {self.iterations} training steps "
                 f"({self.map_iterations} for the Nerfacto map), "
                 f"{self.queries} queries)", "",
                 "| mapping frames | method | train setup (s) | s/iteration | train peak host (MiB) | localize setup (s) "
                 "| query (s, median) | localize peak host (MiB) |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in self.rows:
            if row["method"] == "scene rendering":
                lines.append(f"| {row['frames']} | scene rendering | {cell(row.get('seconds'))} | - | "
                             f"{cell(row.get('peak_host_mib'))} | - | - | - |")  # fmt: skip
                continue
            train, loc = row.get("train", {}), row.get("localize", {})
            failed = [
                f"{k}: {v['returncode']}"
                for k, v in (("train", train), ("localize", loc))
                if v and v["returncode"] != 0
            ]
            lines.append(f"| {row['frames']} | {row['method']}{' (' + '; '.join(failed) + ')' if failed else ''} | "
                         f"{cell(train.get('setup_s'))} | {cell(train.get('s_per_iteration'))} | {cell(train.get('peak_host_mib'))} | "
                         f"{cell(loc.get('setup_s'))} | {cell(loc.get('query_s_median'))} | {cell(loc.get('peak_host_mib'))} |")  # fmt: skip
        return "\n".join(lines) + "\n"


if __name__ == "__main__":
    tyro.cli(MethodScale).main()
