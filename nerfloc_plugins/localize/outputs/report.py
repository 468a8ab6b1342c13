"""Result files of a localization run (all written atomically).

* ``poses.txt``      hloc format, world-to-camera, dataset metric frame; a query that failed gets its
                     best prior's pose, as hloc writes it (``status`` in the CSV tells them apart;
                     only queries without any prior, e.g. a failed regressor, are left out); with
                     ``--pgt`` it is the estimate format of ``visloc_pseudo_gt_limitations``
* ``poses_mapfree.txt`` the same poses in the Map-free benchmark's format, confidence = PnP inliers
                     (0 for a failed query's prior pose)
* ``metrics.json``   medians, recalls (failures count), per-stage times, map size; for queries
                     without ground truth (``--queries``): localized count, inlier statistics
* ``per_query.csv``  one row per query (status ``localized`` / ``unverified`` / ``failed``, errors when
                     there is ground truth, inliers, reprojection error, the stage and hypothesis that
                     gave the pose, render-verification score / margin / confidence, time per stage)
* ``report.md``      results table and the plots below
* ``plots/``         error CDF, top-down trajectory, match figures (see :mod:`~nerfloc_plugins.localize.outputs.report_plots`)
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from nerfloc_plugins.data.hloc_files import write_poses
from nerfloc_plugins.data.pseudo_gt import write_mapfree_poses
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.outputs.metrics import (
    QueryError,
    has_ground_truth,
)
from nerfloc_plugins.localize.outputs.per_query_csv import write_per_query_csv
from nerfloc_plugins.localize.outputs.report_plots import (
    pick_match_queries,
    plot_error_cdf,
    plot_trajectory,
    save_match_figure,
)
from nerfloc_plugins.localize.outputs.tables import subset_table, summary_table, verification_lines
from nerfloc_plugins.localize.outputs.verification_report import pick_verification_queries, save_verification_figure
from nerfloc_plugins.localize.stages.query_result import QueryResult
from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically


def write_report(
    output_dir: Path,
    results: Sequence[QueryResult],
    metrics: dict,
    errors: Sequence[QueryError],
    map_centres: np.ndarray,
    match_plots: int = 6,
    baseline_metrics: Optional[dict] = None,
    baseline_errors: Optional[Sequence[QueryError]] = None,
) -> None:
    """Write every result file into ``output_dir`` (plots: :mod:`~nerfloc_plugins.localize.outputs.report_plots`;
    ``baseline_errors``: the baseline's per-query errors, drawn beside this run's in the CDF)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    plots = output_dir / "plots"
    poses = reported_poses(results)
    write_poses(poses, output_dir / "poses.txt")
    confidence = {r.frame.name: float(r.num_inliers) if r.w2c is not None else 0.0 for r in results}
    write_mapfree_poses(poses, confidence, output_dir / "poses_mapfree.txt")
    write_json_atomically(metrics, output_dir / "metrics.json")
    write_per_query_csv(results, errors, output_dir / "per_query.csv")
    if has_ground_truth(metrics):
        curves = [(metrics["method"], errors)]
        if baseline_metrics and baseline_errors:
            curves.append((baseline_metrics.get("method", "baseline"), baseline_errors))
        plot_error_cdf(curves, plots / "error_cdf.png")
    plot_trajectory(results, map_centres, plots / "trajectory.png")
    by_name = {e.name: e for e in errors}
    match_files = []
    for index, why in pick_match_queries(results, errors, match_plots):
        result = results[index]
        name = "matches_" + result.frame.name.replace("/", "__").rsplit(".", 1)[0] + ".png"
        if save_match_figure(result, by_name.get(result.frame.name), why, plots / name):
            match_files.append(name)
    verify_files = []
    for index, why in pick_verification_queries(results, errors):
        result = results[index]
        name = "verify_" + result.frame.name.replace("/", "__").rsplit(".", 1)[0] + ".png"
        if save_verification_figure(result, by_name.get(result.frame.name), why, plots / name):
            verify_files.append(name)
    # plots of an earlier run in this folder are not this run's: never leave them beside it
    current = set(match_files) | set(verify_files)
    current |= {"trajectory.png", "error_cdf.png" if has_ground_truth(metrics) else ""}
    for stale in plots.glob("*.png"):
        if stale.name not in current:
            stale.unlink()
    write_text_atomically(
        render_markdown(metrics, match_files, baseline_metrics, verify_files), output_dir / "report.md"
    )


def reported_poses(results: Sequence[QueryResult]) -> Dict[str, np.ndarray]:
    """World-to-camera pose per query for ``poses.txt``: the estimate, or for a failed query its
    best prior's pose (hloc's convention); queries without either are left out."""
    poses = {}
    for r in results:
        if r.w2c is not None:
            poses[r.frame.name] = r.w2c
        elif r.prior_c2w is not None:
            poses[r.frame.name] = invert_rigid(r.prior_c2w)
    return poses


def render_markdown(
    metrics: dict,
    match_files: Sequence[str],
    baseline_metrics: Optional[dict],
    verify_files: Sequence[str] = (),
) -> str:
    rows = [metrics] + ([baseline_metrics] if baseline_metrics else [])
    stages = "\n".join(
        f"| {s} | {1000 * v['mean_s']:.1f} | {1000 * v['median_s']:.1f} |" for s, v in metrics["timings"].items()
    )
    if not has_ground_truth(metrics):
        rows = [metrics]
    text = [
        f"# Localization report: {metrics['method']} on {metrics['scene']}",
        "",
        summary_table(rows),
        "",
        f"Map size: {metrics['map_size_mb']:.2f} MB. Prior index built in {metrics['prior_index_build_s']:.1f} s. "
        "Retrieval recall: first prior within 0.5 m / 30 deg of the query, over the queries that used retrieval "
        "(in a cascade: those that reached a retrieval stage).",
        "",
    ]
    text += verification_lines(rows)
    subsets = subset_table(rows)
    if subsets:
        text += [
            "Hard queries: no mapping view within 0.5 m looking within 90 deg of them (hard_queries.txt).",
            "",
            subsets,
            "",
        ]
    text += [
        "| stage | mean ms | median ms |",
        "| --- | --- | --- |",
        stages,
        "",
        *(["![error CDF](plots/error_cdf.png)", ""] if has_ground_truth(metrics) else []),
        "![trajectory](plots/trajectory.png)",
        "",
    ]
    text += [f"![matches](plots/{name})" for name in match_files]
    if verify_files:
        text += ["", "Render verification (query | map at the chosen pose | map at the runner-up):", ""]
        text += [f"![verification](plots/{name})" for name in verify_files]
    return "\n".join(text) + "\n"
