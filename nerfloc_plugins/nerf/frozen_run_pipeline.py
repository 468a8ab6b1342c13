"""Nerfstudio pipeline for models trained against a frozen, referenced run (``--data RUN/config.yml``).

Used by NeRFMatch (matcher on a frozen NeRF) and PoseMap (pose branch on a frozen NeRF, APRNet
on a frozen NeRF-P).  The datamanager yields ready batches (``next_train(step)``,
``next_eval(step)``, ``eval_batches()``); the model maps a batch to outputs, a loss dict and a
metrics dict.  Nothing of the frozen run is trained or saved in the checkpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

import numpy as np
import torch
from nerfstudio.pipelines.base_pipeline import Pipeline
from torch import Tensor, nn

from nerfloc_plugins.data.errors import DatasetFormatError


class FrozenRunDataManager(ABC):
    """Base of the datamanagers of frozen-run pipelines: ``train_frames`` / ``test_frames`` for
    Nerfstudio's trainer, ``eval_batches()`` (to implement) and ``next_eval`` cycling them."""

    config: Any
    train_frames: List[Any]
    test_frames: List[Any]

    @property
    def train_dataset(self) -> List[Any]:
        return self.train_frames

    @property
    def eval_dataset(self) -> List[Any]:
        return self.test_frames

    def get_datapath(self) -> Path:
        return Path(self.config.data)

    @abstractmethod
    def eval_batches(self) -> Iterator[Dict[str, Tensor]]:
        """The eval set as batches (the same every call)."""

    def next_eval(self, step: int) -> Dict[str, Tensor]:
        batches = list(self.eval_batches())
        return batches[step % len(batches)]


class FrozenFieldPipeline(Pipeline):
    """Trainer-facing wrapper: batches from the datamanager, losses and metrics from the model."""

    param_group: str = "model"
    """Optimizer group of the trainable parameters (the method's ``optimizers`` key)."""

    def __init__(
        self,
        config: Any,
        device: str | torch.device,
        test_mode: str = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Any = None,
    ) -> None:
        nn.Module.__init__(self)
        if world_size > 1:  # no DDP wrapper here: each device would train its own unsynchronised copy
            raise DatasetFormatError(
                f"{type(self).__name__} trains on one device: pass --machine.num-devices 1 (it renders a frozen "
                "run for its batches; multi-device training of these methods is not implemented)"
            )
        self.config = config
        self.test_mode = test_mode
        self.world_size = world_size
        self.datamanager = config.datamanager.setup(device=device)
        self._model = self.build_model().to(device)

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return torch.device(self.datamanager.device)

    def get_param_groups(self) -> Dict[str, List[nn.Parameter]]:
        return {self.param_group: [p for p in self._model.parameters() if p.requires_grad]}

    def get_training_callbacks(self, training_callback_attributes) -> list:
        return []

    def _step(self, batch: Dict[str, Tensor]):
        outputs = self._model(batch)
        loss = self._model.get_loss_dict(outputs, batch)
        metrics = self._model.get_metrics_dict(outputs, batch)
        return outputs, loss, metrics

    def get_train_loss_dict(self, step: int):
        return self._step(self.datamanager.next_train(step))

    def get_eval_loss_dict(self, step: int):
        self.eval()
        with torch.no_grad():
            result = self._step(self.datamanager.next_eval(step))
        self.train()
        return result

    def eval_images(self) -> Dict[str, Tensor]:
        """Images for the eval logs (none by default)."""
        return {}

    def get_eval_image_metrics_and_images(self, step: int):
        _, _, metrics = self.get_eval_loss_dict(step)
        self.eval()
        with torch.no_grad():
            images = self.eval_images()
        self.train()
        metrics = {k: float(v) for k, v in metrics.items()}
        return {**metrics, "num_rays": self.datamanager.get_train_rays_per_batch()}, images

    def get_average_eval_image_metrics(self, step: Optional[int] = None, output_path=None, get_std: bool = False):
        totals: Dict[str, List[float]] = {}
        self.eval()
        with torch.no_grad():
            for batch in self.datamanager.eval_batches():
                _, _, metrics = self._step(batch)
                for k, v in metrics.items():
                    totals.setdefault(k, []).append(float(v))
        self.train()
        return {k: float(np.mean(v)) for k, v in totals.items()}

    def load_pipeline(self, loaded_state: Mapping[str, Any], step: int) -> None:
        state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in loaded_state.items()}
        self.load_state_dict(state)
