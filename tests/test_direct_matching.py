"""Direct 2D-3D matching against the whole map, and ns-localize-baseline's direct -> views cascade."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import torch

from nerfloc_plugins.localize.localizers.direct_matching import (
    DirectMatchingConfig,
    nearest_map_points,
    spatial_ratio_matches,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "demo_room"


def test_blockwise_search_equals_one_block():
    gen = torch.Generator().manual_seed(0)
    query = torch.randn(50, 16, generator=gen)
    database = torch.nn.functional.normalize(torch.randn(1000, 16, generator=gen), dim=1)
    values, indices = nearest_map_points(query, database, k=7, chunk=1 << 20)
    values_b, indices_b = nearest_map_points(query, database, k=7, chunk=64)
    assert torch.allclose(values, values_b) and torch.equal(indices, indices_b)
    expected = torch.nn.functional.normalize(query, dim=1) @ torch.nn.functional.normalize(database, dim=1).T
    assert torch.allclose(values[:, 0], expected.max(dim=1).values, atol=1e-6)


def test_spatial_ratio_test_keeps_repeated_views_and_drops_repeated_textures():
    """A point seen twice (same 3D point) is no ambiguity; the same texture 1 m away is."""
    base = torch.nn.functional.normalize(torch.randn(3, 32, generator=torch.Generator().manual_seed(1)), dim=1)
    database = torch.stack([base[0], base[0], base[2]])  # one descriptor twice, another far
    points = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.02, 1.0], [3.0, 0.0, 1.0]])
    config = DirectMatchingConfig(candidates=3)
    query = torch.nn.functional.normalize(base[0] + 0.05 * base[1], dim=0)[None]
    sim, idx = nearest_map_points(query, database, 3, 1024)
    rows, matched = spatial_ratio_matches(sim, idx, points, config)
    assert list(rows) == [0] and matched[0] in (0, 1)  # two views of one point: matched
    points[1] = torch.tensor([1.0, 0.0, 1.0])  # the same texture elsewhere: ambiguous
    rows, _ = spatial_ratio_matches(sim, idx, points, config)
    assert len(rows) == 0


def run_baseline(out: Path, *args: str) -> list:
    cmd = [sys.executable, "-m", "nerfloc_plugins.scripts.localize_baseline", "--data", str(EXAMPLE)]
    result = subprocess.run(cmd + ["--output-dir", str(out), *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return list(csv.DictReader((out / "per_query.csv").open()))


def test_direct_then_views_cascade_on_the_example_scene(tmp_path):
    rows = run_baseline(tmp_path / "best")  # the default: direct, then verified views
    metrics = json.loads((tmp_path / "best" / "metrics.json").read_text())
    assert metrics["method"] == "classical-sift-direct -> classical-sift (top-5 of 20 verified)"
    assert metrics["recall"]["5cm_5deg"] >= 0.95 and metrics["median_translation_cm"] < 1.0
    assert sum(r["stage"] == "classical-sift-direct" for r in rows) >= 18
    # direct matching made to find nothing: every query falls back to the verified views
    rows = run_baseline(tmp_path / "fallback", "--direct.min-similarity", "1.01", "--max-queries", "4")
    assert [r["stage"] for r in rows] == ["classical-sift"] * 4
    assert all(float(r["translation_cm"]) < 5 and int(r["num_inliers"]) >= 30 for r in rows)
