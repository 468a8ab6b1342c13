"""``ns-localize``: localize a dataset's queries in a trained nerfloc map (shared pipeline).

The localizer is chosen from the trained model's type; methods register theirs in
``LOCALIZERS`` (most specific model config first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Literal, Optional, Tuple, Type

from nerfloc_plugins.localize.apr_localizer import APRLocalizer
from nerfloc_plugins.localize.crossfire_localizer import CrossFireLocalizer, CrossFireLocalizerConfig
from nerfloc_plugins.localize.d2s_localizer import D2SLocalizer, D2SLocalizerConfig, D2SRun
from nerfloc_plugins.localize.localizer import Localizer
from nerfloc_plugins.localize.nerfmatch_localizer import NerfMatchLocalizer, NerfMatchLocalizerConfig
from nerfloc_plugins.localize.neuraloc_localizer import NeuraLocLocalizer, NeuraLocLocalizerConfig
from nerfloc_plugins.localize.pipeline import PipelineConfig, RefineConfig
from nerfloc_plugins.localize.pnp import PnPConfig
from nerfloc_plugins.localize.rendered_features_localizer import RenderedFeaturesConfig, RenderedFeaturesLocalizer
from nerfloc_plugins.localize.retrieval import RetrievalConfig
from nerfloc_plugins.localize.run import localize_and_report
from nerfloc_plugins.models.apr import APRConfig
from nerfloc_plugins.models.crossfire import CrossFireModelConfig
from nerfloc_plugins.models.nerfloc_nerfacto import NerflocNerfactoModelConfig
from nerfloc_plugins.models.nerfmatch import NerfMatchModelConfig
from nerfloc_plugins.models.neuraloc import NeuraLocModelConfig
from nerfloc_plugins.scripts.cli import run_cli


def _rendered_features(cfg: "Localize") -> Localizer:
    return RenderedFeaturesLocalizer(cfg.load_config, cfg.rendered_features)


def _crossfire(cfg: "Localize") -> Localizer:
    return CrossFireLocalizer(cfg.load_config, cfg.crossfire)


def _nerfmatch(cfg: "Localize") -> Localizer:
    return NerfMatchLocalizer(cfg.load_config, cfg.nerfmatch)


def _neuraloc(cfg: "Localize") -> Localizer:
    return NeuraLocLocalizer(cfg.load_config, cfg.neuraloc)


def _apr(cfg: "Localize") -> Localizer:
    return APRLocalizer(cfg.load_config)


# most specific model config first
LOCALIZERS: List[Tuple[Type, Callable[["Localize"], Localizer]]] = [
    (APRConfig, _apr),
    (NeuraLocModelConfig, _neuraloc),
    (NerfMatchModelConfig, _nerfmatch),
    (CrossFireModelConfig, _crossfire),
    (NerflocNerfactoModelConfig, _rendered_features),
]


def run_config_of(load_config: Path):
    """The object in an ``ns-train`` ``config.yml`` (or a ``d2s_run.yml``)."""
    import yaml

    if not load_config.is_file():
        raise SystemExit(f"error: {load_config}: config file not found (expected ns-train's config.yml)")
    return yaml.load(load_config.read_text(), Loader=yaml.Loader)


@dataclass
class Localize:
    """Localize the queries of a trained map's dataset and write poses, metrics and a report."""

    load_config: Path
    """``config.yml`` of an ``ns-train`` run of a nerfloc method (a ``posemap-apr`` /
    ``posemap-align`` run: APR alone), or ``d2s_run.yml`` of ``ns-nerfloc-train-d2s``."""
    output_dir: Path = Path("outputs/localize")
    split: Literal["test", "train"] = "test"
    max_queries: Optional[int] = None
    pairs: Optional[Path] = None
    """hloc/PixLoc retrieval pairs (``query db`` lines) instead of built-in retrieval."""
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    pnp: PnPConfig = field(default_factory=PnPConfig)
    refine: RefineConfig = field(default_factory=lambda: RefineConfig(iterations=2))
    """Iterative (re-render + match) and photometric refinement."""
    rendered_features: RenderedFeaturesConfig = field(default_factory=RenderedFeaturesConfig)
    """Options of the rendered-features localizer (plain nerfloc-nerfacto maps)."""
    crossfire: CrossFireLocalizerConfig = field(default_factory=CrossFireLocalizerConfig)
    """Options of the CrossFire localizer (crossfire maps)."""
    nerfmatch: NerfMatchLocalizerConfig = field(default_factory=NerfMatchLocalizerConfig)
    """Options of the NeRFMatch localizer (nerfmatch / nerfmatch-mini runs)."""
    neuraloc: NeuraLocLocalizerConfig = field(default_factory=NeuraLocLocalizerConfig)
    """Options of the NeuraLoc localizer (neuraloc runs)."""
    d2s: D2SLocalizerConfig = field(default_factory=D2SLocalizerConfig)
    """Options of the D2S localizer (d2s_run.yml)."""
    pose_prior: Optional[Path] = None
    """config.yml of a ``posemap-apr`` / ``posemap-align`` run: its pose is the prior of this
    method's render -> match -> PnP -> refinement (instead of retrieval)."""
    baseline_metrics: Optional[Path] = None
    """``metrics.json`` of ``ns-localize-baseline`` to show beside this method in report.md."""

    def localizer(self) -> Localizer:
        run = run_config_of(self.load_config)
        if isinstance(run, D2SRun):
            return D2SLocalizer(self.load_config, self.d2s)
        model = run.pipeline.model
        for config_type, factory in LOCALIZERS:
            if isinstance(model, config_type):
                return factory(self)
        raise SystemExit(f"error: {self.load_config}: no nerfloc localizer for model {type(model).__name__}")

    def main(self) -> dict:
        pipeline = PipelineConfig(self.retrieval, self.pairs, self.pnp, self.refine, self.pose_prior)
        localizer = self.localizer()
        if self.pose_prior is not None:
            localizer.name = f"{localizer.name} + APR prior"
        return localize_and_report(
            localizer, pipeline, self.output_dir, self.split, self.max_queries, self.baseline_metrics
        )


def entrypoint() -> None:
    run_cli(Localize)


if __name__ == "__main__":
    entrypoint()
