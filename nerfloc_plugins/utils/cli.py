"""Shared CLI wiring: parse a tyro config, run it, turn input errors into one-line messages."""

from __future__ import annotations

import hashlib
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Type

import tyro

from nerfloc_plugins.utils.option_ranges import check_ranges

# Errors caused by the user's input (files, options, missing optional packages); the project's
# DatasetFormatError (data/errors.py) is a ValueError.
INPUT_ERRORS = (FileNotFoundError, ValueError, ImportError)


def run_cli(config_type: Type[Any]) -> None:
    """``tyro.cli(config_type).main()``; option ranges (:mod:`~nerfloc_plugins.utils.option_ranges`)
    are checked first; input errors exit with ``error: <message>``."""
    config = tyro.cli(config_type)
    try:
        check_ranges(config)
        config.main()
    except INPUT_ERRORS as err:
        raise SystemExit(f"error: {err}") from None


def run_settings(command: Any) -> str:
    """What identifies a localization run's results: the command's options except where they go
    (``output_dir``), how many queries (``max_queries``: a rerun with more extends the run),
    ``fresh`` and the report-only ``baseline_metrics``; plus the content digest of every input file
    an option names (a pairs file, a run's config.yml), so editing one is a change of settings."""
    command = replace(command, output_dir=Path("."), max_queries=None, fresh=False, baseline_metrics=None)
    digests = [f"{path}={file_digest(path)}" for path in sorted(set(named_files(command)))]
    return repr(command) + ("; " + ", ".join(digests) if digests else "")


def named_files(value: Any) -> Iterator[Path]:
    """Existing files named by ``Path`` fields of a (nested) dataclass."""
    if isinstance(value, Path):
        if value.is_file():
            yield value
    elif is_dataclass(value) and not isinstance(value, type):
        for item in fields(value):
            yield from named_files(getattr(value, item.name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from named_files(item)


def file_digest(path: Path, limit: int = 64 * 2**20) -> str:
    """SHA-1 of a file's first ``limit`` bytes and its size."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        digest.update(handle.read(limit))
    return f"{digest.hexdigest()[:16]}:{path.stat().st_size}"
