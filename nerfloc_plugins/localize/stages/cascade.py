"""A localization cascade: a first localizer, a check of its result, a fallback for the queries it
did not solve.

Each query goes through the first localizer (its own path: map views, scene coordinates or pose
regression).  Its result is **accepted** when it has a pose with at least ``min_inliers`` PnP
inliers and an inlier ratio (inliers / 2D-3D matches) of at least ``min_inlier_ratio``.  Otherwise
the fallback localizer (``--cascade.fallback RUN``: any run ``ns-localize`` can localize with, e.g.
a NeRF method after the classical baseline) localizes the query too, and the result kept is the
fallback's when it is accepted or the first has no pose, else whichever has more inliers.
Render-and-match refinement (``--render-match.*``) then runs on the kept pose.  Every result says
which stage produced it (``QueryResult.stage``: the localizer's name, ``+render-match`` when a
refinement round was accepted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.localize.interface.localizer import Localizer


@dataclass
class AcceptConfig:
    """When the first stage's result is kept without trying the fallback."""

    min_inliers: int = 30
    """PnP inliers at least this many ..."""
    min_inlier_ratio: float = 0.0
    """... and at least this fraction of the 2D-3D matches."""


@dataclass
class CascadeConfig:
    fallback: Optional[Path] = None
    """Run file (config.yml, d2s_run.yml) of the localizer tried on queries whose first-stage
    result fails the check (None: no cascade)."""
    accept: AcceptConfig = field(default_factory=AcceptConfig)


def inlier_ratio(num_inliers: int, num_matches: int) -> float:
    """Inliers / matches (0 without matches): the confidence reported per query."""
    return num_inliers / num_matches if num_matches else 0.0


def is_accepted(w2c, num_inliers: int, num_matches: int, accept: AcceptConfig) -> bool:
    """Whether a result passes the cascade's check (see :class:`AcceptConfig`)."""
    if w2c is None:
        return False
    return num_inliers >= accept.min_inliers and inlier_ratio(num_inliers, num_matches) >= accept.min_inlier_ratio


def check_same_queries(first: Localizer, fallback: Localizer, queries: List[PosedFrame], split: str) -> None:
    """The fallback must localize the same query images (the same dataset)."""
    names = {f.name for f in fallback.query_frames(split)}
    missing = [q.name for q in queries if q.name not in names]
    if missing:
        raise ValueError(
            f"--cascade.fallback: {fallback.name} has no query {missing[0]!r} of {first.name}'s dataset "
            "(the fallback run must be trained on the same dataset)"
        )
