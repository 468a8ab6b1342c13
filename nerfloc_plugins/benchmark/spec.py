"""The benchmark spec: scenes x methods x seeds, read from one YAML file.

```yaml
output_dir: outputs/benchmark/example      # relative paths: relative to the spec file
seeds: [0]
scenes:
  demo_room: {data: ../examples/demo_room}              # dataparser: sevenscenes-data (default)
  office:    {generate: [--room, office, --hard-queries, "16"]}   # nerfloc-make-scene, written once
  kings:     {data: /data/Cambridge/KingsCollege, dataparser: cambridge-data, dataparser_args: [--focal, "1670"]}
methods:
  baseline:  {localize: [ns-localize-baseline, --map-matching, views, --retrieval.top-k, "1"]}
  cascade:   {localize: [ns-localize-baseline]}           # the default pipeline
  crossfire-cpu:
    train: [crossfire-cpu]                                 # ns-train stages (a chain: each later
    train_args: {crossfire-cpu: [--max-num-iterations, "3000"]}   # stage's --data is the run before)
    localize: [ns-localize, --crossfire.render-scale, "2"]
  nerfmatch-mini-cpu:
    train: [nerfloc-nerfacto-cpu, nerfmatch-mini-cpu]
    localize: [ns-localize, --refine.photometric.steps, "50"]
  mine: {run: outputs/x/config.yml, localize: [ns-localize]}   # a finished run, reused (one scene)
  baseline+rm:  # {run:METHOD}: that method's run for the same scene and seed (trained first)
    localize: [ns-localize-baseline, --render-match.iterations, "3", --render-match.map, "{run:nerfmatch-mini-cpu}"]
  verified:     # ns-localize-baseline with a map of its own: its options name its run
    train: [nerfloc-nerfacto-cpu]
    localize: [ns-localize-baseline, --verify.map, "{run:verified}"]
  nerfmatch:
    train: [nerfloc-nerfacto, nerfmatch]
    localize: [ns-localize]
    reported:   # the paper's numbers, printed beside this method's rows ("<method> (reported)")
      source: NeRFMatch Table 2 (7-Scenes, SfM pGT)
      chess: {median_cm: 0.9, median_deg: 0.3}     # keys: scenes of this spec, or average
      average: {median_cm: 2.7, median_deg: 0.7, recall_5cm_5deg: 75.3}      # recall in %
```

A method's ``localize`` starts with the command (``ns-localize`` on the method's run, or
``ns-localize-baseline`` on the scene) followed by its options; the benchmark adds the data / run,
the output folder and the dataparser.  Errors name the spec file and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from nerfloc_plugins.data.errors import format_error
from nerfloc_plugins.data.text_files import read_text

LOCALIZE_COMMANDS = ("ns-localize", "ns-localize-baseline")


@dataclass(frozen=True)
class SceneSpec:
    name: str
    data: Optional[Path]
    """Dataset folder; ``None`` when ``generate`` renders one."""
    dataparser: str = "sevenscenes-data"
    dataparser_args: List[str] = field(default_factory=list)
    generate: Optional[List[str]] = None
    """``nerfloc-make-scene`` options: the scene is rendered once into the benchmark's folder."""


@dataclass(frozen=True)
class MethodSpec:
    name: str
    localize: List[str]
    """``[command, options...]``: ``ns-localize`` or ``ns-localize-baseline`` and its options."""
    train: List[str] = field(default_factory=list)
    """``ns-train`` methods run in order; each later stage trains on the run before it."""
    train_args: Dict[str, List[str]] = field(default_factory=dict)
    """Extra ``ns-train`` options per stage method."""
    run: Optional[Path] = None
    """A finished run to reuse instead of training (its ``config.yml``)."""
    gpus: float = 0.0
    """GPUs a training step of this method declares (Ray); 0 on CPU presets."""
    reported: Dict[str, Dict[str, float]] = field(default_factory=dict)
    """Published numbers per scene name (or ``average``): ``median_cm``, ``median_deg``,
    ``recall_5cm_5deg`` (%)."""
    reported_source: str = ""
    """Where the published numbers come from (paper, table, ground truth)."""

    @property
    def command(self) -> str:
        return self.localize[0]


@dataclass(frozen=True)
class BenchmarkSpec:
    path: Path
    output_dir: Path
    scenes: List[SceneSpec]
    methods: List[MethodSpec]
    seeds: List[int] = field(default_factory=lambda: [0])


