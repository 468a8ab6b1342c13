"""``ns-localize-baseline``: the classical feature-based baseline in the shared pipeline.

A thin wrapper: parse, :func:`~nerfloc_plugins.localize.map_sources.pipeline_from_dataset`,
:func:`~nerfloc_plugins.localize.run.localize_and_report`.  The dataparser subcommands are every
nerfloc dataparser registered under Nerfstudio's ``nerfstudio.dataparser_configs`` entry points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import tyro
from typing_extensions import Annotated

from nerfloc_plugins.data.dataparser_specs import discover_dataparsers
from nerfloc_plugins.data.query_images import QueryImagesConfig
from nerfloc_plugins.localize.map_sources import DEFAULT_DATAPARSER, ClassicalMapConfig, pipeline_from_dataset
from nerfloc_plugins.localize.outputs.query_journal import check_output_dir
from nerfloc_plugins.localize.pipeline_config import PipelineConfig, best_baseline_pipeline
from nerfloc_plugins.localize.run import localize_and_report
from nerfloc_plugins.utils.cli import run_cli, run_settings
from nerfloc_plugins.utils.option_ranges import COUNT

DATAPARSERS = discover_dataparsers()
DataparserConfig = Union[
    tuple(
        Annotated[type(spec.config), tyro.conf.subcommand(name, default=spec.config, description=spec.description)]
        for name, spec in DATAPARSERS.items()
    )
]
"""The dataparser as a subcommand with its own flags, as ``ns-train`` takes it
(``ns-localize-baseline --data DIR sevenscenes-data --fx 292.5 --fy 292.5 --cx 160 --cy 120``)."""


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
    classical: Annotated[ClassicalMapConfig, tyro.conf.arg(name="")] = field(default_factory=ClassicalMapConfig)
    """The classical map (flat: ``--features``, ``--sift.*``, ``--matching.*``, ``--learned.*``,
    ``--device``, ``--map-matching``, ``--direct.*``): by default SIFT, direct 2D-3D matching, then the
    verified views for the queries it did not solve."""
    dataparser: Annotated[DataparserConfig, tyro.conf.OmitSubcommandPrefixes] = field(
        default_factory=lambda: DATAPARSERS[DEFAULT_DATAPARSER].config
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

    def main(self) -> dict:
        check_output_dir(self.output_dir)
        pipeline = pipeline_from_dataset(
            self.data, self.pipeline, self.classical, self.dataparser, self.train_stride, self.split, self.pose_free
        )
        return localize_and_report(
            pipeline,
            self.output_dir,
            self.split,
            self.max_queries,
            baseline_metrics=self.baseline_metrics,
            query_images=self.pose_free,
            settings=run_settings(self),
            fresh=self.fresh,
        )


def entrypoint() -> None:
    run_cli(LocalizeBaseline)


if __name__ == "__main__":
    entrypoint()
