"""Report figures of render verification: query | map at the chosen pose | map at the runner-up.

Drawn for every query where verification overruled the pipeline's own pose (the rejected
hypothesis is the runner-up or the pipeline's choice), and for the worst queries (largest error;
without ground truth: the lowest scores), each panel titled with its hypothesis's source and
score.  Only queries verified in this run have renderings (a resumed query keeps its numbers, not
its images).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from nerfloc_plugins.localize.outputs.metrics import QueryError
from nerfloc_plugins.localize.outputs.report_plots import pyplot, save_figure
from nerfloc_plugins.localize.stages.query_result import QueryResult


def pick_verification_queries(
    results: Sequence[QueryResult], errors: Sequence[QueryError], worst: int = 4, limit: int = 16
) -> List[Tuple[int, str]]:
    """``(index, why)`` of the queries to draw: every overruled one, then the ``worst``, at most
    ``limit`` in all; only queries with renderings."""
    drawable = [i for i, r in enumerate(results) if r.verification is not None and r.verification.renders]
    chosen = [(i, "overruled") for i in drawable if results[i].verification.overruled]
    by_name = {e.name: e for e in errors}
    rest = [i for i in drawable if not results[i].verification.overruled]
    if by_name:
        rest.sort(key=lambda i: -(by_name.get(results[i].frame.name).translation_cm or 0))
    else:
        rest.sort(key=lambda i: results[i].verification.score)
    chosen += [(i, "worst" if by_name else "lowest score") for i in rest[:worst]]
    return chosen[:limit]


def save_verification_figure(result: QueryResult, error: Optional[QueryError], why: str, path: Path) -> bool:
    """Query | render at the chosen pose | render at the runner-up (when there is one)."""
    v = result.verification
    if v is None or not v.renders or v.query_image is None:
        return False
    panels = [(v.query_image, f"query {result.frame.name}")]
    chosen = v.hypotheses[v.chosen]
    panels.append((v.renders[v.chosen], f"chosen: {chosen.source}\nscore {chosen.score:.2f}, {chosen.num_inliers} inl."))
    runner = v.runner_up
    if runner is not None:
        other = v.hypotheses[runner]
        label = "rejected (pipeline's)" if runner == 0 and v.overruled else "runner-up"
        panels.append((v.renders[runner], f"{label}: {other.source}\nscore {other.score:.2f}, {other.num_inliers} inl."))
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.9))
    for ax, (image, title) in zip(np.atleast_1d(axes), panels):
        ax.imshow(np.clip(image, 0, 1))
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    status = result.status
    err = "" if error is None or error.failed else f", error {error.translation_cm:.1f} cm / {error.rotation_deg:.1f} deg"
    fig.suptitle(f"{why}: {status}{err}", fontsize=8)
    save_figure(fig, path)
    plt.close(fig)
    return True