def strings(value: Any, where: str, path: Path) -> List[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise format_error(path, f"{where}: expected a list of command-line words")
    return [str(v) for v in value]


def mapping(value: Any, where: str, path: Path, keys: tuple) -> dict:
    if not isinstance(value, dict):
        raise format_error(path, f"{where}: expected a mapping")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise format_error(path, f"{where}: unknown key {unknown[0]!r} (expected {', '.join(keys)})")
    return value


def resolve(base: Path, value: Any, where: str, path: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise format_error(path, f"{where}: expected a path")
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


REPORTED_KEYS = ("median_cm", "median_deg", "recall_5cm_5deg")


def read_reported(value: Any, where: str, path: Path, scenes: List[str]) -> tuple:
    """``(source, {scene or 'average': {key: number}})`` of a method's ``reported`` entry."""
    if value is None:
        return "", {}
    entry = mapping(value, where, path, ("source", "average", *scenes))
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        raise format_error(path, f"{where}.source: expected where the numbers come from (paper, table)")
    numbers = {}
    for key, row in entry.items():
        if key == "source":
            continue
        row = mapping(row, f"{where}.{key}", path, REPORTED_KEYS)
        for name, number in row.items():
            if not isinstance(number, (int, float)) or isinstance(number, bool) or number < 0:
                raise format_error(path, f"{where}.{key}.{name}: expected a number >= 0")
        numbers[str(key)] = {k: float(v) for k, v in row.items()}
    return source.strip(), numbers


def read_spec(path: Path, output_dir: Optional[Path] = None) -> BenchmarkSpec:
    """Read and check a benchmark spec (see the module docstring)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(read_text(path, "benchmark spec (YAML)"))
    except yaml.YAMLError as err:
        raise format_error(path, f"not YAML ({str(err).splitlines()[0]})") from None
    top = mapping(raw, "the spec", path, ("output_dir", "seeds", "scenes", "methods"))
    base = path.parent.resolve()
    seeds = top.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise format_error(path, "seeds: expected a non-empty list of integers")
    scenes = []
    for name, value in mapping(top.get("scenes"), "scenes", path, tuple(top.get("scenes") or ())).items():
        where = f"scenes.{name}"
        entry = mapping(value, where, path, ("data", "dataparser", "dataparser_args", "generate"))
        if ("data" in entry) == ("generate" in entry):
            raise format_error(
                path, f"{where}: give 'data' (a dataset folder) or 'generate' (nerfloc-make-scene options)"
            )
        data = resolve(base, entry["data"], f"{where}.data", path) if "data" in entry else None
        if data is not None and not data.is_dir():
            raise format_error(path, f"{where}.data: {data} is not a folder")
        scenes.append(
            SceneSpec(
                str(name), data, str(entry.get("dataparser", "sevenscenes-data")),
                strings(entry.get("dataparser_args"), f"{where}.dataparser_args", path),
                strings(entry["generate"], f"{where}.generate", path) if "generate" in entry else None,
            )
        )  # fmt: skip
    methods = []
    for name, value in mapping(top.get("methods"), "methods", path, tuple(top.get("methods") or ())).items():
        where = f"methods.{name}"
        entry = mapping(value, where, path, ("localize", "train", "train_args", "run", "gpus", "reported"))
        localize = strings(entry.get("localize"), f"{where}.localize", path)
        if not localize or localize[0] not in LOCALIZE_COMMANDS:
            raise format_error(path, f"{where}.localize: expected [{' | '.join(LOCALIZE_COMMANDS)}, options...]")
        train = strings(entry.get("train"), f"{where}.train", path)
        run = resolve(base, entry["run"], f"{where}.run", path) if "run" in entry else None
        needs_run = localize[0] == "ns-localize"
        if needs_run and not train and run is None:
            raise format_error(path, f"{where}: ns-localize needs a map: give 'train' (ns-train methods) or 'run'")
        if not needs_run and (train or run is not None) and f"{{run:{name}}}" not in " ".join(localize):
            raise format_error(
                path,
                f"{where}: ns-localize-baseline builds its own map ('train' / 'run' unused unless its options "
                f"name the run, e.g. --verify.map {{run:{name}}})",
            )
        train_args = {
            str(k): strings(v, f"{where}.train_args.{k}", path)
            for k, v in mapping(entry.get("train_args", {}), f"{where}.train_args", path, tuple(train)).items()
        }
        gpus = entry.get("gpus", 0.0)
        if not isinstance(gpus, (int, float)) or gpus < 0:
            raise format_error(path, f"{where}.gpus: expected a number >= 0")
        source, reported = read_reported(entry.get("reported"), f"{where}.reported", path, [s.name for s in scenes])
        methods.append(MethodSpec(str(name), localize, train, train_args, run, float(gpus), reported, source))
    if not scenes or not methods:
        raise format_error(path, "expected at least one scene and one method")
    with_map = {m.name for m in methods if m.train or m.run is not None}
    for method in methods:
        for word in method.localize:
            for name in re.findall(r"\{run:([^}]+)\}", word):
                if name not in with_map:
                    raise format_error(
                        path, f"methods.{method.name}.localize: {{run:{name}}} names no method with a map"
                    )
    if any(m.run is not None for m in methods) and len(scenes) > 1:
        raise format_error(path, "a method with 'run' (one trained map) fits one scene; the spec has several")
    out = output_dir or resolve(base, top.get("output_dir", "benchmark_outputs"), "output_dir", path)
    return BenchmarkSpec(path.resolve(), Path(out), scenes, methods, list(seeds))
