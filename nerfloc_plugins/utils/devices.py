"""The compute device a command uses when none is named: CUDA when PyTorch sees a GPU, else the CPU."""

from __future__ import annotations

from typing import Optional

import torch


def resolve_device(device: Optional[str] = "auto") -> torch.device:
    """``"auto"`` / ``None`` -> ``cuda`` when available, else ``cpu``; any other name as given."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
