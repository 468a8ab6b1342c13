"""ns-nerfloc-benchmark on tiny cells: the table and plots, kill-and-resume without redoing finished
steps, a failing cell reported without stopping the others, the same spec through Ray."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nerfloc_plugins.benchmark.spec import read_spec
from nerfloc_plugins.data.frames import DatasetFormatError

ROOT = Path(__file__).resolve().parents[1]
TINY_SCENE = ["--width", "96", "--height", "72", "--frames-per-train-seq", "12", "--frames-test", "4", "--supersample", "1"]


def write_spec(path: Path, methods: str, scenes: str = "") -> Path:
    scenes = scenes or f"""
  room: {{generate: {json.dumps(TINY_SCENE)}}}
  office: {{generate: {json.dumps(TINY_SCENE + ["--room", "office"])}}}
"""
    path.write_text(f"output_dir: out\nseeds: [0]\nscenes:{scenes}\nmethods:{methods}\n")
    return path


BASELINES = """
  baseline: {localize: [ns-localize-baseline, --map-matching, views, --retrieval.top-k, "1", --retrieval.verify, "0"]}
  cascade: {localize: [ns-localize-baseline]}
"""
CROSSFIRE = """
  crossfire-cpu:
    train: [crossfire-cpu]
    train_args: {crossfire-cpu: [--max-num-iterations, "30", --steps-per-save, "1000"]}
    localize: [ns-localize, --refine.iterations, "0"]
"""


def benchmark(spec: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nerfloc_plugins.scripts.benchmark", str(spec), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=spec.parent, **kwargs)


def records(out: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in (out / "steps").glob("*.json") if not p.name.endswith(".failed.json")}


def test_spec_errors_name_the_file_and_key(tmp_path: Path):
    spec = write_spec(tmp_path / "spec.yaml", "\n  mine: {localize: [ns-localize]}\n")
    with pytest.raises(DatasetFormatError, match=r"spec.yaml: methods.mine: ns-localize needs a map"):
        read_spec(spec)
    spec = write_spec(tmp_path / "spec.yaml", "\n  mine: {localize: [ns-render]}\n")
    with pytest.raises(DatasetFormatError, match=r"methods.mine.localize: expected \[ns-localize \| ns-localize-baseline"):
        read_spec(spec)
    spec.write_text("scenes: {a: {data: nowhere}}\nmethods: {b: {localize: [ns-localize-baseline]}}\n")
    with pytest.raises(DatasetFormatError, match=r"scenes.a.data: .*nowhere is not a folder"):
        read_spec(spec)
    spec.write_text("scenes: [\n")
    with pytest.raises(DatasetFormatError, match="spec.yaml: not YAML"):
        read_spec(spec)


def test_steps_share_training_chains_and_follow_run_references(tmp_path: Path):
    from nerfloc_plugins.benchmark.steps import build_steps

    methods = """
  nerf: {train: [nerfloc-nerfacto-cpu], localize: [ns-localize]}
  matcher: {train: [nerfloc-nerfacto-cpu, nerfmatch-mini-cpu], localize: [ns-localize]}
  matcher-b:
    train: [nerfloc-nerfacto-cpu, nerfmatch-mini-cpu]
    train_args: {nerfmatch-mini-cpu: [--max-num-iterations, "10"]}
    localize: [ns-localize]
  rm: {localize: [ns-localize-baseline, --render-match.map, "{run:nerf}"]}
"""
    steps = build_steps(read_spec(write_spec(tmp_path / "spec.yaml", methods)), lambda cell, meta: {})
    train = sorted(s for s in steps if s.startswith("train/room/"))
    assert len(train) == 3  # one Nerfacto run shared by all, two matcher runs (other options)
    assert steps["train/room/seed0/nerfloc-nerfacto-cpu+nerfmatch-mini-cpu"].deps == ["train/room/seed0/nerfloc-nerfacto-cpu"]
    rm = steps["localize/room/seed0/rm"]
    assert "train/room/seed0/nerfloc-nerfacto-cpu" in rm.deps
    nerf_config = rm.command[rm.command.index("--render-match.map") + 1]
    assert nerf_config.endswith("runs/room/seed0/nerfloc-nerfacto-cpu/nerfloc-nerfacto-cpu/run/config.yml")
    assert steps["localize/room/seed0/nerf"].command[steps["localize/room/seed0/nerf"].command.index("--load-config") + 1] == nerf_config
    spec = write_spec(tmp_path / "spec.yaml", "\n  rm: {localize: [ns-localize-baseline, --render-match.map, '{run:nope}']}\n")
    with pytest.raises(DatasetFormatError, match=r"\{run:nope\} names no method with a map"):
        read_spec(spec)


def test_a_classical_cell_may_train_the_map_its_options_name(tmp_path: Path):
    """ns-localize-baseline with a map of its own (render verification): trained before it, shared
    with the method training the same chain, and refused when its options do not name it."""
    from nerfloc_plugins.benchmark.steps import build_steps

    methods = """
  nerf: {train: [nerfloc-nerfacto-cpu], localize: [ns-localize]}
  verified: {train: [nerfloc-nerfacto-cpu], localize: [ns-localize-baseline, --verify.map, "{run:verified}"]}
