"""The steps of a benchmark and their durable records.

A spec expands into steps with dependencies: ``scene`` (render a generated scene), ``train`` (one
``ns-train`` stage; shared by every method whose chain starts with it), ``localize`` (``ns-localize``
or ``ns-localize-baseline`` of one cell) and ``score`` (read the cell's result files). A finished step
is recorded in ``OUTPUT/steps/<id>.json`` (written atomically after it succeeded): a rerun skips it
and never overwrites what it made; a failed one leaves ``<id>.failed.json`` (tried again next time)
and its dependents are skipped. Every command's output goes to ``OUTPUT/logs/<id>.log``.

Layout of OUTPUT::

    scenes/<scene>/                            generated scenes
    runs/<scene>/seed<k>/<chain>/<method>/run/ ns-train runs (config.yml, nerfstudio_models/)
    cells/<scene>/<method>/seed<k>/            ns-localize output (poses.txt, metrics.json, report.md)
    cells/<scene>/<method>/seed<k>/result.json the cell's scores (what the tables read)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from nerfloc_plugins.benchmark.spec import BenchmarkSpec, MethodSpec, SceneSpec
from nerfloc_plugins.utils.atomic import write_json_atomically

MODULES = {
    "ns-train": "nerfstudio.scripts.train",
    "ns-localize": "nerfloc_plugins.scripts.localize",
    "ns-localize-baseline": "nerfloc_plugins.scripts.localize_baseline",
    "nerfloc-make-scene": "nerfloc_plugins.scripts.make_scene",
}


def python_command(name: str, *args: str) -> List[str]:
    """``[python, -m, module, args...]`` of a nerfloc / Nerfstudio command (no PATH needed)."""
    return [sys.executable, "-m", MODULES[name], *args]


@dataclass
class Step:
    id: str
    """``kind/scene/...``: unique, also the record's file name."""
    kind: str
    command: Optional[List[str]] = None
    """The subprocess; ``None`` for in-process steps (``score``)."""
    deps: List[str] = field(default_factory=list)
    cpus: float = 1.0
    gpus: float = 0.0
    output: Optional[Path] = None
    """What the step writes; removed before a step that did not finish is run again."""
    action: Optional[Callable[[], dict]] = None
    """In-process steps: returns what the record keeps."""


def record_path(out: Path, step_id: str, failed: bool = False) -> Path:
    return out / "steps" / (step_id.replace("/", "__") + (".failed.json" if failed else ".json"))


