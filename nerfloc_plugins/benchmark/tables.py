"""Scores of benchmark cells and the comparison across methods and scenes (Markdown, JSON, CSV, plots).

A cell's ``result.json``: the method, scene, seed, its ``metrics.json`` (median cm / deg, recalls,
failures, wrong-place poses left unflagged (> 50 cm), unverified poses, per-query time, map size), the training time of its ``train`` steps, and the per-query
errors (for the recall curves). The comparison, in the papers' format: one row per method and scene
(seeds averaged), and per method the mean over scenes of the medians and recalls.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from nerfloc_plugins.benchmark.steps import error_line, finished
from nerfloc_plugins.localize.outputs.per_query_csv import read_query_errors
from nerfloc_plugins.utils.atomic import atomic_path, write_json_atomically, write_text_atomically

RECALLS = ("1cm_1deg", "5cm_5deg", "10cm_10deg", "25cm_2deg", "50cm_5deg")
"""Recall columns of the tables (metrics.json's ``recall`` keys)."""
CURVE_CM = np.geomspace(0.5, 100.0, 60)
"""Thresholds of the recall curves: ``t`` cm and ``t`` degrees."""


def score_cell(out: Path, cell: Path, meta: dict) -> dict:
    """Write ``cell/result.json`` from the cell's localize output and its train steps' records."""
    loc = cell / "localize"
    metrics = json.loads((loc / "metrics.json").read_text())
    train_seconds = 0.0
    for step_id in meta["train_steps"]:
        record = finished(out, step_id)
        train_seconds += float(record.get("seconds", 0.0)) if record else 0.0
    result = {
        "scene": meta["scene"],
        "method": meta["method"],
        "seed": meta["seed"],
        "localizer": metrics.get("method"),
        "num_queries": metrics.get("num_queries"),
        "num_failed": metrics.get("num_failed"),
        "median_translation_cm": metrics.get("median_translation_cm"),
        "median_rotation_deg": metrics.get("median_rotation_deg"),
        "recall": metrics.get("recall", {}),
        "hard_recall": (metrics.get("hard_queries") or {}).get("recall", {}).get("5cm_5deg"),
        "retrieval_recall": metrics.get("retrieval_recall"),
        "wrong_place": wrong_place_confident(metrics),
        "unverified": (metrics.get("verification") or {}).get("num_unverified", 0),
        "query_s": (metrics.get("timings", {}).get("total") or {}).get("median_s"),
        "map_size_mb": metrics.get("map_size_mb"),
        "train_s": train_seconds,
        "errors": [
            [e.translation_cm, e.rotation_deg] if not e.failed else None
            for e in read_query_errors(loc / "per_query.csv")
        ],
        "report": str(loc / "report.md"),
    }
    write_json_atomically(result, cell / "result.json")
    return {"result": str(cell / "result.json")}


def wrong_place_confident(metrics: dict) -> Optional[int]:
    """Poses more than 50 cm off that nothing flagged (render verification's ``unverified`` poses
    are flagged); ``None`` for metrics without that count."""
    verification = metrics.get("verification") or {}
    if "wrong_place_confident" in verification:
        return verification["wrong_place_confident"]
    return metrics.get("num_wrong_place")


def read_results(out: Path) -> List[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*/*/seed*/result.json"))]


def mean(values: Sequence[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def rows_by_scene(results: List[dict], methods: List[str], scenes: List[str]) -> List[dict]:
    """One row per (scene, method), seeds averaged; missing cells are absent."""
    rows = []
    for scene in scenes:
        for method in methods:
            cells = [r for r in results if r["scene"] == scene and r["method"] == method]
            if cells:
                rows.append(aggregate(cells, scene, method))
    return rows


def aggregate(cells: List[dict], scene: str, method: str) -> dict:
    return {
        "scene": scene,
        "method": method,
        "seeds": len(cells),
        "num_queries": cells[0]["num_queries"],
        "num_failed": mean([c["num_failed"] for c in cells]),
        "median_translation_cm": mean([c["median_translation_cm"] for c in cells]),
        "median_rotation_deg": mean([c["median_rotation_deg"] for c in cells]),
        "recall": {k: mean([c["recall"].get(k) for c in cells]) for k in RECALLS},
        "hard_recall": mean([c.get("hard_recall") for c in cells]),
        "retrieval_recall": mean([c.get("retrieval_recall") for c in cells]),
        "wrong_place": mean([c.get("wrong_place") for c in cells]),
        "unverified": mean([c.get("unverified") for c in cells]),
        "query_s": mean([c["query_s"] for c in cells]),
        "map_size_mb": mean([c["map_size_mb"] for c in cells]),
        "train_s": mean([c["train_s"] for c in cells]),
    }


def reported_row(method: str, scene: str, numbers: Dict[str, float]) -> dict:
    """A table row of published numbers (``median_cm``, ``median_deg``, ``recall_5cm_5deg`` in %)."""
    recall = numbers.get("recall_5cm_5deg")
    row = {k: None for k in ("num_queries", "num_failed", "hard_recall", "retrieval_recall", "wrong_place",
                             "unverified", "query_s", "map_size_mb", "train_s")}  # fmt: skip
    row.update(scene=scene, method=f"{method} (reported)", seeds=0, reported=True,
               median_translation_cm=numbers.get("median_cm"), median_rotation_deg=numbers.get("median_deg"),
               recall={k: (recall / 100 if k == "5cm_5deg" and recall is not None else None) for k in RECALLS})  # fmt: skip
    return row


def with_reported(rows: List[dict], reported: Dict[str, Dict[str, Dict[str, float]]], average: bool) -> List[dict]:
    """``rows`` with each method's published row (for the same scene, or ``average``) after its own."""
    out = []
    for row in rows:
        out.append(row)
        numbers = reported.get(row["method"], {}).get("average" if average else row["scene"])
        if numbers:
            out.append(reported_row(row["method"], row["scene"], numbers))
    return out


def averaged(rows: List[dict], methods: List[str]) -> List[dict]:
    """Per method, the mean over the scenes it has of each column (the papers' "Avg." row)."""
    out = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        if mine:
            row = {k: mean([r.get(k) for r in mine]) for k in ("num_failed", "median_translation_cm", "hard_recall",
                   "retrieval_recall", "median_rotation_deg", "query_s", "map_size_mb", "train_s", "wrong_place",
                   "unverified")}  # fmt: skip
            row.update(scene=f"average ({len(mine)} scenes)", method=method, seeds=mine[0]["seeds"],
                       num_queries=sum(r["num_queries"] or 0 for r in mine),
                       recall={k: mean([r["recall"][k] for r in mine]) for k in RECALLS})  # fmt: skip
            out.append(row)
    return out


def fmt(value: Optional[float], digits: int = 1, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


COLUMNS = ["scene", "method", "median cm", "median deg", *[f"{k.replace('_', '/')} %" for k in RECALLS],
           "hard 5cm/5deg %", "retrieval %", "failed", "wrong-place", "unverified", "train min", "ms/query",
           "map MB"]  # fmt: skip


def table_cells(row: dict) -> List[str]:
    return [
        row["scene"], row["method"], fmt(row["median_translation_cm"], 2), fmt(row["median_rotation_deg"], 2),
        *[fmt(row["recall"].get(k), 1, 100) for k in RECALLS], fmt(row.get("hard_recall"), 1, 100),
        fmt(row.get("retrieval_recall"), 1, 100), fmt(row["num_failed"], 1), fmt(row.get("wrong_place"), 1),
        fmt(row.get("unverified"), 1), fmt(row["train_s"], 1, 1 / 60), fmt(row["query_s"], 0, 1000), fmt(row["map_size_mb"], 1),
    ]  # fmt: skip


def markdown_table(rows: List[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def write_comparison(
    out: Path,
    methods: List[str],
    scenes: List[str],
    failures: Dict[str, str],
    skipped: Optional[Dict[str, str]] = None,
    reported: Optional[Dict[str, Dict[str, Dict[str, float]]]] = None,
    sources: Optional[Dict[str, str]] = None,
) -> dict:
    """``benchmark.md``, ``benchmark.json``, ``benchmark.csv`` and ``plots/`` in ``out``; ``failures``:
    step id -> error, ``skipped``: step id -> the failed step it waited for; ``reported``: method ->
    scene (or ``average``) -> published numbers, shown after the method's row (``sources``: method ->
    where they come from)."""
    results = read_results(out)
    measured = rows_by_scene(results, methods, scenes)
    measured_avg = averaged(measured, methods)
    rows = with_reported(measured, reported or {}, average=False)
    avg = with_reported(measured_avg, reported or {}, average=True)
    skipped = skipped or {}
    missing = [
        f"{s}/{m}" for s in scenes for m in methods if not any(r["scene"] == s and r["method"] == m for r in measured)
    ]
    explained = {"/".join(step.split("/")[1::2]) for step in [*failures, *skipped] if step.count("/") == 3}
    text = ["# Benchmark", "", markdown_table(rows + avg), ""]
    if reported:
        text += [f"- `{m} (reported)`: {(sources or {}).get(m, 'published numbers')}" for m in methods if m in reported]
        text.append("")
    if failures or missing:
        text += ["## Failed or missing cells", ""]
        text += [f"- `{step}` failed: {error_line(error)}" for step, error in failures.items()]
        text += [
            f"- `{step}` not run: `{cause}` failed" for step, cause in skipped.items() if step.startswith("localize/")
        ]
        text += [f"- `{cell}`: no result yet" for cell in missing if cell not in explained]
        text.append("")
    plots = write_plots(out / "plots", results, methods, scenes, measured)
    text += [f"![{Path(p).stem}](plots/{Path(p).name})" for p in plots]
    write_text_atomically("\n".join(text) + "\n", out / "benchmark.md")
    summary = {"rows": rows, "average": avg, "failed": {k: error_line(v) for k, v in failures.items()},
               "skipped": skipped, "missing": missing, "plots": plots}  # fmt: skip
    write_json_atomically(summary, out / "benchmark.json")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    writer.writerows(table_cells(r) for r in rows + avg)
    write_text_atomically(buffer.getvalue(), out / "benchmark.csv")
    return summary


def recall_curve(errors: List[Optional[List[float]]]) -> np.ndarray:
    """Fraction of queries within ``t`` cm and ``t`` deg for each ``t`` of :data:`CURVE_CM`."""
    errs = np.array([e if e is not None else [np.inf, np.inf] for e in errors], dtype=np.float64).reshape(-1, 2)
    if not len(errs):
        return np.zeros_like(CURVE_CM)
    return np.array([np.mean((errs[:, 0] <= t) & (errs[:, 1] <= t)) for t in CURVE_CM])


def write_plots(
    folder: Path, results: List[dict], methods: List[str], scenes: List[str], rows: List[dict]
) -> List[str]:
    """Recall-vs-threshold curves (one panel per scene, one curve per method) and per-scene bars of
    the (5 cm, 5 deg) recall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    colours = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(scenes), figsize=(4.2 * len(scenes), 3.6), squeeze=False)
    for ax, scene in zip(axes[0], scenes):
        for method in methods:
            cells = [r for r in results if r["scene"] == scene and r["method"] == method]
            if cells:
                curve = np.mean([recall_curve(c["errors"]) for c in cells], axis=0)
                ax.plot(CURVE_CM, 100 * curve, label=method, color=colours[method])
        for t in (1, 5, 10):
            ax.axvline(t, color="0.8", lw=0.8, zorder=0)
        ax.set_xscale("log")
        ax.set_xlabel("threshold: t cm and t deg")
        ax.set_ylabel("queries within (%)")
        ax.set_ylim(0, 101)
        ax.set_title(scene)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    paths = [save(fig, folder / "recall_curves.png")]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(scenes) * max(1, len(methods)) / 2), 3.6))
    width = 0.8 / max(1, len(methods))
    for i, method in enumerate(methods):
        values = [
            next((r["recall"]["5cm_5deg"] for r in rows if r["scene"] == s and r["method"] == method), None)
            for s in scenes
        ]
        xs = np.arange(len(scenes)) + i * width
        ax.bar(xs, [100 * (v or 0.0) for v in values], width, label=method, color=colours[method])
    ax.set_xticks(np.arange(len(scenes)) + width * (len(methods) - 1) / 2, scenes)
    ax.set_ylabel("recall at 5 cm, 5 deg (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(save(fig, folder / "recall_5cm5deg_per_scene.png"))
    plt.close("all")
    return paths


def save(fig, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return str(path)
