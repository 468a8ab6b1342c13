"""``ns-localize``: localize a dataset's queries in a trained nerfloc map (shared pipeline).

A thin wrapper: parse, :func:`~nerfloc_plugins.localize.map_sources.pipeline_from_run`,
:func:`~nerfloc_plugins.localize.run.localize_and_report`.

The localizer is chosen from the trained run by the localizer specs registered under the
entry-point group ``nerfloc.localizers`` (:mod:`nerfloc_plugins.localize.interface.specs`); each spec
with options adds its ``--<name>.*`` group to this command.  Nothing here names a method.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Literal, Optional

import tyro
from typing_extensions import Annotated

from nerfloc_plugins.data.query_images import QueryImagesConfig
from nerfloc_plugins.localize.interface.specs import LocalizerSpec, discover_specs
from nerfloc_plugins.localize.map_sources import pipeline_from_run
from nerfloc_plugins.localize.outputs.query_journal import check_output_dir
from nerfloc_plugins.localize.pipeline_config import PipelineConfig
from nerfloc_plugins.localize.run import localize_and_report
from nerfloc_plugins.nerf.run_files import dataset_override
from nerfloc_plugins.utils.cli import run_cli, run_settings
from nerfloc_plugins.utils.option_ranges import COUNT


def option_field_name(spec: LocalizerSpec) -> str:
    """Attribute of :class:`Localize` holding ``spec``'s options (``--rendered-features.*`` ->
    ``rendered_features``)."""
    return spec.name.replace("-", "_")


class LocalizerOptions:
    """What a command that loads a run's localizer shares: the specs it knows (set by
    :func:`with_localizer_options`) and each one's ``--<name>.*`` options of this command."""

    specs: ClassVar[List[LocalizerSpec]] = []

    def options_of(self, spec: LocalizerSpec) -> Any:
        return getattr(self, option_field_name(spec), None)

    def options(self) -> Dict[str, Any]:
        """Every localizer's options of this command, by spec name."""
        return {spec.name: self.options_of(spec) for spec in self.specs if spec.options is not None}


@dataclass
class LocalizeBase(LocalizerOptions):
    """Localize the queries of a trained map's dataset and write poses, metrics and a report."""

    load_config: Path
    """``config.yml`` of an ``ns-train`` run of a nerfloc method (a ``posemap-apr`` /
    ``posemap-align`` run: APR alone), or another method's run file (``d2s_run.yml``)."""
    output_dir: Path = Path("outputs/localize")
    data: Optional[Path] = None
    """The dataset folder, when it is no longer where the run was trained (moved, another machine):
    the run and the runs it was trained on read their frames from here."""
    split: Literal["test", "train"] = "test"
    max_queries: Annotated[Optional[int], COUNT] = None
    pipeline: Annotated[PipelineConfig, tyro.conf.arg(name="")] = field(default_factory=PipelineConfig)
    """Retrieval or pairs, PnP and refinement (flat: ``--pairs``, ``--retrieval.*``, ``--pnp.*``, ``--refine.*``)."""
    pose_prior: Optional[Path] = None
    """Run file of a pose regressor (a ``posemap-apr`` / ``posemap-align`` run): its pose is the
    prior of this method's render -> match -> PnP -> refinement (instead of retrieval)."""
    baseline_metrics: Optional[Path] = None
    """``metrics.json`` of ``ns-localize-baseline`` to show beside this method in report.md."""
    pose_free: Annotated[QueryImagesConfig, tyro.conf.arg(name="")] = field(default_factory=QueryImagesConfig)
    """Pose-free query images instead of the split (flat: ``--queries``, ``--camera``, ``--query-*``)."""
    fresh: bool = False
    """Start over in ``--output-dir`` instead of resuming the finished queries of ``progress.jsonl``."""

    def main(self) -> dict:
        token = dataset_override.set(self.data)
        try:
            check_output_dir(self.output_dir)
            pipeline = pipeline_from_run(
                self.load_config, self.pipeline, self.options(), self.pose_prior, self.split, self.pose_free, self.specs
            )
            return localize_and_report(
                pipeline,
                self.output_dir,
                self.split,
                self.max_queries,
                self.baseline_metrics,
                query_images=self.pose_free,
                settings=run_settings(self),
                fresh=self.fresh,
            )
        finally:
            dataset_override.reset(token)


def localize_command(specs: List[LocalizerSpec]) -> type:
    """The ``ns-localize`` command for ``specs``: :class:`LocalizeBase` plus one options field per
    spec with options (e.g. ``crossfire: CrossFireLocalizerConfig`` -> ``--crossfire.render-scale``)."""
    return with_localizer_options(LocalizeBase, "Localize", specs)


def with_localizer_options(base: type, name: str, specs: List[LocalizerSpec]) -> type:
    """``base`` (a :class:`LocalizerOptions` command dataclass) plus one options field per
    spec with options, named as in ``ns-localize`` (``--crossfire.render-scale``)."""
    fields = [
        (
            option_field_name(spec),
            Annotated[spec.options, tyro.conf.arg(help=spec.help or None)],
            field(default_factory=spec.options),
        )
        for spec in specs
        if spec.options is not None
    ]
    namespace = {"__doc__": base.__doc__, "__module__": base.__module__, "specs": specs}
    return make_dataclass(name, fields, bases=(base,), namespace=namespace)


Localize = localize_command(discover_specs())
"""``ns-localize`` with every localizer registered under ``nerfloc.localizers``."""


def entrypoint() -> None:
    run_cli(Localize)


if __name__ == "__main__":
    entrypoint()
