"""Reports show hard queries (hard_queries.txt at the dataset root) apart from the others."""

from pathlib import Path

import numpy as np

from nerfloc_plugins.data.frames import Intrinsics, PosedFrame, hard_query_names
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.outputs.metrics import build_metrics
from nerfloc_plugins.localize.outputs.report import render_markdown
from nerfloc_plugins.localize.outputs.tables import subset_table
from nerfloc_plugins.localize.stages.query_result import QueryResult, StageTimer


def result(root: Path, name: str, error_m: float) -> QueryResult:
    c2w = np.eye(4)
    estimate = c2w.copy()
    estimate[0, 3] += error_m
    frame = PosedFrame(name, root / name, c2w, Intrinsics(100, 100, 32, 24, 64, 48))
    return QueryResult(frame, invert_rigid(estimate), [], 10, 10, 0, StageTimer().per_stage())


def test_hard_queries_are_summarised_apart(tmp_path):
    results = [result(tmp_path, f"seq-03/frame-{i:06d}.color.png", 0.01) for i in range(3)]
    results += [result(tmp_path, f"seq-04/frame-{i:06d}.color.png", 0.5) for i in range(2)]
    metrics, _ = build_metrics(results, "m", "scene", 0, 0.0)
    assert "hard_queries" not in metrics and hard_query_names([r.frame for r in results]) is None

    (tmp_path / "hard_queries.txt").write_text("seq-04/frame-000000.color.png\nseq-04/frame-000001.color.png\n")
    metrics, _ = build_metrics(results, "m", "scene", 0, 0.0)
    hard, other = metrics["hard_queries"], metrics["other_queries"]
    assert hard["num_queries"] == 2 and hard["recall"]["5cm_5deg"] == 0.0
    assert abs(hard["median_translation_cm"] - 50.0) < 1e-6
    assert other["num_queries"] == 3 and other["recall"]["5cm_5deg"] == 1.0
    assert metrics["recall"]["5cm_5deg"] == 0.6
    table = subset_table([metrics])
    assert "| m | hard | 2 | 50.00 |" in table and "| m | other | 3 | 1.00 |" in table
    assert table in render_markdown(metrics, [], None)


def test_stage_timer_waits_for_the_gpu_at_each_stage(monkeypatch):
    """With CUDA in use, a stage's time includes its queued kernels: the timer synchronises at the
    stage's start and end (a stand-in CUDA here; nothing is called without one)."""
    import torch

    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: calls.append("sync"))
    timer = StageTimer()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with timer("pnp"):
        pass
    assert calls == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with timer("match"):
        calls.append("work")
    assert calls == ["sync", "work", "sync"] and timer.per_stage()["match"] >= 0.0
