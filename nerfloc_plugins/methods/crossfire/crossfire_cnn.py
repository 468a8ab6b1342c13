"""CrossFire's query feature extractor (Sec. 3.2): a small fully-convolutional network.

8 convolution layers with ReLU activations and two 2x2 max-poolings map an RGB image
``(B, 3, H, W)`` in [0, 1] to a dense descriptor map ``(B, D, H/4, W/4)`` (floor).  The paper
states only this much (its exact widths are in a supplement we do not have): the widths here
are 64-64 | 128-128 | 128-128-128 | D with 3x3 kernels and a final 1x1 projection.
Descriptors are compared with cosine similarity, so they are not normalised here.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class CrossFireCNN(nn.Module):
    """8-layer CNN, output stride 4."""

    def __init__(self, descriptor_dim: int = 32, widths: Sequence[int] = (64, 128, 128)) -> None:
        super().__init__()
        w1, w2, w3 = widths

        def conv(cin: int, cout: int) -> list:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]

        self.net = nn.Sequential(
            *conv(3, w1), *conv(w1, w1), nn.MaxPool2d(2),
            *conv(w1, w2), *conv(w2, w2), nn.MaxPool2d(2),
            *conv(w2, w3), *conv(w3, w3), *conv(w3, w3),
            nn.Conv2d(w3, descriptor_dim, 1),
        )  # fmt: skip
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    @property
    def num_conv_layers(self) -> int:
        return sum(isinstance(m, nn.Conv2d) for m in self.net)

    def forward(self, image: Tensor) -> Tensor:
        """``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, D, H // 4, W // 4)`` descriptors."""
        return self.net((image - self.mean) / self.std)

    @staticmethod
    def feature_pixel_centres(height: int, width: int) -> Tensor:
        """Image-pixel coordinates ``(H/4, W/4, 2)`` (u, v; centres at +0.5) of each output cell.

        Each output cell covers a 4x4 block of input pixels; its centre is at ``4 i + 2``.
        """
        v, u = torch.meshgrid(
            torch.arange(height // 4) * 4.0 + 2.0, torch.arange(width // 4) * 4.0 + 2.0, indexing="ij"
        )
        return torch.stack([u, v], dim=-1)
