"""D2S run files: ``d2s_run.yml`` (written by ``ns-nerfloc-train-d2s``, read by ``ns-localize``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from nerfloc_plugins.features.feature_matcher import FeatureName
from nerfloc_plugins.nerf.run_files import read_run_file
from nerfloc_plugins.utils.atomic import write_text_atomically


@dataclass
class D2SRun:
    """What ``ns-localize`` needs to use a trained D2S regressor (saved as ``d2s_run.yml``)."""

    nerf_config: Path
    """config.yml of the nerfloc-nerfacto run the keypoint views came from (its dataset)."""
    checkpoint: Path
    """D2S weights, relative to this file's folder."""
    features: FeatureName = "aliked"
    max_keypoints: int = 2048
    superpoint_weights: Optional[Path] = None
    """``features: superpoint``: the weights file used for synthesis and training."""
    synthetic: bool = True
    """Whether synthetic (NeRF-rendered) views were used in training."""


def save_run(run: D2SRun, path: Path) -> None:
    """Write ``d2s_run.yml`` (atomically)."""
    write_text_atomically(yaml.dump(run), path)


def load_run(path: Path) -> D2SRun:
    run = read_run_file(path)
    if not isinstance(run, D2SRun):
        raise ValueError(f"{path}: not a D2S run file (expected d2s_run.yml from ns-nerfloc-train-d2s)")
    return run
