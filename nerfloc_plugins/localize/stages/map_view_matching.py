"""The map-view path of one query: prior -> map views -> match (-> geometric verification of a
shortlist) -> PnP -> iterative / photometric refinement, with its pose hypotheses."""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.geometry.projection import project
from nerfloc_plugins.localize.interface.localizer import (
    Localizer,
    MapView,
    MapViewLocalizer,
    QueryDescription,
)
from nerfloc_plugins.localize.pipeline_config import PipelineConfig
from nerfloc_plugins.localize.stages.hypotheses import PoseHypothesis, further_models
from nerfloc_plugins.localize.stages.pnp import PnPResult, solve_pnp
from nerfloc_plugins.localize.stages.priors import PriorSource
from nerfloc_plugins.localize.stages.query_result import QueryResult, StageTimer


def match_query(
    localizer: MapViewLocalizer,
    frame: PosedFrame,
    query: QueryDescription,
    priors_fn: PriorSource,
    config: PipelineConfig,
    timer: StageTimer,
) -> QueryResult:
    """Prior (-> geometric verification of a shortlist) -> map views -> match -> PnP, then
    refinement when the map renders at any pose."""
    with timer("prior"):
        priors = priors_fn(frame, query.image)
    with timer("render"):
        views = [localizer.map_view(p.c2w, p) for p in priors]
    with timer("match"):
        per_view = [localizer.correspondences(query, view) for view in views]
    single: List[PoseHypothesis] = []
    if priors_fn.verifies:
        with timer("verify"):
            ranked, single = verification_order(localizer, query, views, per_view, config, priors)
            order = ranked[: config.retrieval.top_k]
        priors, views, per_view = [priors[i] for i in order], [views[i] for i in order], [per_view[i] for i in order]
    pts2d = np.concatenate([uv for _, uv in per_view]) if per_view else np.zeros((0, 2))
    pts3d = (
        np.concatenate([v.points3d[m[:, 1]] for v, (m, _) in zip(views, per_view)]) if per_view else np.zeros((0, 3))
    )
    with timer("pnp"):
        result = solve_pnp(pts2d, pts3d, query.intrinsics, config.pnp, localizer.keypoint_precision_px)
    reprojection = median_reprojection_px(pts2d, pts3d, query.intrinsics, result)
    num_matches = len(pts2d)
    vis_view, vis_matches = (views[0], per_view[0][0]) if views else (None, None)
    vis_inliers = result.inliers[: len(vis_matches)] if vis_matches is not None else None
    iterations = 0
    hypotheses = pnp_hypotheses(pts2d, pts3d, query.intrinsics, result, config, localizer, "views", reprojection)
    if result.success and localizer.renders_at_any_pose:
        result, iterations, vis = refine_iteratively(localizer, query, result, config, timer)
        if vis is not None:
            vis_view, vis_matches, vis_inliers = vis
        hypotheses[0].w2c = result.w2c
    hypotheses += single
    if getattr(priors_fn, "pose_prior", None) is not None and priors:  # priors_fn: any callable prior source
        hypotheses.append(PoseHypothesis(invert_rigid(priors[0].c2w), 0, 0, "prior"))
    return QueryResult(
        frame=frame,
        w2c=result.w2c,
        retrieved=[p.name for p in priors],
        num_matches=num_matches,
        num_inliers=result.num_inliers,
        iterations=iterations,
        timings=timer.per_stage(),
        query=query,
        view=vis_view,
        matches=vis_matches,
        inliers=vis_inliers,
        retrieved_c2w=[p.c2w for p in priors],
        reprojection_px=reprojection,
        prior_c2w=priors[0].c2w if priors else None,
        hypotheses=hypotheses if result.success else [],
    )


def pnp_hypotheses(
    pts2d: np.ndarray,
    pts3d: np.ndarray,
    intrinsics,
    result: PnPResult,
    config: PipelineConfig,
    localizer: Localizer,
    source: str,
    reprojection: Optional[float],
) -> List[PoseHypothesis]:
    """The PnP pose of a match set and, with ``--verify.*``, its further models (sequential RANSAC)."""
    if not result.success:
        return []
    out = [PoseHypothesis(result.w2c, result.num_inliers, len(pts2d), source, reprojection)]
    if config.verify.on and config.verify.further_models > 0:
        models = further_models(
            pts2d, pts3d, intrinsics, result, config.pnp,
            config.verify.further_models, config.verify.further_min_inliers, localizer.keypoint_precision_px,
        )  # fmt: skip
        for k, model in enumerate(models, start=2):
            out.append(PoseHypothesis(model.w2c, model.num_inliers, len(pts2d), f"{source}#{k}"))
    return out


