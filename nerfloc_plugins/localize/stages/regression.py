"""The regressor paths of one query: scene coordinates -> PnP (D2S), or the pose itself (PMNet)."""

from __future__ import annotations

from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.interface.localizer import (
    PoseRegressionLocalizer,
    QueryDescription,
    SceneCoordinateLocalizer,
)
from nerfloc_plugins.localize.pipeline_config import PipelineConfig
from nerfloc_plugins.localize.stages.hypotheses import PoseHypothesis
from nerfloc_plugins.localize.stages.map_view_matching import median_reprojection_px, pnp_hypotheses
from nerfloc_plugins.localize.stages.pnp import solve_pnp
from nerfloc_plugins.localize.stages.query_result import QueryResult, StageTimer


def regress_pose_query(
    localizer: PoseRegressionLocalizer, frame: PosedFrame, query: QueryDescription, timer: StageTimer
) -> QueryResult:
    """Absolute pose regression: the pose from the query alone."""
    with timer("regress"):
        c2w = localizer.regress_pose(query)
    w2c = invert_rigid(c2w)
    return QueryResult(
        frame, w2c, [], 0, 0, 0, timer.per_stage(), query=query, hypotheses=[PoseHypothesis(w2c, 0, 0, "")]
    )


def regress_query(
    localizer: SceneCoordinateLocalizer,
    frame: PosedFrame,
    query: QueryDescription,
    config: PipelineConfig,
    timer: StageTimer,
) -> QueryResult:
    """Scene-coordinate regression: 2D-3D matches predicted from the query, then PnP."""
    with timer("match"):
        pts2d, pts3d = localizer.regress_correspondences(query)
    with timer("pnp"):
        result = solve_pnp(pts2d, pts3d, query.intrinsics, config.pnp, localizer.keypoint_precision_px)
    view, matches, inliers = localizer.match_evidence(query, pts2d, pts3d, result.inliers) or (None, None, None)
    reprojection = median_reprojection_px(pts2d, pts3d, query.intrinsics, result)
    hypotheses = pnp_hypotheses(pts2d, pts3d, query.intrinsics, result, config, localizer, "", reprojection)
    return QueryResult(
        frame=frame,
        w2c=result.w2c,
        retrieved=[],
        num_matches=len(pts2d),
        num_inliers=result.num_inliers,
        iterations=0,
        timings=timer.per_stage(),
        query=query,
        view=view,
        matches=matches,
        inliers=inliers,
        reprojection_px=reprojection,
        hypotheses=hypotheses,
    )
