"""Localization errors per query and recall (pose errors themselves: :mod:`nerfloc_plugins.geometry.pose_errors`).

Errors compare world-to-camera poses in the dataset's metric frame: translation error is
the distance between camera centres (reported in cm), rotation error the angle of
``R_est R_gt^T`` (degrees).  Queries without an estimate count as failures (infinite error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nerfloc_plugins.geometry.pose_errors import pose_error

# (cm, deg) thresholds reported for every dataset
DEFAULT_THRESHOLDS: Tuple[Tuple[float, float], ...] = ((1, 1), (2, 2), (5, 5), (10, 10), (25, 2), (50, 5))
# Cambridge Landmarks per-scene thresholds (cm, deg) used by NeRFMatch / PixLoc
CAMBRIDGE_THRESHOLDS: Dict[str, Tuple[float, float]] = {
    "KingsCollege": (38, 5),
    "OldHospital": (22, 5),
    "ShopFacade": (15, 5),
    "StMarysChurch": (35, 5),
    "GreatCourt": (45, 5),
}


@dataclass
class QueryError:
    name: str
    translation_cm: float
    rotation_deg: float

    @property
    def failed(self) -> bool:
        return not np.isfinite(self.translation_cm)


def query_errors(
    estimates: Mapping[str, Optional[np.ndarray]], ground_truth: Mapping[str, np.ndarray], metres_per_unit: float = 1.0
) -> List[QueryError]:
    """Errors of every ground-truth query; a missing or ``None`` estimate is a failure."""
    out = []
    for name, gt in ground_truth.items():
        est = estimates.get(name)
        if est is None:
            out.append(QueryError(name, float("inf"), float("inf")))
            continue
        dt, dr = pose_error(est, gt)
        out.append(QueryError(name, dt * metres_per_unit * 100.0, dr))
    return out


def recall(errors: Sequence[QueryError], cm: float, deg: float) -> float:
    """Fraction of queries with translation < ``cm`` and rotation < ``deg``."""
    if not errors:
        return 0.0
    return float(np.mean([e.translation_cm < cm and e.rotation_deg < deg for e in errors]))


def summarize(errors: Sequence[QueryError], extra_thresholds: Sequence[Tuple[float, float]] = ()) -> dict:
    """Median errors (failures as infinity) and recall at the default + extra thresholds."""
    t = np.array([e.translation_cm for e in errors]) if errors else np.array([np.inf])
    r = np.array([e.rotation_deg for e in errors]) if errors else np.array([np.inf])
    thresholds = list(DEFAULT_THRESHOLDS) + [th for th in extra_thresholds if th not in DEFAULT_THRESHOLDS]
    return {
        "num_queries": len(errors),
        "num_failed": int(sum(e.failed for e in errors)),
        "median_translation_cm": float(np.median(t)),
        "median_rotation_deg": float(np.median(r)),
        "recall": {f"{cm:g}cm_{deg:g}deg": recall(errors, cm, deg) for cm, deg in thresholds},
    }