"""
    steps = build_steps(read_spec(write_spec(tmp_path / "spec.yaml", methods)), lambda cell, meta: {})
    assert len([s for s in steps if s.startswith("train/room/")]) == 1
    verified = steps["localize/room/seed0/verified"]
    assert verified.deps[0] == "train/room/seed0/nerfloc-nerfacto-cpu"
    assert verified.command[verified.command.index("--verify.map") + 1].endswith("nerfloc-nerfacto-cpu/run/config.yml")
    assert "--data" in verified.command and "--load-config" not in verified.command
    spec = write_spec(tmp_path / "spec.yaml", "\n  v: {train: [nerfloc-nerfacto-cpu], localize: [ns-localize-baseline]}\n")
    with pytest.raises(DatasetFormatError, match=r"methods.v: ns-localize-baseline builds its own map .*\{run:v\}"):
        read_spec(spec)


@pytest.mark.slow
def test_two_scenes_three_methods_table_plots_kill_and_resume(tmp_path: Path):
    spec = write_spec(tmp_path / "spec.yaml", BASELINES + CROSSFIRE + "\n  broken: {localize: [ns-localize-baseline, --no-such-option]}\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "nerfloc_plugins.scripts.benchmark", str(spec)]
    process = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 900
    while len(records(out)) < 4 and time.time() < deadline and process.poll() is None:
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)  # the whole benchmark dies mid-run (machine crash)
    process.wait()
    kept = records(out)
    assert 4 <= len(kept) and not (out / "benchmark.md").exists()

    result = benchmark(spec)
    assert result.returncode == 1, result.stderr[-3000:]  # the broken cell fails, the others finish
    assert "error: 2 steps failed" in result.stderr.strip().splitlines()[-1]
    after = records(out)
    assert all(after[name] == mtime for name, mtime in kept.items())  # nothing finished was redone
    logs = {p.name: p.read_text() for p in (out / "logs").glob("*.log")}
    for name in kept:
        log = logs.get(name.replace(".json", ".log"))
        assert log is None or log.count("\n$ ") == 1, name  # each finished command ran once
    table = json.loads((out / "benchmark.json").read_text())
    cells = {(r["scene"], r["method"]) for r in table["rows"]}
    assert cells == {(s, m) for s in ("room", "office") for m in ("baseline", "cascade", "crossfire-cpu")}
    rows = {(r["scene"], r["method"]): r for r in table["rows"]}
    assert rows[("room", "cascade")]["recall"]["10cm_10deg"] >= 0.6  # the classical pipeline localizes
    assert rows[("room", "crossfire-cpu")]["train_s"] > 5 and rows[("room", "baseline")]["train_s"] == 0
    assert {r["method"] for r in table["average"]} == {"baseline", "cascade", "crossfire-cpu"}
    assert set(table["failed"]) == {"localize/room/seed0/broken", "localize/office/seed0/broken"}
    markdown = (out / "benchmark.md").read_text()
    assert "| room | cascade |" in markdown and "average (2 scenes)" in markdown and "no-such-option" in markdown
    assert (out / "plots" / "recall_curves.png").stat().st_size > 10000
    assert len((out / "benchmark.csv").read_text().splitlines()) == 1 + 6 + 3
    assert "localize/room/seed0/broken` failed: " in markdown and "no-such-option" in table["failed"]["localize/room/seed0/broken"]

    again = benchmark(spec)  # everything finished: nothing is run again, the same table
    assert records(out) == after
    assert json.loads((out / "benchmark.json").read_text())["rows"] == table["rows"], again.stderr[-2000:]


@pytest.mark.slow
def test_the_same_spec_runs_through_ray(tmp_path: Path):
    pytest.importorskip("ray")
    spec = write_spec(
        tmp_path / "spec.yaml", BASELINES, f"\n  room: {{generate: {json.dumps(TINY_SCENE)}}}\n"
    )
    result = benchmark(spec, "--ray-address", "local")
    assert result.returncode == 0, result.stderr[-3000:]
    table = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert {r["method"] for r in table["rows"]} == {"baseline", "cascade"}
    assert all(r["recall"]["10cm_10deg"] is not None for r in table["rows"])
    local = benchmark(spec, "--output-dir", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr[-3000:]
    rows = json.loads((tmp_path / "local" / "benchmark.json").read_text())["rows"]
    assert [(r["method"], r["median_translation_cm"]) for r in rows] == [
        (r["method"], r["median_translation_cm"]) for r in table["rows"]
    ]  # Ray or local: the same results


def test_reported_rows_sit_beside_the_measured_ones(tmp_path: Path):
    """A method's published numbers (``reported`` in the spec) print as ``<method> (reported)`` after
    its own row per scene and after its average; bad entries are one-line errors."""
    from nerfloc_plugins.benchmark.tables import write_comparison

    reported = """
  cascade:
    localize: [ns-localize-baseline]
    reported:
      source: HLoc, NeRFMatch Table 2 (SfM pGT)
      room: {median_cm: 0.8, median_deg: 0.1}
      average: {median_cm: 1.3, median_deg: 0.3, recall_5cm_5deg: 95.7}
