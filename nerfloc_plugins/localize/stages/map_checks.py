"""Checking a query's result against a rendered map: render verification of its pose hypotheses
(every stage's) and render-and-match refinement, kept only when the map confirms it."""

from __future__ import annotations

from dataclasses import replace
from typing import List, Optional

import numpy as np
import torch

from nerfloc_plugins.data.frames import load_frame_rgb
from nerfloc_plugins.localize.stages.query_result import QueryResult, StageTimer
from nerfloc_plugins.localize.stages.render_match import RenderMatchRefiner
from nerfloc_plugins.localize.stages.verification import RenderVerifier


def query_image(result: QueryResult) -> tuple[np.ndarray, object]:
    """The query image and its camera as the localizer described it (loaded again when the
    localizer kept no image at the camera's size)."""
    query = result.query
    if query is not None and query.image is not None:
        height, width = query.image.shape[:2]
        if (width, height) == (query.intrinsics.width, query.intrinsics.height):
            return query.image, query.intrinsics
    return load_frame_rgb(result.frame), result.frame.intrinsics


def refine_by_render_match(
    result: QueryResult, render_match: Optional[RenderMatchRefiner], verifier: Optional[RenderVerifier] = None
) -> QueryResult:
    """Render-and-match refinement of ``result``'s pose (nothing without a refiner or a pose);
    with a ``verifier`` and a verified result, the refined pose is kept only when it scores at
    least as well as the verified one."""
    if render_match is not None and result.w2c is not None:
        query = result.query
        timer = StageTimer()
        with timer("render_match"):
            features = render_match.describe(query)
            refined = render_match.refine(result.w2c, query, features)
        kept = True
        if verifier is not None and result.verification is not None and refined.view is not None:
            with timer("render_verify"):
                kept, _ = verifier.keeps_refinement(result.verification, refined.w2c, *query_image(result))
        result.render_match_iterations = refined.iterations
        if kept:
            result.w2c = refined.w2c
        if refined.view is not None and kept:
            # the report draws the refiner's matches: they index its own query keypoints
            shown = replace(query, keypoints=features.keypoints, descriptors=torch.from_numpy(features.descriptors))
            result.query, result.view, result.matches, result.inliers = (
                shown,
                refined.view,
                refined.matches,
                refined.inliers,
            )
            result.num_inliers, result.num_matches = refined.num_inliers, len(refined.matches)
            result.stage += "+render-match"
        result.timings = {
            **result.timings,
            "render_match": timer.times["render_match"],
            "render_verify": result.timings.get("render_verify", 0.0) + timer.times.get("render_verify", 0.0),
        }
    return result


def verify_hypotheses(result: QueryResult, ran: List[QueryResult], verifier: RenderVerifier) -> QueryResult:
    """Render verification of the hypotheses of every result in ``ran`` (``result``'s own first):
    the chosen hypothesis's pose and evidence become the result's."""
    owners = [result] + [r for r in ran if r is not result]
    candidates = [(hyp, owner) for owner in owners for hyp in owner.hypotheses]
    timer = StageTimer()
    with timer("render_verify"):
        image, intrinsics = query_image(result)
        verification = verifier.verify([hyp for hyp, _ in candidates], image, intrinsics)
    chosen = verification.hypotheses[verification.chosen]
    owner = next(o for hyp, o in candidates if hyp is chosen)
    if owner is not result:  # the evidence shown in reports is the chosen stage's
        owner.timings, owner.prior_c2w = result.timings, result.prior_c2w
        result = owner
    if chosen is not result.hypotheses[0]:
        result.w2c, result.num_inliers, result.num_matches = chosen.w2c, chosen.num_inliers, chosen.num_matches
        result.reprojection_px = chosen.reprojection_px
        result.view = result.matches = result.inliers = None  # the figure's matches gave another pose
    result.verification = verification
    result.timings = {**result.timings, "render_verify": timer.times["render_verify"]}
    return result
