"""The shared localization pipeline's orchestration: :class:`LocalizationPipeline` runs each query
through the cascade's stages (:mod:`~nerfloc_plugins.localize.stages`), verifies and refines the
result against a map, and loops over the queries; the commands, the benchmark and the Python API
all run it.

Stages (hloc-like, each timed per query): ``prior`` (retrieval), ``features`` (query
description), ``regress``, ``render`` (map features at a pose), ``match``, ``verify`` (shortlist
re-ranking), ``pnp``, ``refine``, ``render_match``, ``render_verify``.
One path per :class:`~nerfloc_plugins.localize.interface.localizer.LocalizerKind`: map-view matchers
run prior -> render -> match -> PnP (-> refinement) (:mod:`~nerfloc_plugins.localize.stages.map_view_matching`);
scene-coordinate regressors (D2S) skip prior, render and match: their ``match`` stage is the
regression; absolute pose regressors (PMNet) give the pose in their ``regress`` stage
(:mod:`~nerfloc_plugins.localize.stages.regression`).  With a :class:`PosePrior` (``ns-localize
--pose-prior``, e.g. an APR) the prior is its pose instead of retrieved frames.  A query whose
first-stage result fails ``--cascade.accept`` goes on to the fallbacks.
With ``--verify.*`` every stage keeps its pose hypotheses and a map renders each to choose the one
the query shows; render-and-match refinement is then kept only when the map confirms it
(:mod:`~nerfloc_plugins.localize.stages.map_checks`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from nerfloc_plugins.data.frames import PosedFrame, decoded_once
from nerfloc_plugins.data.hloc_files import check_pairs_cover
from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.interface.localizer import (
    Localizer,
    LocalizerKind,
    PosePrior,
    QueryDescription,
)
from nerfloc_plugins.localize.pipeline_config import PipelineConfig
from nerfloc_plugins.localize.stages.cascade import check_same_queries, is_accepted
from nerfloc_plugins.localize.stages.field_stages import render_match_refiner, render_verifier
from nerfloc_plugins.localize.stages.map_checks import refine_by_render_match, verify_hypotheses
from nerfloc_plugins.localize.stages.map_view_matching import match_query
from nerfloc_plugins.localize.stages.priors import PriorSource
from nerfloc_plugins.localize.stages.query_result import STAGES, QueryResult, StageTimer
from nerfloc_plugins.localize.stages.regression import regress_pose_query, regress_query
from nerfloc_plugins.localize.stages.render_match import RenderMatchRefiner
from nerfloc_plugins.localize.stages.verification import RenderVerifier
from nerfloc_plugins.nerf.field_renderer import FieldRenderer


def localize_query(
    localizer: Localizer,
    frame: PosedFrame,
    priors_fn: Optional[PriorSource],
    config: PipelineConfig,
    render_match: Optional[RenderMatchRefiner] = None,
    described: Optional[Dict[int, QueryDescription]] = None,
) -> QueryResult:
    """One query through the path of ``localizer.kind`` (``priors_fn``: map-view matchers only),
    then render-and-match refinement of its estimate when ``render_match`` is given;
    ``described``: the query's descriptions by describer, shared by the stages of a cascade."""
    timer = StageTimer()
    described = {} if described is None else described
    key = id(localizer.describer())
    with timer("features"):
        if key not in described:
            described[key] = localizer.describe_query(frame)
        query = described[key]
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


def localize_with_cascade(
    stages: List[tuple],
    frame: PosedFrame,
    config: PipelineConfig,
    render_match: Optional[RenderMatchRefiner] = None,
    verifier: Optional[RenderVerifier] = None,
) -> QueryResult:
    """``stages``: ``[(localizer, priors)]``, the first then fallbacks (``localize/stages/cascade.py``):
    each next stage runs while the kept result fails the check (with a ``verifier`` and
    ``--verify.every-stage``: every stage runs); the ``verifier`` chooses among the hypotheses of
    every stage run; render-and-match refines the kept one."""
    accept = config.cascade.accept
    every_stage = verifier is not None and config.verify.every_stage
    result: Optional[QueryResult] = None
    ran: List[QueryResult] = []
    described: Dict[int, QueryDescription] = {}  # stages with one describer describe the query once
    prior_c2w = None
    for localizer, priors in stages:
        if (
            not every_stage
            and result is not None
            and is_accepted(result.w2c, result.num_inliers, result.num_matches, accept)
        ):
            break
        other = localize_query(localizer, frame, priors, config, described=described)
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


