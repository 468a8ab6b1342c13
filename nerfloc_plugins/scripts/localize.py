"""``ns-localize``: localize a dataset's queries in a trained nerfloc map (shared pipeline).

The localizer is chosen from the trained run by the localizer specs registered under the
entry-point group ``nerfloc.localizers`` (:mod:`nerfloc_plugins.localize.specs`); each spec
with options adds its ``--<name>.*`` group to this command.  Nothing here names a method.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any, ClassVar, List, Literal, Optional

import tyro
from typing_extensions import Annotated

from nerfloc_plugins.data.query_images import QueryImagesConfig
from nerfloc_plugins.localize.localizer import Localizer, PosePrior
from nerfloc_plugins.localize.pipeline import PipelineConfig
from nerfloc_plugins.localize.query_journal import check_output_dir
from nerfloc_plugins.localize.run import check_dataset_first, localize_and_report, run_dataparser
from nerfloc_plugins.localize.specs import LocalizerSpec, build_localizer, discover_specs, spec_for_run
from nerfloc_plugins.nerf.run_files import dataset_override, read_run_file
from nerfloc_plugins.utils.cli import run_cli, run_settings
from nerfloc_plugins.utils.option_ranges import COUNT


def option_field_name(spec: LocalizerSpec) -> str:
    """Attribute of :class:`Localize` holding ``spec``'s options (``--rendered-features.*`` ->
    ``rendered_features``)."""
    return spec.name.replace("-", "_")


@dataclass
class LocalizeBase:
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

    specs: ClassVar[List[LocalizerSpec]] = []
    """The localizers this command knows (set by :func:`localize_command`)."""

    def options_of(self, spec: LocalizerSpec) -> Any:
        return getattr(self, option_field_name(spec), None)

    def localizer(self) -> Localizer:
        return build_localizer(self.load_config, self.specs, self.options_of)

    def fallback(self) -> Optional[Localizer]:
        """The cascade's fallback localizer (``--cascade.fallback``), with this command's options."""
        run = self.pipeline.cascade.fallback
        return None if run is None else build_localizer(run, self.specs, self.options_of)

    def prior(self, localizer: Localizer) -> Optional[PosePrior]:
        if self.pose_prior is None:
            return None
        spec = spec_for_run(read_run_file(self.pose_prior), self.specs, self.pose_prior)
        if spec.pose_prior is None:
            raise ValueError(f"--pose-prior {self.pose_prior}: a {spec.name} run gives no pose prior")
        return spec.pose_prior(self.pose_prior, localizer.device)

    def main(self) -> dict:
        token = dataset_override.set(self.data)
        try:
            return self.localize()
        finally:
            dataset_override.reset(token)

    def localize(self) -> dict:
        check_output_dir(self.output_dir)
        if self.load_config.name == "config.yml":
            check_dataset_first(run_dataparser(self.load_config), self.split, self.pose_free)
        localizer = self.localizer()
        prior = self.prior(localizer)
        if prior is not None:
            localizer.name = f"{localizer.name} + {prior.name} prior"
        return localize_and_report(
            localizer,
            self.pipeline,
            self.output_dir,
            self.split,
            self.max_queries,
            self.baseline_metrics,
            pose_prior=prior,
            fallbacks=[f for f in [self.fallback()] if f is not None],
            query_images=self.pose_free,
            settings=run_settings(self),
            fresh=self.fresh,
        )


def localize_command(specs: List[LocalizerSpec]) -> type:
    """The ``ns-localize`` command for ``specs``: :class:`LocalizeBase` plus one options field per
    spec with options (e.g. ``crossfire: CrossFireLocalizerConfig`` -> ``--crossfire.render-scale``)."""
    fields = [
        (
            option_field_name(spec),
            Annotated[spec.options, tyro.conf.arg(help=spec.help or None)],
            field(default_factory=spec.options),
        )
        for spec in specs
        if spec.options is not None
    ]
    namespace = {"__doc__": LocalizeBase.__doc__, "__module__": __name__, "specs": specs}
    return make_dataclass("Localize", fields, bases=(LocalizeBase,), namespace=namespace)


Localize = localize_command(discover_specs())
"""``ns-localize`` with every localizer registered under ``nerfloc.localizers``."""


def entrypoint() -> None:
    run_cli(Localize)


if __name__ == "__main__":
    entrypoint()
