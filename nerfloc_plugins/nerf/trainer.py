"""Trainer whose checkpoints load with ``torch.load(weights_only=True)``.

Nerfstudio's trainer stores learning rates computed by its schedulers as NumPy scalars,
which ``torch.load`` refuses by default since torch 2.6.  :class:`NerflocTrainer` converts
every NumPy value to plain Python/tensor data before saving, so ``ns-eval``, ``ns-render``,
``ns-viewer`` and nerfloc's tools load its checkpoints with the safe default.  Checkpoints
are written atomically (temporary file outside the checkpoint folder, then rename).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Type

import numpy as np
import torch
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.decorators import check_main_thread

from nerfloc_plugins.data.errors import DatasetFormatError
from nerfloc_plugins.nerf.run_files import checkpoints_in, enable_tf32


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
    """Nerfstudio trainer with weights-only-safe checkpoints that a killed save cannot break, one-line
    dataset errors, and a Ctrl-C that saves the step reached and exits with status 130.

    * A checkpoint is written to ``.step-N.ckpt.tmp`` in the run folder, **outside**
      ``nerfstudio_models/`` (whose every file Nerfstudio's loaders parse as ``step-N.ckpt``), then
      renamed into it; a temporary file left by a killed save is removed when training starts.
    * ``--load-dir`` resumes from the newest complete ``step-N.ckpt`` whatever else the folder holds.
    * A :class:`~nerfloc_plugins.data.errors.DatasetFormatError` raised while the pipeline is set
      up (the dataset check, a parser) or when training starts (frames built lazily) ends the
      command with its one line (``NERFLOC_TRACEBACK=1`` keeps the traceback)."""

    config: NerflocTrainerConfig

    def setup(self, test_mode: str = "val") -> None:
        for stale in list(self.base_dir.glob(".step-*.ckpt.tmp")) + list(self.checkpoint_dir.glob(".step-*.tmp.ckpt")):
            stale.unlink()
        if self.config.load_dir is not None and self.config.load_step is None:
            self.config.load_step = newest_checkpoint_step(Path(self.config.load_dir))
        enable_tf32()
        try:
            super().setup(test_mode=test_mode)
        except DatasetFormatError as err:
            if os.environ.get("NERFLOC_TRACEBACK"):
                raise
            raise SystemExit(f"error: {err}") from None

    def train(self) -> None:
        try:
            super().train()
        except DatasetFormatError as err:  # raised by datamanagers that build their frames lazily
            if os.environ.get("NERFLOC_TRACEBACK"):
                raise
            raise SystemExit(f"error: {err}") from None
        except KeyboardInterrupt:
            if self.step > self._start_step:
                self.save_checkpoint(self.step)
                where = f"checkpoint of step {self.step} saved in {self.checkpoint_dir}; resume with --load-dir"
            else:
                where = "no step finished, nothing saved"
            print(f"interrupted: {where}", file=sys.stderr)
            raise SystemExit(130) from None

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
        tmp = self.checkpoint_dir.parent / f".{ckpt_path.name}.tmp"
        try:
            torch.save(to_weights_only_safe(state), tmp)
            os.replace(tmp, ckpt_path)
        finally:
            if tmp.exists():
                tmp.unlink()
        if self.config.save_only_latest_checkpoint:
            for old in self.checkpoint_dir.glob("step-*.ckpt"):
                if old != ckpt_path:
                    old.unlink()


def newest_checkpoint_step(folder: Path) -> int:
    """The step of the newest ``step-N.ckpt`` in ``folder`` (``--load-dir``), one line if none."""
    if not folder.is_dir():
        raise SystemExit(f"error: --load-dir {folder}: folder not found")
    found = checkpoints_in(folder)
    if not found:
        raise SystemExit(f"error: --load-dir {folder}: no step-N.ckpt checkpoint in it")
    return found[-1][0]
