"""``per_query.csv``: one row per query (status, errors, inliers, stage, hypothesis, verification,
times), and reading its errors back (a baseline beside a run)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from nerfloc_plugins.localize.outputs.metrics import QueryError, retrieved_near
from nerfloc_plugins.localize.stages.query_result import STAGES, QueryResult
from nerfloc_plugins.utils.atomic import write_text_atomically


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