"""
    spec = read_spec(write_spec(tmp_path / "spec.yaml", reported))
    method = spec.methods[0]
    assert method.reported_source.startswith("HLoc") and method.reported["average"]["recall_5cm_5deg"] == 95.7
    out = tmp_path / "out"
    for scene, cm in (("room", 1.5), ("office", 2.5)):
        cell = out / "cells" / scene / "cascade" / "seed0"
        cell.mkdir(parents=True)
        result = {"scene": scene, "method": "cascade", "seed": 0, "num_queries": 4, "num_failed": 0,
                  "median_translation_cm": cm, "median_rotation_deg": 0.5, "train_s": 0.0, "query_s": 0.2,
                  "map_size_mb": 1.0, "recall": {"5cm_5deg": 1.0}, "errors": [[cm, 0.5]] * 4}  # fmt: skip
        (cell / "result.json").write_text(json.dumps(result))
    table = write_comparison(out, ["cascade"], ["room", "office"], {}, reported={"cascade": method.reported},
                             sources={"cascade": method.reported_source})  # fmt: skip
    assert [(r["scene"], r["method"]) for r in table["rows"]] == [
        ("room", "cascade"), ("room", "cascade (reported)"), ("office", "cascade")]  # fmt: skip
    assert table["rows"][1]["median_translation_cm"] == 0.8 and table["rows"][1]["recall"]["5cm_5deg"] is None
    assert table["average"][1]["method"] == "cascade (reported)" and table["average"][1]["recall"]["5cm_5deg"] == pytest.approx(0.957)
    assert table["average"][0]["median_translation_cm"] == 2.0 and table["missing"] == []  # measured rows only
    markdown = (out / "benchmark.md").read_text()
    assert "| room | cascade (reported) | 0.80 | 0.10 |" in markdown and "95.7" in markdown
    assert "- `cascade (reported)`: HLoc, NeRFMatch Table 2 (SfM pGT)" in markdown
    bad = reported.replace("room: {", "kitchen: {")
    with pytest.raises(DatasetFormatError, match=r"methods.cascade.reported: unknown key 'kitchen'"):
        read_spec(write_spec(tmp_path / "spec.yaml", bad))
    with pytest.raises(DatasetFormatError, match=r"methods.cascade.reported.average.median_cm: expected a number"):
        read_spec(write_spec(tmp_path / "spec.yaml", reported.replace("median_cm: 1.3", "median_cm: fast")))


def test_the_sevenscenes_pgt_spec_reads_once_its_folders_exist(tmp_path: Path):
    text = (ROOT / "benchmarks" / "specs" / "sevenscenes_pgt.yaml").read_text()
    text = text.replace("/data/", f"{tmp_path}/data/").replace("../results", str(tmp_path / "results"))
    for scene in ("chess", "fire", "heads", "office", "pumpkin", "redkitchen", "stairs"):
        (tmp_path / "data" / "7scenes" / scene).mkdir(parents=True)
    (tmp_path / "spec.yaml").write_text(text)
    spec = read_spec(tmp_path / "spec.yaml")
    assert [m.name for m in spec.methods] == ["cascade", "nerfmatch-mini", "nerfmatch"]
    assert all(len(m.reported) == 8 for m in spec.methods)  # 7 scenes + average
    assert spec.scenes[0].dataparser_args[0] == "--pgt"
    assert spec.methods[2].reported["average"] == {"median_cm": 2.7, "median_deg": 0.7, "recall_5cm_5deg": 75.3}


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (ROOT / "benchmarks" / "specs").glob("*.yaml") if p.name != "sevenscenes_pgt.yaml")
)
def test_every_shipped_spec_reads_and_plans_its_steps(name: str, tmp_path: Path):
    """The specs in benchmarks/specs (but the one needing 7-Scenes on disk) read, and every
    method gets a scoring step on every scene."""
    from nerfloc_plugins.benchmark.steps import build_steps

    spec = read_spec(ROOT / "benchmarks" / "specs" / name, tmp_path / "results")
    steps = build_steps(spec, lambda cell, meta: None)
    scored = {step_id for step_id in steps if step_id.startswith("score/")}
    assert len(scored) == len(spec.scenes) * len(spec.methods) * len(spec.seeds)
