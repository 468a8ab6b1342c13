"""Image loading with one convention: ``(H, W, 3)`` float32 RGB in [0, 1].

Images are read at their bit depth: an 8-bit image's 255 and a 16-bit image's 65535 are both 1
(16-bit PNG / TIFF, grey or colour, as cameras and renderers write them); grey and palette images
become RGB, alpha is dropped.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from nerfloc_plugins.data.errors import format_error

SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I;16N")


def load_rgb(path: str | Path) -> np.ndarray:
    """``(H, W, 3)`` float32 RGB in [0, 1] (see the module docstring)."""
    with Image.open(path) as img:
        raw_mode = img.tile[0][3] if img.tile and isinstance(img.tile[0][3], str) else ""
        if img.mode in SIXTEEN_BIT_GREY or (img.mode == "I" and "16" in raw_mode):
            grey = np.asarray(img, dtype=np.float32) / 65535.0
            return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)
        if img.mode in ("RGB", "RGBA") and "16" in raw_mode:  # PIL would keep 8 of the 16 bits
            return sixteen_bit_colour(path)
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def sixteen_bit_colour(path: str | Path) -> np.ndarray:
    """A 16-bit colour image at full depth (OpenCV reads it; PIL has no 16-bit RGB mode)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgr is None or bgr.ndim != 3:
        raise OSError(f"{path}: cannot decode the 16-bit colour image")
    rgb = cv2.cvtColor(bgr[..., :3], cv2.COLOR_BGR2RGB)
    return rgb.astype(np.float32) / float(np.iinfo(rgb.dtype).max)


def read_rgb(path: str | Path) -> np.ndarray:
    """:func:`load_rgb`, with a one-line error naming the file when it cannot be decoded."""
    try:
        return load_rgb(path)
    except (OSError, ValueError, SyntaxError) as err:
        raise format_error(Path(path), f"cannot read image ({err})") from None