def finished(out: Path, step_id: str) -> Optional[dict]:
    path = record_path(out, step_id)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_command_step(step: Step, out: Path, threads: Optional[int] = None) -> dict:
    """Run one subprocess step; ``{"returncode", "seconds", "log"}`` (the head records it)."""
    log = out / "logs" / (step.id.replace("/", "__") + ".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    start = time.perf_counter()
    with open(log, "a") as handle:
        handle.write(f"\n$ {' '.join(step.command)}\n")
        handle.flush()
        result = subprocess.run(step.command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=out)
    return {"returncode": result.returncode, "seconds": time.perf_counter() - start, "log": str(log)}


def log_tail(path: str, lines: int = 15) -> str:
    """The last ``lines`` lines of a step's log that hold text (not progress-bar or box drawing)."""
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join([line for line in text if any(c.isalnum() for c in line)][-lines:])


def error_line(text: str) -> str:
    """The line of a failed step's output that says why: its last ``error: ...`` (or tyro's
    "Unrecognized options", or an exception) line, box drawing stripped; else its last line."""
    lines = [line.strip(" \t│╭╰─┃") for line in text.splitlines()]
    lines = [line for line in lines if any(c.isalnum() for c in line)]
    said = [line for line in lines if line.lower().startswith("error") or "Error:" in line or "Unrecognized" in line]
    return (said or lines or ["failed"])[-1]


def scene_data(spec: BenchmarkSpec, scene: SceneSpec) -> Path:
    return scene.data if scene.data is not None else spec.output_dir / "scenes" / scene.name


def chain_key(method: MethodSpec, stages: int) -> str:
    """Name of the first ``stages`` training stages of ``method``: ``nerfloc-nerfacto-cpu+nerfmatch-mini-cpu``;
    a stage with extra options gets their digest (``neuraloc-cpu@1a2b3c4d``), so methods share a
    training run exactly when they train the same stages with the same options."""
    names = []
    for stage in method.train[:stages]:
        args = method.train_args.get(stage, [])
        names.append(stage + (f"@{hashlib.sha1(' '.join(args).encode()).hexdigest()[:8]}" if args else ""))
    return "+".join(names)


def chain_run(spec: BenchmarkSpec, scene: SceneSpec, seed: int, method: MethodSpec, stages: int) -> Path:
    """config.yml of the run of ``method``'s first ``stages`` training stages for one scene and seed."""
    base = spec.output_dir / "runs" / scene.name / f"seed{seed}" / chain_key(method, stages)
    return base / method.train[stages - 1] / "run" / "config.yml"


def train_steps(spec: BenchmarkSpec, scene: SceneSpec, seed: int, method: MethodSpec, deps: List[str]) -> List[Step]:
    steps, previous = [], None
    for k, stage in enumerate(method.train):
        config = chain_run(spec, scene, seed, method, k + 1)
        args = [
            stage, "--output-dir", str(config.parents[3]), "--experiment-name", config.parents[2].name,
            "--timestamp", "run", "--machine.seed", str(seed), "--vis", "tensorboard",
            "--viewer.quit-on-train-completion", "True", *method.train_args.get(stage, []),
        ]  # fmt: skip
        if previous is None:
            args += [scene.dataparser, "--data", str(scene_data(spec, scene)), *scene.dataparser_args]
        else:
            args += ["--data", str(previous)]
        step_id = f"train/{scene.name}/seed{seed}/{chain_key(method, k + 1)}"
        steps.append(
            Step(step_id, "train", python_command("ns-train", *args), deps=list(deps), gpus=method.gpus,
                 output=config.parent)
        )  # fmt: skip
        deps, previous = [step_id], config
    return steps


def cell_dir(spec: BenchmarkSpec, scene: SceneSpec, method: MethodSpec, seed: int) -> Path:
    return spec.output_dir / "cells" / scene.name / method.name / f"seed{seed}"


def localize_command(
    spec: BenchmarkSpec, scene: SceneSpec, method: MethodSpec, seed: int, run: Optional[Path]
) -> List[str]:
    output = cell_dir(spec, scene, method, seed) / "localize"
    common = ["--output-dir", str(output), "--retrieval.seed", str(seed)]
    if method.command == "ns-localize":
        return python_command("ns-localize", "--load-config", str(run), *common, *method.localize[1:])
    data = scene_data(spec, scene)
    return python_command(
        "ns-localize-baseline",
        "--data",
        str(data),
        *common,
        *method.localize[1:],
        scene.dataparser,
        *scene.dataparser_args,
    )


RUN_REFERENCE = re.compile(r"\{run:([^}]+)\}")
"""``{run:METHOD}`` in a method's options: the config.yml of METHOD's run for the same scene and seed."""


def substitute_runs(command: List[str], maps: Dict[str, tuple]) -> tuple:
    """``command`` with every ``{run:METHOD}`` replaced, and the steps that make those runs."""
    refs: List[Optional[str]] = []

    def replace(match: "re.Match") -> str:
        config, step_id = maps[match.group(1)]
        refs.append(step_id)
        return str(config)

    return [RUN_REFERENCE.sub(replace, word) for word in command], refs


def build_steps(spec: BenchmarkSpec, score: Callable[[Path, dict], dict]) -> Dict[str, Step]:
    """Every step of ``spec`` by id, in an order that respects dependencies; ``score(cell_dir,
    train_seconds)`` is the in-process scoring of one cell."""
    steps: Dict[str, Step] = {}
    for scene in spec.scenes:
        scene_deps = []
        if scene.generate is not None:
            target = scene_data(spec, scene)
            step = Step(f"scene/{scene.name}", "scene", python_command("nerfloc-make-scene", *scene.generate,
                        "--output-dir", str(target)), output=target)  # fmt: skip
            steps[step.id] = step
            scene_deps = [step.id]
        for seed in spec.seeds:
            maps: Dict[str, tuple] = {}  # method -> (its run's config.yml, the step that makes it)
            chains: Dict[str, List[Step]] = {}
            for method in spec.methods:
                chain = train_steps(spec, scene, seed, method, scene_deps) if method.run is None else []
                for step in chain:
                    steps.setdefault(step.id, step)
                chains[method.name] = chain
                if method.run is not None:
                    maps[method.name] = (method.run, None)
                elif chain:
                    maps[method.name] = (chain_run(spec, scene, seed, method, len(chain)), chain[-1].id)
            for method in spec.methods:
                chain = chains[method.name]
                run = maps.get(method.name, (None, None))[0]
                command, refs = substitute_runs(localize_command(spec, scene, method, seed, run), maps)
                deps = ([chain[-1].id] if chain else list(scene_deps)) + [d for d in refs if d is not None]
                loc = Step(
                    f"localize/{scene.name}/seed{seed}/{method.name}", "localize", command, deps=deps,
                    output=cell_dir(spec, scene, method, seed) / "localize",
                )  # fmt: skip
                steps[loc.id] = loc
                train_ids = [s.id for s in chain]
                cell = cell_dir(spec, scene, method, seed)
                steps[f"score/{scene.name}/seed{seed}/{method.name}"] = Step(
                    f"score/{scene.name}/seed{seed}/{method.name}", "score", deps=[loc.id],
                    action=lambda cell=cell, ids=train_ids, meta=(scene.name, method.name, seed): score(
                        cell, {"train_steps": ids, "scene": meta[0], "method": meta[1], "seed": meta[2]}
                    ),
                )  # fmt: skip
    return steps


def remove_partial(output: Optional[Path]) -> None:
    """Remove what a step that did not finish left (a killed training run's folder)."""
    if output is not None and output.exists():
        shutil.rmtree(output) if output.is_dir() else output.unlink()


def write_record(out: Path, step: Step, record: dict) -> None:
    write_json_atomically({"id": step.id, "command": step.command, **record}, record_path(out, step.id))
    failed = record_path(out, step.id, failed=True)
    if failed.exists():
        failed.unlink()


def write_failure(out: Path, step: Step, record: dict) -> None:
    write_json_atomically({"id": step.id, "command": step.command, **record}, record_path(out, step.id, failed=True))
