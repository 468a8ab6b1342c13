"""SuperPoint (DeTone et al. 2018) keypoints and descriptors from a weights file you pass.

The weights are not on PyPI and are never downloaded: give the path of the Magic Leap release
``superpoint_v1.pth`` (the file LightGlue and hloc also use; parameter names ``conv1a`` ...
``convDb``).  Architecture: shared VGG-style encoder (8 3x3 convolutions, 3 max-pools, stride 8),
detector head (65 channels: 8x8 cells + "no keypoint"), descriptor head (256-d, L2-normalised).
Post-processing as in the reference: softmax, cell-to-pixel reshuffle, NMS (radius 4),
threshold 0.005, 4-pixel border removal, top-k; descriptors bilinearly sampled from the coarse map.
Keypoints use nerfloc's convention (pixel centres at +0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from nerfloc_plugins.features.local_features import LocalFeatures, to_uint8_gray


@dataclass
class SuperPointConfig:
    weights: Optional[Path] = None
    """``superpoint_v1.pth`` (Magic Leap release); required for ``--features superpoint``."""
    max_keypoints: int = 2048
    detection_threshold: float = 0.005
    nms_radius: int = 4
    border: int = 4


class SuperPointNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        c1, c2, c3, c4, c5, d1 = 64, 64, 128, 128, 256, 256

        def conv(i: int, o: int, k: int = 3) -> nn.Conv2d:
            return nn.Conv2d(i, o, k, stride=1, padding=k // 2)

        self.conv1a, self.conv1b = conv(1, c1), conv(c1, c1)
        self.conv2a, self.conv2b = conv(c1, c2), conv(c2, c2)
        self.conv3a, self.conv3b = conv(c2, c3), conv(c3, c3)
        self.conv4a, self.conv4b = conv(c3, c4), conv(c4, c4)
        self.convPa, self.convPb = conv(c4, c5), conv(c5, 65, 1)
        self.convDa, self.convDb = conv(c4, c5), conv(c5, d1, 1)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, 1, H, W)`` grey in [0, 1] -> scores ``(B, H, W)`` and descriptors ``(B, 256, H/8, W/8)``."""
        relu, pool = torch.relu, nn.functional.max_pool2d
        x = relu(self.conv1b(relu(self.conv1a(image))))
        x = relu(self.conv2b(relu(self.conv2a(pool(x, 2)))))
        x = relu(self.conv3b(relu(self.conv3a(pool(x, 2)))))
        x = relu(self.conv4b(relu(self.conv4a(pool(x, 2)))))
        semi = self.convPb(relu(self.convPa(x)))
        scores = torch.softmax(semi, dim=1)[:, :-1]
        b, _, h, w = scores.shape
        scores = scores.permute(0, 2, 3, 1).reshape(b, h, w, 8, 8).permute(0, 1, 3, 2, 4).reshape(b, h * 8, w * 8)
        desc = nn.functional.normalize(self.convDb(relu(self.convDa(x))), dim=1)
        return scores, desc


def load_superpoint(path: Path) -> SuperPointNet:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: SuperPoint weights file not found (superpoint_v1.pth)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    net = SuperPointNet()
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ValueError(f"{path}: not SuperPoint weights (expected conv1a ... convDb): {first}") from None
    return net.eval()


def simple_nms(scores: Tensor, radius: int) -> Tensor:
    """Keep local maxima of ``(H, W)`` scores within ``radius`` (zero elsewhere)."""
    pooled = nn.functional.max_pool2d(scores[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0]
    return torch.where(scores == pooled, scores, torch.zeros_like(scores))


class SuperPointExtractor:
    def __init__(self, config: SuperPointConfig, device: str | torch.device = "cpu") -> None:
        if config.weights is None:
            raise ValueError(
                "--features superpoint needs --superpoint.weights FILE (superpoint_v1.pth; not downloaded)"
            )
        self.config = config
        self.device = torch.device(device)
        self.net = load_superpoint(config.weights).to(self.device)

    def __call__(self, image: np.ndarray) -> LocalFeatures:
        return self.extract_with_map(image)[0]

    @torch.no_grad()
    def extract_with_map(self, image: np.ndarray) -> tuple[LocalFeatures, Tensor]:
        """Keypoints + descriptors, and the dense descriptor map ``(256, H/8, W/8)`` covering the
        image cropped to a multiple of 8 pixels."""
        grey = to_uint8_gray(image).astype(np.float32) / 255.0
        h, w = grey.shape
        hc, wc = h - h % 8, w - w % 8
        tensor = torch.from_numpy(np.ascontiguousarray(grey[:hc, :wc]))[None, None].to(self.device)
        scores, desc = self.net(tensor)
        s = simple_nms(scores[0], self.config.nms_radius)
        b = self.config.border
        s[:b], s[-b:], s[:, :b], s[:, -b:] = 0, 0, 0, 0
        rows, cols = torch.nonzero(s > self.config.detection_threshold, as_tuple=True)
        values = s[rows, cols]
        order = torch.argsort(values, descending=True)[: self.config.max_keypoints]
        rows, cols, values = rows[order], cols[order], values[order]
        uv = torch.stack([cols, rows], dim=1).float() + 0.5
        grid = (uv / torch.tensor([wc, hc], device=self.device)) * 2 - 1  # align_corners=False
        sampled = nn.functional.grid_sample(desc, grid[None, None], mode="bilinear", align_corners=False)
        d = nn.functional.normalize(sampled[0, :, 0].T, dim=-1)
        features = LocalFeatures(uv.double().cpu().numpy(), d.float().cpu().numpy(), values.cpu().numpy())
        return features, desc[0]
