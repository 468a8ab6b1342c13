"""Run the shared pipeline for a localizer and write every result file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
from rich.console import Console

from nerfloc_plugins.data.query_images import QueryImagesConfig, load_query_frames
from nerfloc_plugins.localize.interface.localizer import Localizer, LocalizerKind, PosePrior
from nerfloc_plugins.localize.outputs.metrics import build_metrics, has_ground_truth
from nerfloc_plugins.localize.outputs.per_query_csv import read_query_errors
from nerfloc_plugins.localize.outputs.query_journal import QueryJournal, check_output_dir
from nerfloc_plugins.localize.outputs.report import write_report
from nerfloc_plugins.localize.outputs.tables import subset_table, summary_table
from nerfloc_plugins.localize.pipeline import LocalizationPipeline
from nerfloc_plugins.localize.pipeline_config import PipelineConfig
from nerfloc_plugins.nerf.run_files import read_run_config

CONSOLE = Console()


def read_metrics(path: Optional[Path]) -> Optional[dict]:
    """A previous run's ``metrics.json`` (e.g. the baseline's) for side-by-side tables."""
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {path}: cannot read metrics JSON ({err})") from err


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
    return f" + verified by {read_run_config(config.verify.map).method_name} map"


def localize_and_report(
    pipeline: LocalizationPipeline,
    output_dir: Path,
    split: str = "test",
    max_queries: Optional[int] = None,
    baseline_metrics: Optional[Path] = None,
    extra: Optional[dict] = None,
    query_images: Optional[QueryImagesConfig] = None,
    settings: Optional[str] = None,
    fresh: bool = False,
) -> dict:
    """The ``main`` of a localization command: run ``pipeline`` on the queries of ``split`` (or the
    pose-free images of ``query_images.queries``) and write poses, metrics, per-query CSV, report
    and plots.  With ``settings`` (the command's options), finished queries are journaled in
    ``OUTPUT/progress.jsonl`` and a rerun with the same settings resumes (``fresh``: start over);
    Ctrl-C stops with one line and exit status 130, keeping them."""
    check_output_dir(output_dir)
    localizer, config = pipeline.localizer, pipeline.config
    baseline = read_metrics(baseline_metrics)
    if query_images is not None and query_images.queries is not None:
        queries = load_query_frames(query_images, localizer.map_camera())[:max_queries]
        CONSOLE.print(f"{len(queries)} query images from {query_images.queries} (no ground truth)")
    else:
        queries = pipeline.query_frames(split, max_queries)
    journal = None
    if settings is not None:
        journal = QueryJournal(output_dir, settings, fresh)
        if journal.records:
            CONSOLE.print(f"resuming: {len(journal.records)} finished queries kept from {journal.path}")
    try:
        results = pipeline.localize_all(queries, journal)
    except KeyboardInterrupt:
        kept = f"{len(journal.records)} finished queries kept in {journal.path}; " if journal else ""
        print(f"interrupted: {kept}rerun the same command to resume", file=sys.stderr)
        raise SystemExit(130) from None
    name = " -> ".join(
        [localizer.name + prior_label(localizer, config, pipeline.pose_prior)]
        + [f.name + prior_label(f, config, None) for f in pipeline.fallbacks]
    ) + verification_label(config)
    metrics, errors = build_metrics(results, name, localizer.scene, pipeline.map_bytes(), pipeline.index_seconds, extra)
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
