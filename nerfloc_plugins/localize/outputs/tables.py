"""Markdown tables of metrics rows (``metrics.json`` dicts): the summary printed by the commands,
subsets (hard queries), stage times and verification lines of ``report.md``."""

from __future__ import annotations

from typing import List, Optional, Sequence

from nerfloc_plugins.localize.outputs.metrics import (
    has_ground_truth,
)


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
