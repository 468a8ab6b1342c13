"""Image loading with one convention: ``(H, W, 3)`` float32 RGB in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def load_rgb(path: str | Path) -> np.ndarray:
    """``(H, W, 3)`` float32 RGB in [0, 1] (any mode PIL reads is converted to RGB)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
