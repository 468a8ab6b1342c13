"""Geometric verification of a retrieval shortlist, and retrieval recall in the reports."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from nerfloc_plugins.data.sevenscenes import SevenScenesDataParserConfig
from nerfloc_plugins.localize.stages.retrieval import is_near_view

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "demo_room"


def test_near_view_is_half_a_metre_and_thirty_degrees():
    a = np.eye(4)
    b = np.eye(4)
    b[:3, 3] = [0.3, 0.3, 0.0]  # 0.42 m
    assert is_near_view(a, b)
    b[:3, 3] = [0.4, 0.4, 0.0]  # 0.57 m
    assert not is_near_view(a, b)
    turn = np.radians(25)
    c = np.eye(4)
    c[:3, :3] = [[np.cos(turn), 0, np.sin(turn)], [0, 1, 0], [-np.sin(turn), 0, np.cos(turn)]]
    assert is_near_view(a, c) and not is_near_view(a, c, degrees=20)


def test_verification_recovers_from_a_wrong_first_candidate(tmp_path):
    """Each query's shortlist starts with the mapping frame farthest from it: taken alone it
    fails every query; re-ranked by PnP inliers the pose is recovered."""
    parser = SevenScenesDataParserConfig(data=EXAMPLE).setup()
    maps, queries = parser.frames("train"), parser.frames("test")
    centres = np.array([f.c2w[:3, 3] for f in maps])
    lines = []
    for q in queries:
        by_distance = np.argsort(np.linalg.norm(centres - q.c2w[:3, 3], axis=1))
        shortlist = [by_distance[-1]] + list(by_distance[:9])  # farthest first, then the nine nearest
        lines += [f"{q.name} {maps[i].name}" for i in shortlist]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")

    def run(out: Path, *args: str) -> dict:
        cmd = [sys.executable, "-m", "nerfloc_plugins.scripts.localize_baseline", "--data", str(EXAMPLE)]
        result = subprocess.run(
            cmd + ["--output-dir", str(out), "--pairs", str(pairs), "--map-matching", "views", *args],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads((out / "metrics.json").read_text())

    plain = run(tmp_path / "plain", "--retrieval.verify", "0", "--retrieval.top-k", "1")
    verified = run(tmp_path / "verified", "--retrieval.verify", "10", "--retrieval.top-k", "2")
    assert plain["recall"]["5cm_5deg"] < 0.2 and plain["retrieval_recall"] == 0.0
    assert verified["recall"]["5cm_5deg"] >= 0.85 and verified["median_translation_cm"] < 2.0
    assert verified["retrieval_recall"] >= 0.85
    assert verified["timings"]["verify"]["mean_s"] > 0
    rows = list(csv.DictReader((tmp_path / "verified" / "per_query.csv").open()))
    farthest = {line.split()[0]: line.split()[1] for line in reversed(lines)}  # first pair of each query
    assert all(len(r["retrieved"].split(";")) == 2 and farthest[r["name"]] not in r["retrieved"] for r in rows)
    assert sum(r["retrieved_near"] == "1" for r in rows) >= 17
    assert "retrieval recall" in (tmp_path / "verified" / "report.md").read_text()


def test_views_from_true_poses_are_the_nearest_looking_alike(tmp_path):
    """``--retrieval.from-true-poses`` (diagnosis): each query's priors are the mapping frames
    nearest its true pose among those looking within 30 deg of it (a near view's angle); the plain baseline given them
    finds every query's near view, and a query without a pose is refused in one line."""
    from nerfloc_plugins.localize.stages.priors import true_pose_neighbours

    frames = []
    for x, yaw in [(0.0, 0), (0.1, 180), (0.3, 10), (0.2, 60), (2.0, 0)]:
        c2w = np.eye(4)
        t = np.radians(yaw)
        c2w[:3, :3] = [[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]]
        c2w[0, 3] = x
        frames.append(type("F", (), {"c2w": c2w})())
    # frame 1 is nearer than 2 but looks the other way; 3 turns 60 deg: after those within 30 deg
    assert true_pose_neighbours(np.eye(4), frames, 4) == [0, 2, 4, 3]

    out = tmp_path / "true"
    cmd = [sys.executable, "-m", "nerfloc_plugins.scripts.localize_baseline", "--data", str(EXAMPLE), "--output-dir",
           str(out), "--map-matching", "views", "--retrieval.from-true-poses", "--retrieval.top-k", "1",
           "--retrieval.verify", "0"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["retrieval_recall"] == 1.0 and metrics["recall"]["5cm_5deg"] >= 0.8
