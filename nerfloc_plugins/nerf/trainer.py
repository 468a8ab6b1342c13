"""Trainer whose checkpoints load with ``torch.load(weights_only=True)``.

Nerfstudio's trainer stores learning rates computed by its schedulers as NumPy scalars,
which ``torch.load`` refuses by default since torch 2.6.  :class:`NerflocTrainer` converts
every NumPy value to plain Python/tensor data before saving, so ``ns-eval``, ``ns-render``,
``ns-viewer`` and nerfloc's tools load its checkpoints with the safe default.  Checkpoints
are written atomically (temporary file, then rename).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Type

import numpy as np
import torch
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.decorators import check_main_thread

from nerfloc_plugins.utils.atomic import atomic_path


def to_weights_only_safe(value: Any) -> Any:
    """Recursively replace NumPy scalars/arrays by Python scalars/tensors."""
    if isinstance(value, dict):
        return {k: to_weights_only_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_weights_only_safe(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class NerflocTrainerConfig(TrainerConfig):
    """Nerfstudio ``TrainerConfig`` using :class:`NerflocTrainer`."""

    _target: Type = field(default_factory=lambda: NerflocTrainer)

    def set_experiment_name(self) -> None:
        """As Nerfstudio's, except when ``--data`` is a trained run's ``config.yml`` (methods trained
        on a frozen field, e.g. NeRFMatch): the experiment is named after that run's experiment."""
        data = self.pipeline.datamanager.data
        if self.experiment_name is None and data is not None and Path(data).name == "config.yml":
            self.experiment_name = Path(data).parent.parent.parent.name
        super().set_experiment_name()


class NerflocTrainer(Trainer):
    """Nerfstudio trainer with weights-only-safe, atomically written checkpoints."""

    config: NerflocTrainerConfig

    @check_main_thread
    def save_checkpoint(self, step: int) -> None:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        ckpt_path: Path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline
        state = {
            "step": step,
            "pipeline": pipeline.state_dict(),
            "optimizers": {k: v.state_dict() for (k, v) in self.optimizers.optimizers.items()},
            "schedulers": {k: v.state_dict() for (k, v) in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
        }
        with atomic_path(ckpt_path) as tmp:
            torch.save(to_weights_only_safe(state), tmp)
        if self.config.save_only_latest_checkpoint:
            for old in self.checkpoint_dir.glob("*.ckpt"):
                if old != ckpt_path:
                    old.unlink()
