"""What one query gives: :class:`QueryResult` (pose, evidence, hypotheses, timings) and the per-stage timer."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional

import numpy as np
import torch

from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.localize.interface.localizer import (
    MapView,
    QueryDescription,
)
from nerfloc_plugins.localize.stages.cascade import inlier_ratio
from nerfloc_plugins.localize.stages.hypotheses import PoseHypothesis
from nerfloc_plugins.localize.stages.verification import Verification

STAGES = ("prior", "features", "regress", "render", "match", "verify", "pnp", "refine", "render_match", "render_verify")


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


def synchronize_cuda() -> None:
    """Wait for the GPU's queued work (CUDA kernels run asynchronously: without it a stage's time
    lands in whichever later stage first reads a result); nothing when CUDA is not in use."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class StageTimer:
    """Wall-clock seconds per stage, CUDA synchronised at each stage's start and end."""

    def __init__(self) -> None:
        self.times: Dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        synchronize_cuda()
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize_cuda()
            self.times[stage] += time.perf_counter() - start

    def per_stage(self) -> Dict[str, float]:
        """Seconds spent in each of :data:`STAGES` (0 for stages not run)."""
        return {stage: self.times.get(stage, 0.0) for stage in STAGES}
