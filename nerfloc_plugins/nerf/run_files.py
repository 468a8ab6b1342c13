"""Reading trained runs: the one parser of run files (``config.yml`` of ``ns-train``, and other
methods' run files such as D2S's ``d2s_run.yml``) and checkpoint loading without a pipeline.

Run files are YAML dumps naming Python classes by module path; runs trained before nerfloc's
current layout name old paths, which :mod:`nerfloc_plugins.legacy_modules` keeps importable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from nerfstudio.engine.trainer import TrainerConfig


def read_run_file(path: Path) -> Any:
    """The object in a run file (no checkpoint is read)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found (expected ns-train's config.yml)")
    try:
        return yaml.load(path.read_text(), Loader=yaml.Loader)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not a readable run file ({str(err).splitlines()[0]})") from None


def read_run_config(load_config: Path) -> TrainerConfig:
    """The object in a run's ``config.yml`` (no checkpoint is read)."""
    config = read_run_file(load_config)
    if not isinstance(config, TrainerConfig):
        raise ValueError(f"{load_config}: not an ns-train config.yml")
    return config


def load_trained_state(load_config: Path) -> tuple[TrainerConfig, dict]:
    """A run's ``config.yml`` object and the pipeline state dict of its latest checkpoint
    (loaded weights-only, on the CPU), without setting the pipeline up."""
    load_config = Path(load_config)
    config = read_run_config(load_config)
    ckpt_dir = load_config.parent / config.relative_model_dir
    checkpoints = sorted(ckpt_dir.glob("step-*.ckpt"))
    if not checkpoints:
        raise FileNotFoundError(f"{load_config}: no checkpoint in {ckpt_dir} (did training save one?)")
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)
    return config, state["pipeline"]
