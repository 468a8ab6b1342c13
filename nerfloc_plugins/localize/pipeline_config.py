"""The method-agnostic options of localization (``PipelineConfig``) and the best classical default."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from typing_extensions import Annotated

from nerfloc_plugins.localize.stages.cascade import CascadeConfig
from nerfloc_plugins.localize.stages.pnp import PnPConfig
from nerfloc_plugins.localize.stages.refine import PhotometricConfig
from nerfloc_plugins.localize.stages.render_match import RenderMatchConfig
from nerfloc_plugins.localize.stages.retrieval import RetrievalConfig
from nerfloc_plugins.localize.stages.verification import VerifyConfig
from nerfloc_plugins.nerf.render_sampling import RenderSampling
from nerfloc_plugins.utils.option_ranges import NON_NEGATIVE


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


def best_baseline_pipeline() -> PipelineConfig:
    """The default of ``ns-localize-baseline``: VLAD shortlist of 20, geometrically verified, the 5
    best merged into one PnP (the best classical pipeline measured on three example scenes, see
    docs/localization.md; ``--retrieval.verify 0 --retrieval.top-k 1`` is the plain top-1 baseline)."""
    return PipelineConfig(retrieval=RetrievalConfig(top_k=5, verify=20))