def verification_order(
    localizer: MapViewLocalizer,
    query: QueryDescription,
    views: List[MapView],
    per_view: List[tuple],
    config: PipelineConfig,
    priors: Sequence[PosedFrame] = (),
) -> tuple[List[int], List[PoseHypothesis]]:
    """Indices of ``views``, best first, by geometric verification with multi-view consensus, and
    each candidate's own PnP pose as a hypothesis (source ``view:NAME``, named after ``priors``).

    Each candidate's matches alone give a PnP pose hypothesis; a hypothesis is scored by the
    matches of *every* candidate that reproject within the PnP threshold under it, and the
    candidates are ranked by their own matches consistent with the best-supported hypothesis
    (ties keep the retrieval order).  One candidate alone can be fooled by a repeated texture
    (a pose one tile period away fits its matches as well); views of the true place agree."""
    threshold = max(
        config.pnp.threshold_px * query.intrinsics.width / config.pnp.threshold_reference_width,
        localizer.keypoint_precision_px,
    )
    uv = np.concatenate([u for _, u in per_view]) if per_view else np.zeros((0, 2))
    xyz = np.concatenate([v.points3d[m[:, 1]] for v, (m, _) in zip(views, per_view)]) if per_view else np.zeros((0, 3))
    owner = np.concatenate([np.full(len(u), i) for i, (_, u) in enumerate(per_view)]) if per_view else np.zeros(0)
    K = query.intrinsics.matrix()
    best_support, best_fit = -1, np.zeros(len(uv), dtype=bool)
    single: List[PoseHypothesis] = []
    for i, (view, (m, u)) in enumerate(zip(views, per_view)):
        res = solve_pnp(u, view.points3d[m[:, 1]], query.intrinsics, config.pnp, localizer.keypoint_precision_px)
        if not res.success:
            continue
        name = priors[i].name if i < len(priors) else str(i)
        single.append(PoseHypothesis(res.w2c, res.num_inliers, len(u), f"view:{name}"))
        projected, depth = project(xyz, K, res.w2c)
        fit = (depth > 0) & (np.linalg.norm(projected - uv, axis=1) < threshold)
        if fit.sum() > best_support:
            best_support, best_fit = int(fit.sum()), fit
    score = [int(best_fit[owner == i].sum()) for i in range(len(views))]
    return sorted(range(len(views)), key=lambda i: -score[i]), single


def median_reprojection_px(pts2d: np.ndarray, pts3d: np.ndarray, intrinsics, result: PnPResult) -> Optional[float]:
    """Median pixel distance between the PnP inliers and their 3D points projected by its pose."""
    if not result.success or result.num_inliers == 0:
        return None
    projected, _ = project(pts3d[result.inliers], intrinsics.matrix(), result.w2c)
    return float(np.median(np.linalg.norm(projected - pts2d[result.inliers], axis=1)))


def refine_iteratively(
    localizer: MapViewLocalizer, query: QueryDescription, result: PnPResult, config: PipelineConfig, timer: StageTimer
):
    """Photometric refinement (optional) then render -> match -> PnP rounds from the estimate."""
    refine = config.refine
    rounds = refine.iterations
    vis = None
    iterations = 0
    with timer("refine"):
        refiner = localizer.photometric_refiner(refine.photometric) if refine.photometric.steps > 0 else None
        if refiner is not None:
            c2w = refiner.refine(invert_rigid(result.w2c), query)
            result = PnPResult(invert_rigid(c2w), result.inliers)
            rounds = max(rounds, 1 if refine.photometric.rematch else 0)
        for _ in range(rounds):
            view = localizer.map_view(invert_rigid(result.w2c))
            m, uv = localizer.correspondences(query, view)
            new = solve_pnp(uv, view.points3d[m[:, 1]], query.intrinsics, config.pnp, localizer.keypoint_precision_px)
            iterations += 1
            if not new.success:
                break
            dt, dr = pose_error(new.w2c, result.w2c)
            result, vis = new, (view, m, new.inliers)
            if dt * 100 < refine.tolerance_cm and dr < refine.tolerance_deg:
                break
    return result, iterations, vis
