"""``metrics.json``: errors per query, recalls, per-stage times, retrieval recall and verification
metrics (pose errors themselves: :mod:`nerfloc_plugins.geometry.pose_errors`).

Errors compare world-to-camera poses in the dataset's metric frame: translation error is
the distance between camera centres (reported in cm), rotation error the angle of
``R_est R_gt^T`` (degrees).  Queries without an estimate count as failures (infinite error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nerfloc_plugins.data.frames import hard_query_names
from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.stages.query_result import STAGES, QueryResult
from nerfloc_plugins.localize.stages.retrieval import is_near_view

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
