"""How localization renders a view: the run's sampling schedule, fewer samples, or depth-guided.

Rendering at a pose is the hot path of every field localizer (map views at a prior,
render-and-match rounds, synthesised retrieval views).  Three ways to sample the rays:

* the run's own schedule (proposal networks, then the field: ``samples = None``);
* fewer samples per ray (``samples = (proposal levels ..., NeRF)``, e.g. ``32 16 16``);
* **depth-guided coarse-to-fine** (``band_samples`` set): a coarse pass with ``samples`` at
  ``1 / coarse_factor`` of the resolution in each axis gives a z-depth map; every full-resolution
  ray is then sampled only inside a depth *band* around the surface the coarse pass saw, with the
  proposal networks and the field at ``band_samples`` samples per ray.  The band of a fine pixel
  spans the minimum and maximum coarse depth of the 3x3 coarse neighbourhood it falls in (so an
  occlusion edge's band holds both surfaces), widened by ``margin`` x depth + ``margin_m`` on
  each side.  The proposal networks still place the samples inside the band: sampling the
  field uniformly there is not reliable, because Nerfacto's field is only trained where the
  proposals put samples and holds stray density in free space in front of surfaces (measured on
  a CPU-trained office map while choosing this design: 16 uniform field samples in a +-3 % band
  lost 2-4 dB of PSNR; the proposals in a +-15 % band lose < 0.5 dB at 8 8 8 samples, the
  latter reproduced by benchmarks/render_speed.py).

Units: coarse depths are dataset-frame z-depths in metres; :meth:`FieldRenderer.render` converts
bands to Nerfstudio ray distances (unit-length rays, the run's dataparser scale).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from nerfloc_plugins.data.frames import Intrinsics


@dataclass
class RenderSampling:
    """Samples per ray of localization renderings (see module docstring)."""

    samples: Optional[Tuple[int, ...]] = None
    """Proposal samples per level then NeRF samples of a one-pass render (or of the coarse pass
    when ``band_samples`` is set), e.g. ``32 16 16``; None: the run's own schedule."""
    band_samples: Optional[Tuple[int, ...]] = None
    """Depth-guided coarse-to-fine: samples per ray (proposal levels, NeRF) of the full-resolution
    pass inside each pixel's depth band, e.g. ``8 8 8``; None: one pass."""
    coarse_factor: int = 4
    """The coarse pass renders 1/coarse_factor of the width and of the height."""
    margin: float = 0.15
    """Band half-width beyond the coarse neighbourhood's depth range, as a fraction of depth."""
    margin_m: float = 0.1
    """Band half-width added, in metres."""

    @property
    def depth_guided(self) -> bool:
        return self.band_samples is not None

    def validate(self) -> None:
        if self.coarse_factor < 1 or self.margin < 0 or self.margin_m < 0:
            raise ValueError(f"render sampling: coarse_factor >= 1 and margins >= 0 expected, got {self}")
        for name in ("samples", "band_samples"):
            value = getattr(self, name)
            if value is not None and (not value or min(value) < 1):
                raise ValueError(f"render sampling: {name} must be positive numbers, got {value}")

    def describe(self) -> str:
        """Short text for tables and logs, e.g. ``run`` or ``band 8,8,8 (coarse 1/4: run)``."""
        one_pass = "run" if self.samples is None else ",".join(map(str, self.samples))
        if not self.depth_guided:
            return one_pass
        return f"band {','.join(map(str, self.band_samples))} (coarse 1/{self.coarse_factor}: {one_pass})"


def coarse_intrinsics(intrinsics: Intrinsics, coarse_factor: int) -> Intrinsics:
    """The camera of the coarse pass (sides rounded up, at least one pixel)."""
    width = max(1, -(-intrinsics.width // coarse_factor))
    height = max(1, -(-intrinsics.height // coarse_factor))
    return intrinsics.scaled_to(width, height)


def depth_bands(
    coarse_depth: np.ndarray, size: Tuple[int, int], sampling: RenderSampling
) -> Tuple[np.ndarray, np.ndarray]:
    """Per fine pixel ``(near, far)`` z-depth bands ``(H, W)`` in metres from the coarse z-depth map
    ``(h, w)``; ``size`` = fine ``(width, height)``.  Non-finite or non-positive coarse depths are
    ignored; a neighbourhood with none gets the depth range of the whole coarse view."""
    depth = torch.from_numpy(np.asarray(coarse_depth, dtype=np.float64))[None, None]
    valid = torch.isfinite(depth) & (depth > 0)
    if not valid.any():
        raise ValueError("depth-guided rendering: the coarse pass rendered no depth (nothing of the map in view?)")
    lowest, highest = depth[valid].min(), depth[valid].max()
    near = -F.max_pool2d(torch.where(valid, -depth, torch.full_like(depth, -np.inf)), 3, stride=1, padding=1)
    far = F.max_pool2d(torch.where(valid, depth, torch.full_like(depth, -np.inf)), 3, stride=1, padding=1)
    near = torch.where(torch.isfinite(near), near, lowest)
    far = torch.where(torch.isfinite(far), far, highest)
    width, height = size
    near = F.interpolate(near, size=(height, width), mode="nearest")[0, 0].numpy()
    far = F.interpolate(far, size=(height, width), mode="nearest")[0, 0].numpy()
    return near * (1.0 - sampling.margin) - sampling.margin_m, far * (1.0 + sampling.margin) + sampling.margin_m