class LocalizationPipeline:
    """A map's localization pipeline, set up once and then run per query: the cascade's stages
    (``localizer`` first, then ``fallbacks`` for the queries it did not solve, each with its prior
    source: retrieval index built, pairs read, or ``pose_prior``), the render-and-match refiner and
    the render verifier of ``config``; ``config.render`` is applied to every field the stages render.

    The commands (``ns-localize``, ``ns-localize-baseline``), the benchmark and the Python API all
    run this object; :mod:`~nerfloc_plugins.localize.map_sources` builds one from a dataset folder
    or a trained run, and a cascade can be composed from any localizers::

        pipeline = LocalizationPipeline(first, PipelineConfig(verify=VerifyConfig(map=run)), fallbacks=[other])
        result = pipeline.localize(frame)          # a QueryResult
    """

    def __init__(
        self,
        localizer: Localizer,
        config: Optional[PipelineConfig] = None,
        fallbacks: Sequence[Localizer] = (),
        pose_prior: Optional[PosePrior] = None,
    ) -> None:
        config = PipelineConfig() if config is None else config
        config.render.validate()
        config.render_match.sampling.validate()
        self.localizer, self.config, self.fallbacks, self.pose_prior = localizer, config, list(fallbacks), pose_prior
        for loc in (localizer, *self.fallbacks):
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
        self.stages: List[tuple] = [(localizer, priors)]
        """``[(localizer, prior source or None)]``, first stage first."""
        for fallback in self.fallbacks:
            fallback_priors = PriorSource(fallback, config) if fallback.kind is LocalizerKind.MATCHES_MAP_VIEWS else None
            self.stages.append((fallback, fallback_priors))
        localizers = [loc for loc, _ in self.stages]
        loaded: Dict[Path, FieldRenderer] = {}  # a run both refine and verify name is loaded once
        self.refiner: Optional[RenderMatchRefiner] = render_match_refiner(localizers, config, loaded)
        self.verifier: Optional[RenderVerifier] = render_verifier(localizers, config, loaded)

    @property
    def name(self) -> str:
        """The stages' localizer names, ``first -> fallback``."""
        return " -> ".join(loc.name for loc, _ in self.stages)

    @property
    def index_seconds(self) -> float:
        """Time spent building the stages' prior indexes (retrieval)."""
        return sum(p.build_seconds for _, p in self.stages if p is not None)

    def map_bytes(self) -> int:
        """Bytes of everything the pipeline localizes with: every stage's map and a verification map
        it loaded beside them (``--verify.map``)."""
        total = self.localizer.map_size_bytes()
        total += sum(f.map_size_bytes() for f in self.fallbacks if f is not self.localizer)
        if self.verifier is not None and self.config.verify.map is not None:
            total += self.verifier.renderer.size_bytes()
        return total

    def with_pose_prior(self, pose_prior: PosePrior) -> List[tuple]:
        """The stages with ``pose_prior`` as the first stage's prior (a map-view localizer that renders)."""
        first, _ = self.stages[0]
        if first.kind is not LocalizerKind.MATCHES_MAP_VIEWS or not first.renders_at_any_pose:
            raise ValueError(f"prior: {first.name} cannot render at a given pose (it needs a field map)")
        return [(first, PriorSource(first, self.config, pose_prior))] + self.stages[1:]

    def localize(self, frame: PosedFrame, stages: Optional[List[tuple]] = None) -> QueryResult:
        """One query through the cascade (``stages``: e.g. :meth:`with_pose_prior`'s).  The image is
        decoded once, when a stage first reads it, and shared by every stage, the fallbacks and the
        verifier; the result's frame carries no pixels.  A frame
        with ``problems`` (an unreadable query image skipped by ``--queries``) gives a failed result."""
        if frame.problems:
            return QueryResult(frame, None, [], 0, 0, 0, StageTimer().per_stage())
        result = localize_with_cascade(stages or self.stages, decoded_once(frame), self.config, self.refiner, self.verifier)
        result.frame = frame
        return result

    def query_frames(self, split: str = "test", max_queries: Optional[int] = None) -> List[PosedFrame]:
        """The first localizer's queries of ``split`` (the first ``max_queries``); every stage must
        have the same ones."""
        if max_queries is not None and max_queries < 1:
            raise ValueError(f"--max-queries {max_queries}: expected a number >= 1 (omit it for every query)")
        queries = self.localizer.query_frames(split)[:max_queries]
        for fallback in self.fallbacks:
            check_same_queries(self.localizer, fallback, queries, split)
        return queries

    def localize_all(self, queries: Sequence[PosedFrame], journal=None, progress: bool = True) -> List[QueryResult]:
        """Every query, with a progress bar showing the median error (or the localized count for
        queries without ground truth).  ``journal``
        (:class:`~nerfloc_plugins.localize.outputs.query_journal.QueryJournal`): queries it has are
        not run again, each new result is recorded as it finishes."""
        for _, priors in self.stages:
            if priors is not None and priors.pairs is not None:
                covered = check_pairs_cover(priors.pairs, [q.name for q in queries], self.config.pairs)
                if covered < len(queries):
                    missing = len(queries) - covered
                    print(f"warning: {self.config.pairs}: no pairs for {missing} of {len(queries)} queries (they fail)")
        results: List[QueryResult] = []
        errors_cm: List[float] = []
        columns = [
            TextColumn("[bold]localizing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[median]}"),
        ]
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task("localize", total=len(queries), median="")
            for frame in queries:
                res = journal.finished(frame) if journal is not None else None
                if res is None:
                    res = self.localize(frame)
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
                bar.update(task, advance=1, median=shown)
        return results


def run_localization(
    localizer: Localizer,
    config: PipelineConfig,
    split: str = "test",
    max_queries: Optional[int] = None,
    pose_prior: Optional[PosePrior] = None,
    fallbacks: Sequence[Localizer] = (),
    queries: Optional[Sequence[PosedFrame]] = None,
) -> tuple[List[QueryResult], float]:
    """:class:`LocalizationPipeline` of ``localizer`` (then ``fallbacks``) run on the queries of
    ``split`` (or ``queries``); returns the results and the prior-index build time."""
    if max_queries is not None and max_queries < 1:
        raise ValueError(f"--max-queries {max_queries}: expected a number >= 1 (omit it for every query)")
    pipeline = LocalizationPipeline(localizer, config, fallbacks, pose_prior)
    if queries is None:
        queries = pipeline.query_frames(split, max_queries)
    return pipeline.localize_all(list(queries)[:max_queries]), pipeline.index_seconds
