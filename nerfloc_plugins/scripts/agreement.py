"""``ns-nerfloc-agreement``: how well a trained map's descriptors agree with the query's at the
query's true pose (:mod:`nerfloc_plugins.localize.descriptor_agreement`), apart from retrieval and
PnP: the first thing to look at when a method localizes few queries.

    ns-nerfloc-agreement --load-config RUN/config.yml --output-dir OUT [--max-queries 10] [--crossfire.render-scale 2]

Writes ``agreement.json`` (summary and per query) and ``agreement.md``; prints the summary. Takes
the same localizer options as ``ns-localize``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from rich.progress import track
from typing_extensions import Annotated

from nerfloc_plugins.localize.descriptor_agreement import AgreementConfig, query_agreement, summarise
from nerfloc_plugins.localize.interface.localizer import MapViewLocalizer
from nerfloc_plugins.localize.interface.specs import discover_specs
from nerfloc_plugins.localize.map_sources import run_localizer
from nerfloc_plugins.nerf.run_files import dataset_override
from nerfloc_plugins.scripts.localize import LocalizerOptions, with_localizer_options
from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically
from nerfloc_plugins.utils.cli import run_cli
from nerfloc_plugins.utils.option_ranges import COUNT


@dataclass
class AgreementBase(LocalizerOptions):
    """Descriptor agreement of a trained map at its queries' true poses."""

    load_config: Path
    """``config.yml`` (or run file) of a trained map whose localizer matches map views."""
    output_dir: Path = Path("outputs/agreement")
    data: Optional[Path] = None
    """The dataset folder, when it is no longer where the run was trained."""
    split: Literal["test", "train"] = "test"
    max_queries: Annotated[Optional[int], COUNT] = None
    """Queries evenly spread over the split (default: all)."""
    agreement: AgreementConfig = field(default_factory=AgreementConfig)

    def main(self) -> dict:
        token = dataset_override.set(self.data)
        try:
            localizer = run_localizer(self.load_config, self.options(), self.specs)
            if not isinstance(localizer, MapViewLocalizer):
                raise ValueError(
                    f"{self.load_config}: {localizer.name} does not match map views (no descriptors to compare)"
                )
            frames = localizer.query_frames(self.split)
            if self.max_queries is not None and self.max_queries < len(frames):
                step = len(frames) / self.max_queries
                frames = [frames[int(i * step)] for i in range(self.max_queries)]
            per_query = [query_agreement(localizer, f, self.agreement) for f in track(frames, "agreement")]
        finally:
            dataset_override.reset(token)
        result = {"load_config": str(self.load_config), "localizer": localizer.name, **summarise(per_query)}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomically(result, self.output_dir / "agreement.json")
        write_text_atomically(markdown(result, self.agreement), self.output_dir / "agreement.md")
        print(markdown(result, self.agreement))
        return result


def markdown(result: dict, config: AgreementConfig) -> str:
    s = result["summary"]
    return (
        f"# Descriptor agreement at the true pose: {result['localizer']}\n\n"
        f"`{result['load_config']}`, {s['queries']} queries, partner within {s['partner_px']:.3g} query px "
        f"({config.max_reprojection_px:g} px of the coarser image)\n\n"
        "| query keypoints with a partner (median) | top-1 | top-5 | partner rank (median) "
        "| matches per query (median) | match precision (median) |\n|---|---|---|---|---|---|\n"
        f"| {s['partners_per_query']:.0f} | {100 * s['top1']:.1f} % | {100 * s['top5']:.1f} % | {s['median_rank']:.1f} "
        f"| {s['matches_per_query']:.0f} | {100 * s['match_precision']:.1f} % |\n"
    )


Agreement = with_localizer_options(AgreementBase, "Agreement", discover_specs())


def entrypoint() -> None:
    run_cli(Agreement)


if __name__ == "__main__":
    entrypoint()
