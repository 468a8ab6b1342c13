"""The shared localization pipeline: prior -> match -> PnP -> refine -> metrics -> files.

Stages (hloc-like, each timed per query): ``prior`` (retrieval), ``features`` (query
description), ``regress``, ``render`` (map features at a pose), ``match``, ``pnp``, ``refine``.
One path per :class:`~nerfloc_plugins.localize.localizer.LocalizerKind`: map-view matchers run
prior -> render -> match -> PnP (-> refinement); scene-coordinate regressors (D2S) skip prior,
render and match: their ``match`` stage is the regression; absolute pose regressors (PMNet) give
the pose in their ``regress`` stage.  With a :class:`PosePrior` (``ns-localize --pose-prior``,
e.g. an APR) the prior is its pose instead of retrieved frames.  Top-k priors are merged at the
match level (all 2D-3D matches go into one PnP).
Iterative refinement re-renders at the estimate and matches again until the update is
below tolerance; photometric refinement (when the localizer has a field) optimises the
pose through it and then re-matches once.
With ``--verify.*`` every stage keeps its pose hypotheses (:mod:`~nerfloc_plugins.localize.hypotheses`)
and a map renders each to choose the one the query shows (``render_verify`` stage,
:mod:`~nerfloc_plugins.localize.verification`); render-and-match refinement is then kept only when
the map confirms it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from typing_extensions import Annotated

from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.data.hloc_files import check_pairs_cover, read_pairs
from nerfloc_plugins.data.images import load_rgb
from nerfloc_plugins.features.feature_matcher import LocalFeatureMatcher
from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.geometry.projection import project
from nerfloc_plugins.localize.cascade import CascadeConfig, check_same_queries, inlier_ratio, is_accepted
from nerfloc_plugins.localize.hypotheses import PoseHypothesis, further_models
from nerfloc_plugins.localize.localizer import (
    Localizer,
    LocalizerKind,
    MapView,
    MapViewLocalizer,
    PosePrior,
    PoseRegressionLocalizer,
    QueryDescription,
    SceneCoordinateLocalizer,
)
from nerfloc_plugins.localize.pnp import PnPConfig, PnPResult, solve_pnp
from nerfloc_plugins.localize.refine import PhotometricConfig
from nerfloc_plugins.localize.render_match import RenderMatchConfig, RenderMatchRefiner
from nerfloc_plugins.localize.retrieval import RetrievalConfig, VladIndex
from nerfloc_plugins.localize.synthesized_views import SynthesizedView, synthesize_views
from nerfloc_plugins.localize.verification import RenderVerifier, Verification, VerifyConfig
from nerfloc_plugins.nerf.field_renderer import FieldRenderer
from nerfloc_plugins.nerf.render_sampling import RenderSampling
from nerfloc_plugins.utils.option_ranges import NON_NEGATIVE

STAGES = ("prior", "features", "regress", "render", "match", "verify", "pnp", "refine", "render_match", "render_verify")


@dataclass
class RefineConfig:
    iterations: Annotated[int, NON_NEGATIVE] = 2
    """Extra render -> match -> PnP rounds from the current estimate (maps that render at any
    pose; the classical baseline has none)."""
    tolerance_cm: float = 0.1
    """Stop when the pose changes by less than this (and ``tolerance_deg``)."""
    tolerance_deg: float = 0.05
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)


@dataclass
class PipelineConfig:
    """The method-agnostic options of localization (flat on ``ns-localize`` and
    ``ns-localize-baseline``: ``--pairs``, ``--retrieval.*``, ``--pnp.*``, ``--refine.*``)."""

    pairs: Optional[Path] = None
    """hloc/PixLoc retrieval pairs (``query db`` lines) instead of built-in retrieval."""
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    pnp: PnPConfig = field(default_factory=PnPConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    """Iterative (re-render + match) and photometric refinement."""
    render: RenderSampling = field(default_factory=RenderSampling)
    """Samples per ray when a field localizer renders its map (views at priors, iterative
    refinement, retrieval images): ``--render.band-samples 8 8 8`` renders depth-guided,
    ``--render.samples 32 16 16`` with fewer samples in one pass (default: the run's schedule)."""
    render_match: RenderMatchConfig = field(default_factory=RenderMatchConfig)
    """Render-and-match refinement of any estimate against a field's renderings (off by default)."""
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    """A fallback localizer for queries the first one did not solve (off by default)."""
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    """Render verification of every stage's pose hypotheses with a trained map (off by default:
    ``--verify.map RUN/config.yml``)."""


@dataclass
class QueryResult:
    frame: PosedFrame
    w2c: Optional[np.ndarray]
    retrieved: List[str]
    """Names of the priors whose matches went into PnP (best first)."""
    num_matches: int
    num_inliers: int
    iterations: int
    timings: Dict[str, float]
    # kept for the report's match visualisation (first prior only)
    query: Optional[QueryDescription] = None
    view: Optional[MapView] = None
    matches: Optional[np.ndarray] = None
    inliers: Optional[np.ndarray] = None
    render_match_iterations: int = 0
    """Render-and-match rounds run on this query's estimate."""
    stage: str = ""
    """What produced the final pose: the localizer's name, ``+render-match`` when a
    render-and-match round was accepted; ``""`` when there is no pose."""
    retrieved_c2w: List[np.ndarray] = field(default_factory=list)
    """Camera-to-world poses of ``retrieved`` (for retrieval recall)."""
    reprojection_px: Optional[float] = None
    """Median reprojection error (pixels) of the PnP inliers under the PnP pose; ``None`` without one."""
    prior_c2w: Optional[np.ndarray] = None
    """The best prior's camera-to-world pose (any stage of a cascade): what ``poses.txt`` gives a
    query that failed, the way hloc does; ``None`` for localizers without priors."""
    hypotheses: List[PoseHypothesis] = field(default_factory=list)
    """Every pose this result's stage could give, its final pose first (empty without a pose)."""
    verification: Optional[Verification] = None
    """What render verification decided (``None`` when it did not run)."""

    @property
    def localized(self) -> bool:
        return self.w2c is not None

    @property
    def status(self) -> str:
        """``localized``, ``unverified`` (a pose the map did not confirm) or ``failed``."""
        if self.w2c is None:
            return "failed"
        return "unverified" if self.verification is not None and not self.verification.verified else "localized"

    @property
    def hypothesis(self) -> str:
        """Source of the verified pose (``""`` without verification)."""
        v = self.verification
        return v.hypotheses[v.chosen].source if v is not None else ""

    @property
    def inlier_ratio(self) -> float:
        """Inliers / 2D-3D matches of the final pose (its confidence; 0 for pose regression)."""
        return inlier_ratio(self.num_inliers, self.num_matches)


class StageTimer:
    def __init__(self) -> None:
        self.times: Dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[stage] += time.perf_counter() - start

    def per_stage(self) -> Dict[str, float]:
        """Seconds spent in each of :data:`STAGES` (0 for stages not run)."""
        return {stage: self.times.get(stage, 0.0) for stage in STAGES}


class PriorSource:
    """Top-k reference frames per query: from a pairs file, built-in VLAD retrieval (over the
    mapping frames and, with ``--retrieval.synthesize``, views the map renders), or a
    :class:`PosePrior` (e.g. an absolute pose regressor's pose)."""

    def __init__(
        self, localizer: MapViewLocalizer, config: PipelineConfig, pose_prior: Optional[PosePrior] = None
    ) -> None:
        self.localizer = localizer
        self.config = config
        self.frames = list(localizer.map_frames())
        self.pairs = None
        self.index = None
        self.pose_prior = pose_prior
        self.build_seconds = 0.0
        start = time.perf_counter()
        if pose_prior is not None:
            if not localizer.renders_at_any_pose:
                raise ValueError(f"--pose-prior: {localizer.name} cannot render at a prior pose (it needs a field)")
        elif config.pairs is not None:
            self.pairs = read_pairs(config.pairs)
        else:
            features = config.retrieval.features
            self.extractor = LocalFeatureMatcher(features, device=localizer.device, with_matcher=False).extract
            self.index = VladIndex(config.retrieval, device=localizer.device)
            source = config.retrieval.source
            images = [localizer.retrieval_image(f, source) for f in self.frames]
            for view in self.synthesized_views():
                localizer.add_rendered_view(view.frame, view.rgb, view.depth)
                self.frames.append(view.frame)
                images.append(view.rgb)
            self.index.fit([self.extractor(image).descriptors for image in images])
        self.by_name = {f.name: f for f in self.frames}
        self.build_seconds = time.perf_counter() - start

    def synthesized_views(self) -> List[SynthesizedView]:
        """The views of ``--retrieval.synthesize`` around the mapping frames (none when it is off)."""
        synth = self.config.retrieval.synthesize
        if synth.headings <= 0:
            return []
        renderer = FieldRenderer(synth.map) if synth.map is not None else self.localizer.map_renderer()
        if renderer is None:
            raise ValueError(
                f"--retrieval.synthesize: {self.localizer.name} has no field to render; pass a trained map "
                "with --retrieval.synthesize.map RUN/config.yml"
            )
        return synthesize_views(renderer, self.localizer.map_frames(), synth)

    @property
    def verifies(self) -> bool:
        """Whether the pipeline re-ranks a shortlist by geometric verification (retrieval only)."""
        return self.pose_prior is None and self.config.retrieval.verify > self.config.retrieval.top_k

    def __call__(self, query: PosedFrame, image: np.ndarray) -> List[PosedFrame]:
        """The priors of ``query``: ``top_k`` frames, or the ``verify`` shortlist when :attr:`verifies`."""
        if self.pose_prior is not None:
            return [self.pose_prior.prior_frame(query)]
        top_k = self.config.retrieval.verify if self.verifies else self.config.retrieval.top_k
        if self.pairs is not None:
            names = self.pairs.get(query.name, [])[:top_k]
            missing = [n for n in names if n not in self.by_name]
            if missing:
                raise ValueError(
                    f"{self.config.pairs}: reference {missing[0]!r} is not a mapping frame of this dataset"
                )
            return [self.by_name[n] for n in names]
        return [self.frames[i] for i, _ in self.index.search(self.extractor(image).descriptors, top_k)]


def localize_query(
    localizer: Localizer,
    frame: PosedFrame,
    priors_fn: Optional[PriorSource],
    config: PipelineConfig,
    render_match: Optional[RenderMatchRefiner] = None,
) -> QueryResult:
    """One query through the path of ``localizer.kind`` (``priors_fn``: map-view matchers only),
    then render-and-match refinement of its estimate when ``render_match`` is given."""
    timer = StageTimer()
    with timer("features"):
        query = localizer.describe_query(frame)
    if localizer.kind is LocalizerKind.REGRESSES_POSE:
        result = regress_pose_query(localizer, frame, query, timer)
    elif localizer.kind is LocalizerKind.REGRESSES_SCENE_COORDINATES:
        result = regress_query(localizer, frame, query, config, timer)
    else:
        result = match_query(localizer, frame, query, priors_fn, config, timer)
    result.stage = localizer.name if result.w2c is not None else ""
    for hyp in result.hypotheses:  # "" and "#2" are the localizer's own; "views", "view:NAME" a part of it
        hyp.source = localizer.name + (hyp.source if hyp.source[:1] in ("", "#") else f":{hyp.source}")
    return refine_by_render_match(result, render_match)


def query_image(result: QueryResult) -> tuple[np.ndarray, object]:
    """The query image and its camera as the localizer described it (loaded again when the
    localizer kept no image at the camera's size)."""
    query = result.query
    if query is not None and query.image is not None:
        height, width = query.image.shape[:2]
        if (width, height) == (query.intrinsics.width, query.intrinsics.height):
            return query.image, query.intrinsics
    return load_rgb(result.frame.image_path), result.frame.intrinsics


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


def localize_with_cascade(
    stages: List[tuple],
    frame: PosedFrame,
    config: PipelineConfig,
    render_match: Optional[RenderMatchRefiner] = None,
    verifier: Optional[RenderVerifier] = None,
) -> QueryResult:
    """``stages``: ``[(localizer, priors)]``, the first then fallbacks (``localize/cascade.py``):
    each next stage runs while the kept result fails the check (with a ``verifier`` and
    ``--verify.every-stage``: every stage runs); the ``verifier`` chooses among the hypotheses of
    every stage run; render-and-match refines the kept one."""
    accept = config.cascade.accept
    every_stage = verifier is not None and config.verify.every_stage
    result: Optional[QueryResult] = None
    ran: List[QueryResult] = []
    prior_c2w = None
    for localizer, priors in stages:
        if (
            not every_stage
            and result is not None
            and is_accepted(result.w2c, result.num_inliers, result.num_matches, accept)
        ):
            break
        other = localize_query(localizer, frame, priors, config)
        ran.append(other)
        prior_c2w = other.prior_c2w if prior_c2w is None else prior_c2w
        if result is None:
            result = other
            continue
        timings = {k: result.timings.get(k, 0.0) + other.timings.get(k, 0.0) for k in STAGES}
        takes_over = other.w2c is not None and (
            result.w2c is None
            or (
                is_accepted(other.w2c, other.num_inliers, other.num_matches, accept)
                and not is_accepted(result.w2c, result.num_inliers, result.num_matches, accept)
            )
            or (
                not is_accepted(result.w2c, result.num_inliers, result.num_matches, accept)
                and other.num_inliers > result.num_inliers
            )
        )
        result = other if takes_over else result
        result.timings = timings
    result.prior_c2w = prior_c2w
    if verifier is not None and result.w2c is not None:
        result = verify_hypotheses(result, ran, verifier)
    return refine_by_render_match(result, render_match, verifier)


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


def field_to_render(
    run: Optional[Path], localizers: List[Localizer], option: str, loaded: Optional[Dict[Path, FieldRenderer]] = None
) -> FieldRenderer:
    """The trained run ``run`` (loaded once per path through ``loaded``), or else the field of the
    first of ``localizers`` that has one; one-line error naming ``option`` when there is none."""
    if run is not None:
        loaded = {} if loaded is None else loaded
        if Path(run) not in loaded:
            loaded[Path(run)] = FieldRenderer(run)
        return loaded[Path(run)]
    renderer = next((r for r in (loc.map_renderer() for loc in localizers) if r is not None), None)
    if renderer is None:
        names = " / ".join(loc.name for loc in localizers)
        raise ValueError(f"{option}: {names} has no field to render; pass a trained map with {option}.map RUN/config.yml")
    return renderer


def render_match_refiner(
    localizers: List[Localizer], config: PipelineConfig, loaded: Optional[Dict[Path, FieldRenderer]] = None
) -> Optional[RenderMatchRefiner]:
    """The render-and-match refiner of ``config`` (``None`` when off): it renders
    ``--render-match.map``, or else the field of the first of ``localizers`` that has one."""
    if config.render_match.iterations <= 0:
        return None
    renderer = field_to_render(config.render_match.map, localizers, "--render-match", loaded)
    return RenderMatchRefiner(renderer, config.render_match, config.pnp)


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


def prepare_stages(
    localizer: Localizer,
    config: PipelineConfig,
    pose_prior: Optional[PosePrior] = None,
    fallbacks: Sequence[Localizer] = (),
) -> tuple[List[tuple], Optional[RenderMatchRefiner], Optional[RenderVerifier]]:
    """Everything set up once before the first query: the cascade's ``[(localizer, priors)]``
    stages (retrieval indexes built), the render-and-match refiner and the render verifier;
    ``config.render`` is applied to every field the stages render.  Used by
    :func:`run_localization` and the API."""
    config.render.validate()
    config.render_match.sampling.validate()
    for loc in (localizer, *fallbacks):
        renderer = loc.map_renderer()
        if renderer is not None:
            if config.render.samples is not None or config.render.depth_guided:
                renderer.check_sampling(config.render)
            renderer.sampling = config.render
    priors = None
    if localizer.kind is LocalizerKind.MATCHES_MAP_VIEWS:
        priors = PriorSource(localizer, config, pose_prior)
    elif pose_prior is not None:
        raise ValueError(f"--pose-prior: {localizer.name} does not match map views ({localizer.kind.value})")
    stages = [(localizer, priors)]
    for fallback in fallbacks:
        fallback_priors = PriorSource(fallback, config) if fallback.kind is LocalizerKind.MATCHES_MAP_VIEWS else None
        stages.append((fallback, fallback_priors))
    localizers = [loc for loc, _ in stages]
    loaded: Dict[Path, FieldRenderer] = {}  # a run both refine and verify name is loaded once
    return stages, render_match_refiner(localizers, config, loaded), render_verifier(localizers, config, loaded)


def render_verifier(
    localizers: List[Localizer], config: PipelineConfig, loaded: Optional[Dict[Path, FieldRenderer]] = None
) -> Optional[RenderVerifier]:
    """The render verifier of ``config.verify`` (``None`` when off): it renders ``--verify.map``,
    or else the field of the first of ``localizers`` that has one."""
    if not config.verify.on:
        return None
    renderer = field_to_render(config.verify.map, localizers, "--verify", loaded)
    if config.verify.sampling.samples is not None or config.verify.sampling.depth_guided:
        renderer.check_sampling(config.verify.sampling)
    return RenderVerifier(renderer, config.verify)


def run_localization(
    localizer: Localizer,
    config: PipelineConfig,
    split: str = "test",
    max_queries: Optional[int] = None,
    pose_prior: Optional[PosePrior] = None,
    fallbacks: Sequence[Localizer] = (),
    queries: Optional[Sequence[PosedFrame]] = None,
    journal=None,
    maps: Optional[Dict[str, int]] = None,
) -> tuple[List[QueryResult], float]:
    """Localize every query of ``split`` (or ``queries``, e.g. pose-free images of ``--queries``);
    returns the results and the prior-index build time.  ``journal``
    (:class:`~nerfloc_plugins.localize.query_journal.QueryJournal`): queries it has are not run
    again, each new result is recorded as it finishes.

    ``pose_prior`` replaces retrieval as the prior of a map-view localizer that renders;
    ``fallbacks`` (in order) localize the queries whose result so far fails ``config.cascade.accept``;
    ``maps`` (a dict, filled when given): bytes of the maps the pipeline loaded beside the
    localizers' own (``verification``: the render verifier's map)."""
    given = queries is not None
    queries = list(queries) if given else localizer.query_frames(split)
    if max_queries is not None:
        queries = queries[:max_queries]
    if not given:
        for fallback in fallbacks:
            check_same_queries(localizer, fallback, queries, split)
    if max_queries is not None and max_queries < 1:
        raise ValueError(f"--max-queries {max_queries}: expected a number >= 1 (omit it for every query)")
    stages, refiner, verifier = prepare_stages(localizer, config, pose_prior, fallbacks)
    if maps is not None and verifier is not None and config.verify.map is not None:
        maps["verification"] = verifier.renderer.size_bytes()
    for _, priors in stages:
        if priors is not None and priors.pairs is not None:
            covered = check_pairs_cover(priors.pairs, [q.name for q in queries], config.pairs)
            if covered < len(queries):
                print(
                    f"warning: {config.pairs}: no pairs for {len(queries) - covered} of {len(queries)} queries (they fail)"
                )
    results: List[QueryResult] = []
    errors_cm: List[float] = []
    columns = [
        TextColumn("[bold]localizing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[median]}"),
    ]
    with Progress(*columns) as progress:
        task = progress.add_task("localize", total=len(queries), median="")
        for frame in queries:
            res = journal.finished(frame) if journal is not None else None
            if res is None:
                res = localize_with_cascade(stages, frame, config, refiner, verifier)
                if journal is not None:
                    journal.record(res)
            results.append(res)
            if frame.c2w is None:  # no ground truth: show how many are localized
                errors_cm.append(0.0 if res.localized else float("inf"))
                shown = f"{sum(np.isfinite(errors_cm))} localized"
            else:
                err = pose_error(res.w2c, invert_rigid(frame.c2w))[0] * 100 if res.localized else float("inf")
                errors_cm.append(err)
                shown = f"median {np.median(errors_cm):.1f} cm"
            progress.update(task, advance=1, median=shown)
    return results, sum(p.build_seconds for _, p in stages if p is not None)
