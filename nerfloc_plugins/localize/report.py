"""Result files of a localization run (all written atomically).

* ``poses.txt``      hloc format, world-to-camera, dataset metric frame; a query that failed gets its
                     best prior's pose, as hloc writes it (``status`` in the CSV tells them apart;
                     only queries without any prior, e.g. a failed regressor, are left out)
* ``metrics.json``   medians, recalls (failures count), per-stage times, map size; for queries
                     without ground truth (``--queries``): localized count, inlier statistics
* ``per_query.csv``  one row per query (status ``localized`` / ``unverified`` / ``failed``, errors when
                     there is ground truth, inliers, reprojection error, the stage and hypothesis that
                     gave the pose, render-verification score / margin / confidence, time per stage)
* ``report.md``      results table and the plots below
* ``plots/``         error CDF, top-down trajectory, match figures (see :mod:`~nerfloc_plugins.localize.report_plots`)
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from nerfloc_plugins.data.frames import hard_query_names
from nerfloc_plugins.data.hloc_files import write_poses
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.metrics import CAMBRIDGE_THRESHOLDS, QueryError, query_errors, summarize
from nerfloc_plugins.localize.pipeline import STAGES, QueryResult
from nerfloc_plugins.localize.report_plots import pick_match_queries, plot_error_cdf, plot_trajectory, save_match_figure
from nerfloc_plugins.localize.retrieval import is_near_view
from nerfloc_plugins.localize.verification_report import pick_verification_queries, save_verification_figure
from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically


def stage_times(results: Sequence[QueryResult]) -> Dict[str, Dict[str, float]]:
    out = {}
    for stage in STAGES + ("total",):
        values = [sum(r.timings.values()) if stage == "total" else r.timings.get(stage, 0.0) for r in results] or [0.0]
        out[stage] = {"mean_s": float(np.mean(values)), "median_s": float(np.median(values))}
    return out


def retrieved_near(result: QueryResult) -> Optional[bool]:
    """Whether the first prior of ``result`` is near the query (:func:`is_near_view`); ``None``
    for a query without priors (regressors)."""
    if not result.retrieved_c2w or result.frame.c2w is None:
        return None
    return is_near_view(result.retrieved_c2w[0], result.frame.c2w)


def retrieval_recall(results: Sequence[QueryResult]) -> Optional[float]:
    """Fraction of queries whose first prior is within 0.5 m / 30 deg; ``None`` without priors."""
    near = [n for n in map(retrieved_near, results) if n is not None]
    return float(np.mean(near)) if near else None


WRONG_PLACE_CM = 50.0
"""A pose this far (cm) from the truth is at a wrong place (not a refinement error)."""


def verification_metrics(results: Sequence[QueryResult], errors: Sequence[QueryError]) -> dict:
    """Counts of render verification (``{}`` when it did not run): unverified poses, poses it
    overruled, and wrong-place poses (> :data:`WRONG_PLACE_CM` off) left confident or flagged."""
    verified = [r for r in results if r.verification is not None]
    if not verified:
        return {}
    by_name = {e.name: e for e in errors}
    far = {n for n, e in by_name.items() if not e.failed and e.translation_cm > WRONG_PLACE_CM}
    out = {
        "verification": {
            "num_verified_queries": len(verified),
            "num_unverified": sum(r.status == "unverified" for r in results),
            "num_overruled": sum(r.verification.overruled for r in verified),
            "median_score": float(np.median([r.verification.score for r in verified])),
            "mean_hypotheses": float(np.mean([len(r.verification.hypotheses) for r in verified])),
        }
    }
    if errors:
        out["verification"]["wrong_place_confident"] = sum(
            r.frame.name in far and r.status == "localized" for r in results
        )
        out["verification"]["wrong_place_unverified"] = sum(
            r.frame.name in far and r.status == "unverified" for r in results
        )
    return out


def build_metrics(
    results: Sequence[QueryResult],
    method: str,
    scene: str,
    map_size_bytes: int,
    prior_index_seconds: float,
    extra: Optional[dict] = None,
) -> tuple[dict, List[QueryError]]:
    common = {
        "timings": stage_times(results),
        "prior_index_build_s": prior_index_seconds,
        "map_size_mb": map_size_bytes / 2**20,
        "mean_inliers": float(np.mean([r.num_inliers for r in results])) if results else 0.0,
    }
    if any(r.frame.c2w is None for r in results):
        return {
            "method": method,
            "scene": scene,
            **metrics_without_ground_truth(results),
            **common,
            **verification_metrics(results, []),
            **(extra or {}),
        }, []
    estimates = {r.frame.name: r.w2c for r in results}
    gt = {r.frame.name: invert_rigid(r.frame.c2w) for r in results}
    errors = query_errors(estimates, gt)
    extra_thresholds = [CAMBRIDGE_THRESHOLDS[scene]] if scene in CAMBRIDGE_THRESHOLDS else []
    metrics = {"method": method, "scene": scene, **summarize(errors, extra_thresholds), **common}
    metrics["retrieval_recall"] = retrieval_recall(results)
    metrics["num_wrong_place"] = sum(not e.failed and e.translation_cm > WRONG_PLACE_CM for e in errors)
    metrics.update(verification_metrics(results, errors))
    hard = hard_query_names([r.frame for r in results])
    if hard is not None:
        for key, keep in (("hard_queries", True), ("other_queries", False)):
            subset = [e for e in errors if (e.name in hard) == keep]
            metrics[key] = summarize(subset, extra_thresholds)
            metrics[key]["retrieval_recall"] = retrieval_recall([r for r in results if (r.frame.name in hard) == keep])
    if extra:
        metrics.update(extra)
    return metrics, errors


def metrics_without_ground_truth(results: Sequence[QueryResult]) -> dict:
    """What can be said of queries given without poses: how many were localized, with how many
    inliers, at which reprojection error (:func:`build_metrics` adds times and map size)."""
    localized = [r for r in results if r.localized]

    def stats(values) -> Dict[str, Optional[float]]:
        values = [v for v in values if v is not None]
        if not values:
            return {"mean": None, "median": None}
        return {"mean": float(np.mean(values)), "median": float(np.median(values))}

    return {
        "ground_truth": False,
        "num_queries": len(results),
        "num_localized": len(localized),
        "num_failed": len(results) - len(localized),
        "inliers": stats([r.num_inliers for r in localized]),
        "inlier_ratio": stats([r.inlier_ratio for r in localized]),
        "reprojection_px": stats([r.reprojection_px for r in localized]),
    }


def has_ground_truth(metrics: dict) -> bool:
    return metrics.get("ground_truth", True)


def write_per_query_csv(results: Sequence[QueryResult], errors: Sequence[QueryError], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        ["name", "status", "translation_cm", "rotation_deg", "num_matches", "num_inliers", "iterations"]
        + ["render_match_iterations", "stage", "inlier_ratio", "reprojection_px", "retrieved", "retrieved_near"]
        + ["hypothesis", "hypotheses", "verify_score", "verify_margin", "confidence", "overruled"]
        + [f"t_{s}_s" for s in STAGES]
    )
    by_name = {e.name: e for e in errors}
    for r in results:
        e = by_name.get(r.frame.name)
        v = r.verification
        writer.writerow(
            [
                r.frame.name,
                r.status,
                "" if e is None else f"{e.translation_cm:.4f}",
                "" if e is None else f"{e.rotation_deg:.4f}",
                r.num_matches,
                r.num_inliers,
                r.iterations,
                r.render_match_iterations,
                r.stage,
                f"{r.inlier_ratio:.3f}",
                "" if r.reprojection_px is None else f"{r.reprojection_px:.3f}",
                ";".join(r.retrieved),
                {None: "", True: "1", False: "0"}[retrieved_near(r)],
                r.hypothesis,
                "" if v is None else len(v.hypotheses),
                "" if v is None else f"{v.score:.4f}",
                "" if v is None or v.margin is None else f"{v.margin:.4f}",
                "" if v is None else f"{confidence(v.score, v.margin):.3f}",
                "" if v is None else int(v.overruled),
            ]
            + [f"{r.timings.get(s, 0.0):.5f}" for s in STAGES]
        )
    write_text_atomically(buf.getvalue(), path)


def confidence(score: float, margin: Optional[float]) -> float:
    """How sure render verification is of a pose, in [0, 1]: its score (clipped at 0), scaled down
    when another hypothesis scored within 0.1 of it (two places look alike at the render size)."""
    lead = 1.0 if margin is None else float(np.clip(margin / 0.1, 0.0, 1.0))
    return float(np.clip(score, 0.0, 1.0) * (0.5 + 0.5 * lead))


def read_query_errors(path: Path) -> List[QueryError]:
    """The errors of another run's ``per_query.csv`` (for its curve beside this run's); failed or
    unscored queries are infinite."""
    out = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                out.append(QueryError(row["name"], float(row["translation_cm"]), float(row["rotation_deg"])))
            except (KeyError, TypeError, ValueError):
                out.append(QueryError(row.get("name", ""), float("inf"), float("inf")))
    return out


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
    """Write every result file into ``output_dir`` (plots: :mod:`~nerfloc_plugins.localize.report_plots`;
    ``baseline_errors``: the baseline's per-query errors, drawn beside this run's in the CDF)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    plots = output_dir / "plots"
    write_poses(reported_poses(results), output_dir / "poses.txt")
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


