"""Run the shared pipeline for a localizer and write every result file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from rich.console import Console

from nerfloc_plugins.data.query_images import QueryImagesConfig, load_query_frames
from nerfloc_plugins.localize.localizer import Localizer, LocalizerKind, PosePrior
from nerfloc_plugins.localize.pipeline import PipelineConfig, run_localization
from nerfloc_plugins.localize.query_journal import QueryJournal, check_output_dir
from nerfloc_plugins.localize.report import (
    build_metrics,
    has_ground_truth,
    read_query_errors,
    subset_table,
    summary_table,
    write_report,
)

CONSOLE = Console()


def read_metrics(path: Optional[Path]) -> Optional[dict]:
    """A previous run's ``metrics.json`` (e.g. the baseline's) for side-by-side tables."""
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {path}: cannot read metrics JSON ({err})") from err


def check_dataset_first(parser, split: str, pose_free: Optional[QueryImagesConfig]) -> None:
    """Run the dataset check of the map's frames and of the queries of ``split`` (unless the queries
    are ``--queries`` images) before any map is built, so a bad query image stops the command
    at once, not after the map; ``parser``: a nerfloc dataparser (others are left alone)."""
    if not hasattr(parser, "frames"):
        return
    parser.frames("train")
    if pose_free is None or pose_free.queries is None:
        parser.frames("test" if split == "test" else "train")


def run_dataparser(load_config: Path):
    """The nerfloc dataparser of a run's dataset (relocated), or ``None`` for runs trained on
    another run (their dataset is that run's) and for other parsers."""
    from nerfloc_plugins.nerf.run_files import read_run_config

    config = read_run_config(load_config)
    dataparser = getattr(config.pipeline.datamanager, "dataparser", None)
    if dataparser is None or Path(getattr(config.pipeline.datamanager, "data", None) or "").suffix == ".yml":
        return None
    parser = dataparser.setup()
    return parser if hasattr(parser, "frames") else None


def prior_label(localizer: Localizer, config: PipelineConfig, pose_prior: Optional[PosePrior]) -> str:
    """What a map-view localizer's priors were, for the method name in tables: ``""`` for one
    retrieved frame, ``" (top-5 of 20 verified)"``, ``" (top-3)"``."""
    if localizer.kind is not LocalizerKind.MATCHES_MAP_VIEWS or pose_prior is not None:
        return ""
    retrieval = config.retrieval
    if retrieval.verify > retrieval.top_k:
        return f" (top-{retrieval.top_k} of {retrieval.verify} verified)"
    return f" (top-{retrieval.top_k})" if retrieval.top_k > 1 else ""


def verification_label(config: PipelineConfig) -> str:
    """What verified the poses, for the method name in tables: ``" + verified by nerfloc-nerfacto-cpu
    map"``; ``""`` without render verification."""
    if not config.verify.on:
        return ""
    if config.verify.map is None:
        return " + verified by its map"
    from nerfloc_plugins.nerf.run_files import read_run_config

    return f" + verified by {read_run_config(config.verify.map).method_name} map"


def localize_and_report(
    localizer: Localizer,
    config: PipelineConfig,
    output_dir: Path,
    split: str = "test",
    max_queries: Optional[int] = None,
    baseline_metrics: Optional[Path] = None,
    extra: Optional[dict] = None,
    pose_prior: Optional[PosePrior] = None,
    fallbacks: Sequence[Localizer] = (),
    query_images: Optional[QueryImagesConfig] = None,
    settings: Optional[str] = None,
    fresh: bool = False,
) -> dict:
    """Localize the queries of ``split`` (or the pose-free images of ``query_images.queries``) and
    write poses, metrics, per-query CSV, report and plots; ``fallbacks``: the cascade's later
    stages (see :func:`run_localization`).  With ``settings`` (the command's options), finished
    queries are journaled in ``OUTPUT/progress.jsonl`` and a rerun with the same settings resumes
    (``fresh``: start over); Ctrl-C stops with one line and exit status 130, keeping them."""
    check_output_dir(output_dir)
    baseline = read_metrics(baseline_metrics)
    queries = None
    if query_images is not None and query_images.queries is not None:
        queries = load_query_frames(query_images, localizer.map_camera(), output_dir)
        CONSOLE.print(f"{len(queries)} query images from {query_images.queries} (no ground truth)")
    journal = None
    if settings is not None:
        journal = QueryJournal(output_dir, settings, fresh)
        if journal.records:
            CONSOLE.print(f"resuming: {len(journal.records)} finished queries kept from {journal.path}")
    extra_maps: dict = {}
    try:
        results, index_seconds = run_localization(
            localizer, config, split, max_queries, pose_prior, fallbacks, queries, journal, extra_maps
        )
    except KeyboardInterrupt:
        kept = f"{len(journal.records)} finished queries kept in {journal.path}; " if journal else ""
        print(f"interrupted: {kept}rerun the same command to resume", file=sys.stderr)
        raise SystemExit(130) from None
    name = " -> ".join(
        [localizer.name + prior_label(localizer, config, pose_prior)]
        + [f.name + prior_label(f, config, None) for f in fallbacks]
    ) + verification_label(config)
    map_bytes = localizer.map_size_bytes() + sum(f.map_size_bytes() for f in fallbacks if f is not localizer)
    map_bytes += sum(extra_maps.values())  # e.g. the render verifier's map
    metrics, errors = build_metrics(results, name, localizer.scene, map_bytes, index_seconds, extra)
    map_centres = np.array([f.c2w[:3, 3] for f in localizer.map_frames()])
    baseline_csv = Path(baseline_metrics).parent / "per_query.csv" if baseline_metrics else None
    baseline_errors = read_query_errors(baseline_csv) if baseline_csv is not None and baseline_csv.is_file() else None
    write_report(
        output_dir, results, metrics, errors, map_centres, baseline_metrics=baseline, baseline_errors=baseline_errors
    )
    rows = [metrics] + ([baseline] if baseline and has_ground_truth(metrics) else [])
    print(summary_table(rows))
    subsets = subset_table(rows)
    if subsets:
        print(subsets)
    CONSOLE.print(f"results written to {output_dir} (poses.txt, metrics.json, per_query.csv, report.md, plots/)")
    return metrics
