"""The project's error type for bad input files, and its one-line message format."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


class DatasetFormatError(ValueError):
    """A dataset, run or result file is missing or malformed; the message names the file (and line)."""


def format_error(path: Path, problem: str, line: Optional[int] = None) -> DatasetFormatError:
    """Build a one-line error naming ``path`` (and ``line``, 1-based) and what was expected."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return DatasetFormatError(f"{where}: {problem}")