def summary_table(rows: Sequence[dict]) -> str:
    """:func:`results_table` for runs with ground truth, :func:`localized_table` otherwise."""
    return results_table(rows) if all(map(has_ground_truth, rows)) else localized_table(rows)


def localized_table(rows: Sequence[dict]) -> str:
    """Markdown table of runs without ground truth: localized queries, inliers, reprojection, time."""
    lines = [
        "| method | localized | median inliers | median inlier ratio | median reprojection px | ms/query |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m in rows:
        if has_ground_truth(m):
            continue
        lines.append(
            f"| {m['method']} | {m['num_localized']}/{m['num_queries']} | {number(m['inliers']['median'], '.0f')} | "
            f"{number(m['inlier_ratio']['median'], '.2f')} | {number(m['reprojection_px']['median'], '.2f')} | "
            f"{1000 * m['timings']['total']['mean_s']:.0f} |"
        )
    return "\n".join(lines)


def results_table(rows: Sequence[dict]) -> str:
    """Markdown table: one row per metrics dict."""
    keys = list(rows[0]["recall"].keys()) if rows else []
    header = (
        "| method | median cm | median deg | "
        + " | ".join(f"recall {k}" for k in keys)
        + " | failed | ms/query | retrieval recall |"
    )
    lines = [header, "|" + " --- |" * (6 + len(keys))]
    for m in rows:
        lines.append(
            f"| {m['method']} | {m['median_translation_cm']:.2f} | {m['median_rotation_deg']:.2f} | "
            + " | ".join(f"{100 * m['recall'].get(k, 0):.1f}%" for k in keys)
            + f" | {m['num_failed']}/{m['num_queries']} | {1000 * m['timings']['total']['mean_s']:.0f} | "
            + f"{percent(m.get('retrieval_recall'))} |"
        )
    return "\n".join(lines)


def number(value: Optional[float], fmt: str) -> str:
    """``value`` formatted with ``fmt``; ``-`` for ``None``."""
    return "-" if value is None else format(value, fmt)


def percent(value: Optional[float]) -> str:
    """``value`` (a fraction) as a percentage; ``-`` for ``None``."""
    return "-" if value is None else f"{100 * value:.1f}%"


def subset_table(rows: Sequence[dict]) -> str:
    """Markdown table of the hard / other query subsets (datasets with ``hard_queries.txt``); ``""``
    when no row has them."""
    lines = []
    for m in rows:
        for key, label in (("hard_queries", "hard"), ("other_queries", "other")):
            if key in m:
                s = m[key]
                lines.append(
                    f"| {m['method']} | {label} | {s['num_queries']} | {s['median_translation_cm']:.2f} | "
                    f"{s['median_rotation_deg']:.2f} | {100 * s['recall']['5cm_5deg']:.1f}% | "
                    f"{100 * s['recall']['10cm_10deg']:.1f}% | {s['num_failed']} | {percent(s.get('retrieval_recall'))} |"
                )
    if not lines:
        return ""
    header = (
        "| method | queries | n | median cm | median deg | recall 5cm_5deg | recall 10cm_10deg | failed "
        "| retrieval recall |"
    )
    return "\n".join([header, "|" + " --- |" * 9] + lines)


def stage_lines(rows: Sequence[dict]) -> str:
    """Markdown list: mean time per stage for each metrics dict."""
    return "\n".join(
        f"- {m['method']}: " + " | ".join(f"{k} {1000 * v['mean_s']:.1f} ms" for k, v in m["timings"].items())
        for m in rows
    )


def verification_lines(rows: Sequence[dict]) -> List[str]:
    """Markdown table of render verification (runs that verified)."""
    lines = []
    for m in rows:
        v = m.get("verification")
        if not v:
            continue
        wrong = f"{v['wrong_place_confident']} / {v['wrong_place_unverified']}" if "wrong_place_confident" in v else "-"
        lines.append(
            f"| {m['method']} | {v['num_unverified']} | {v['num_overruled']} | {wrong} | "
            f"{v['median_score']:.2f} | {v['mean_hypotheses']:.1f} |"
        )
    if not lines:
        return []
    header = "| method | unverified | overruled | wrong-place confident / unverified | median score | hypotheses |"
    return [
        "Render verification: the map rendered every distinct pose hypothesis; a pose it did not confirm is "
        "`unverified` in per_query.csv. Wrong-place: more than 50 cm off.",
        "",
        header,
        "|" + " --- |" * 6,
        *lines,
        "",
    ]


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
