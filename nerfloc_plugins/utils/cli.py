"""Shared CLI wiring: parse a tyro config, run it, turn input errors into one-line messages."""

from __future__ import annotations

from typing import Any, Type

import tyro

from nerfloc_plugins.data.frames import DatasetFormatError

# Errors caused by the user's input (files, options, missing optional packages).
INPUT_ERRORS = (DatasetFormatError, FileNotFoundError, ValueError, ImportError)


def run_cli(config_type: Type[Any]) -> None:
    """``tyro.cli(config_type).main()``; input errors exit with ``error: <message>``."""
    config = tyro.cli(config_type)
    try:
        config.main()
    except INPUT_ERRORS as err:
        raise SystemExit(f"error: {err}") from None
