"""Durable per-query record of a localization run, so a killed or interrupted run resumes.

``OUTPUT/progress.jsonl``: a header line with the run's settings, then one JSON line per finished
query (its pose, counts, stage, timings, priors), appended, flushed and fsync'ed as each query
finishes.  A rerun into the same folder with the same settings keeps the finished queries and runs
only the others (``--fresh`` starts over); other settings are refused in one line, so results of two
configurations never mix.  A line cut short by a kill is ignored (that query runs again).

Poses are world-to-camera 4x4 matrices in the dataset's metric frame, as in ``poses.txt``.
What a resumed query no longer has is what only the report's match figures use (keypoints,
matches, the map view); its numbers are all kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.localize.stages.query_result import QueryResult
from nerfloc_plugins.localize.stages.verification import Verification
from nerfloc_plugins.utils.atomic import atomic_path

JOURNAL = "progress.jsonl"


def check_output_dir(output_dir: Path) -> None:
    """One-line error, before any work, when ``output_dir`` cannot hold a run's files."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output-dir {output_dir}: is a file, expected a folder for the results")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"--output-dir {output_dir}: cannot write there ({err.strerror})") from None


def _matrix(value) -> Optional[list]:
    return None if value is None else np.asarray(value, dtype=np.float64).tolist()


def _array(value) -> Optional[np.ndarray]:
    return None if value is None else np.asarray(value, dtype=np.float64)


def result_record(result: QueryResult) -> dict:
    return {
        "name": result.frame.name,
        "w2c": _matrix(result.w2c),
        "retrieved": list(result.retrieved),
        "num_matches": int(result.num_matches),
        "num_inliers": int(result.num_inliers),
        "iterations": int(result.iterations),
        "timings": {k: float(v) for k, v in result.timings.items()},
        "render_match_iterations": int(result.render_match_iterations),
        "stage": result.stage,
        "retrieved_c2w": [_matrix(c) for c in result.retrieved_c2w],
        "reprojection_px": result.reprojection_px,
        "prior_c2w": _matrix(result.prior_c2w),
        "verification": None if result.verification is None else result.verification.record(),
    }


def result_from_record(record: dict, frame: PosedFrame) -> QueryResult:
    return QueryResult(
        frame=frame,
        w2c=_array(record["w2c"]),
        retrieved=record["retrieved"],
        num_matches=record["num_matches"],
        num_inliers=record["num_inliers"],
        iterations=record["iterations"],
        timings=record["timings"],
        render_match_iterations=record["render_match_iterations"],
        stage=record["stage"],
        retrieved_c2w=[_array(c) for c in record["retrieved_c2w"]],
        reprojection_px=record["reprojection_px"],
        prior_c2w=_array(record["prior_c2w"]),
        verification=Verification.from_record(record["verification"]) if record.get("verification") else None,
    )


class QueryJournal:
    """``OUTPUT/progress.jsonl`` (see module docstring)."""

    def __init__(self, output_dir: Path, settings: str, fresh: bool = False) -> None:
        self.path = Path(output_dir) / JOURNAL
        self.settings = settings
        self.records: Dict[str, dict] = {}
        if self.path.is_file() and not fresh:
            self._read()
        else:
            self._start()

    def _start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w") as handle:
            handle.write(json.dumps({"settings": self.settings}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _read(self) -> None:
        lines = self.path.read_text().splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
        except ValueError:
            header = {}
        if header.get("settings") != self.settings:
            raise ValueError(
                f"{self.path}: this folder holds results of other settings; use another --output-dir, "
                "or --fresh to start over here"
            )
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # cut short by a kill: the query runs again
            self.records[record["name"]] = record
        # rewrite without a line a kill cut short, so appending starts on a fresh line
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in [header, *self.records.values()]))

    def finished(self, frame: PosedFrame) -> Optional[QueryResult]:
        """The recorded result of ``frame`` when an earlier run finished it."""
        record = self.records.get(frame.name)
        return None if record is None else result_from_record(record, frame)

    def record(self, result: QueryResult) -> None:
        """Append ``result`` durably (flushed and fsync'ed before the next query starts)."""
        record = result_record(result)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.records[record["name"]] = record
