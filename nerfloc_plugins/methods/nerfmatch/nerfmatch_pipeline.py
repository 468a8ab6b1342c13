"""Nerfstudio pipeline that trains a NeRFMatch matcher against frozen NeRF(s).

``ns-train nerfmatch-mini --data RUN/config.yml`` (a trained ``nerfloc-nerfacto`` run; more
runs with ``--pipeline.datamanager.extra-scenes`` for one multi-scene matcher).  Nothing of the
NeRF is trained or saved in the matcher's checkpoint; the run is referenced by path.

Training pairs (query image, reference pose) come from a pairs file (``query reference`` names
per line, hloc/PixLoc format) or from covisibility of the training frames
(``data/covisibility.py``).  Points and features at every training pose are rendered once and
cached (``nerf/point_features.py``); ground truth is their projection into the query
(``nerfmatch_losses.coarse_fine_labels``).  Eval pairs: each test query with the training frame
that overlaps it most.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Type

import numpy as np
import torch
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn

from nerfloc_plugins.data.covisibility import CovisibilityIndex
from nerfloc_plugins.data.errors import format_error
from nerfloc_plugins.data.frames import PosedFrame
from nerfloc_plugins.data.hloc_files import read_pairs
from nerfloc_plugins.data.images import load_rgb
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.methods.nerfmatch.nerfmatch_losses import coarse_fine_labels
from nerfloc_plugins.methods.nerfmatch.nerfmatch_model import NerfMatchModelConfig
from nerfloc_plugins.nerf.field_renderer import FieldRenderer
from nerfloc_plugins.nerf.frozen_run_pipeline import FrozenFieldPipeline, FrozenRunDataManager
from nerfloc_plugins.nerf.nerfloc_nerfacto_field import FeatureLayer
from nerfloc_plugins.nerf.point_features import NerfPointFeatures, RenderedPoints


@dataclass
class NerfMatchDataManagerConfig(InstantiateConfig):
    _target: Type = field(default_factory=lambda: NerfMatchDataManager)
    data: Optional[Path] = None
    """config.yml of the frozen NeRF run (``ns-train ... --data``)."""
    extra_scenes: Tuple[Path, ...] = ()
    """More frozen runs: one matcher for several scenes (multi-scene training)."""
    feature_layers: Tuple[FeatureLayer, ...] = ("hash",)
    """NeRF layers rendered as point descriptors (concatenated in this order).  The paper's best
    was a middle layer of Mip-NeRF's 8-layer encoder; Nerfacto's encoder is the hash grid plus a
    small MLP, and its hash-grid output trains far better than the MLP's hidden layer here
    (docs/nerfmatch.md)."""
    pairs_file: Optional[Path] = None
    """``query reference`` training pairs (first scene); default: covisibility of the training poses."""
    pairs_per_frame: int = 20
    min_overlap: float = 0.3
    batch_size: int = 16
    num_eval_pairs: int = 16
    seed: int = 0


class MatchScene:
    """One frozen run: frames, images, and rendered points/features at training poses (cached)."""

    def __init__(self, nerf_config: Path, layers: Tuple[str, ...]) -> None:
        self.renderer = FieldRenderer(nerf_config)
        self.points = NerfPointFeatures(self.renderer, layers)
        self.train_frames = self.renderer.frames("train")
        self.test_frames = self.renderer.frames("test")
        self._rendered: Dict[int, RenderedPoints] = {}
        self._images: Dict[str, Tensor] = {}
        self._covisibility: Optional[CovisibilityIndex] = None

    def covisibility(self) -> CovisibilityIndex:
        """The training frames and their rendered points, for covisible pairs (built once)."""
        if self._covisibility is None:
            points = [self.valid_points(i) for i in range(len(self.train_frames))]
            self._covisibility = CovisibilityIndex(self.train_frames, points)
        return self._covisibility

    def rendered(self, index: int) -> RenderedPoints:
        if index not in self._rendered:
            frame = self.train_frames[index]
            self._rendered[index] = self.points.render(frame.c2w, frame.intrinsics)
        return self._rendered[index]

    def valid_points(self, index: int) -> np.ndarray:
        """Dataset-frame points of training frame ``index``'s valid rendered rays."""
        rendered = self.rendered(index)
        return rendered.points[rendered.valid.cpu().numpy()]

    def image(self, frame: PosedFrame) -> Tensor:
        """``(3, H, W)`` cropped at the bottom/right to sides divisible by 8."""
        if frame.name not in self._images:
            crop = frame.intrinsics.cropped_to_multiple_of(8)
            rgb = torch.from_numpy(load_rgb(frame.image_path)[: crop.height, : crop.width]).permute(2, 0, 1).float()
            self._images[frame.name] = rgb.to(self.renderer.device)
        return self._images[frame.name]


@dataclass
class MatchPair:
    scene: int
    query: PosedFrame
    reference: int
    """Index into the scene's training frames."""


class NerfMatchDataManager(FrozenRunDataManager):
    """Batches of (query image, rendered reference points) with ground-truth associations; its
    "frames" for Nerfstudio's trainer are the training and eval pairs."""

    def __init__(self, config: NerfMatchDataManagerConfig, device: str | torch.device = "cpu", **_: Any) -> None:
        if config.data is None:
            raise ValueError("nerfmatch: --data must be the config.yml of a trained nerfloc-nerfacto run")
        self.config = config
        self.device = device
        self.data = config.data
        self.scenes = [MatchScene(Path(p), tuple(config.feature_layers)) for p in (config.data, *config.extra_scenes)]
        dims = {s.points.feature_dim for s in self.scenes}
        sizes = {(f.intrinsics.width, f.intrinsics.height) for s in self.scenes for f in s.train_frames}
        if len(dims) != 1:
            raise ValueError(f"nerfmatch: the scenes' NeRF feature widths differ ({sorted(dims)}); use one config")
        if len(sizes) != 1:
            raise ValueError(f"nerfmatch: all training images must share one size, found {sorted(sizes)}")
        self.feature_dim = dims.pop()
        self.image_size = sizes.pop()
        self._rng = random.Random(config.seed)
        self._train: Optional[List[MatchPair]] = None
        self._eval: Optional[List[MatchPair]] = None

    @property
    def train_frames(self) -> List[MatchPair]:
        return self.train_pairs()

    @property
    def test_frames(self) -> List[MatchPair]:
        return self.eval_pairs()

    def get_train_rays_per_batch(self) -> int:
        w, h = self.image_size
        return self.config.batch_size * (w // 8) * (h // 8)  # rendered points per batch

    # ------------------------------------------------------------------ pairs
    def train_pairs(self) -> List[MatchPair]:
        if self._train is None:
            pairs: List[MatchPair] = []
            for s, scene in enumerate(self.scenes):
                if s == 0 and self.config.pairs_file is not None:
                    pairs += self._pairs_from_file(scene)
                    continue
                for q, r, _ in scene.covisibility().pairs(self.config.pairs_per_frame, self.config.min_overlap):
                    pairs.append(MatchPair(s, scene.train_frames[q], r))
            if not pairs:
                raise format_error(self.data, "no covisible training pairs: the map renders too few opaque points at its "
                                   "training frames (train it longer) or --pipeline.datamanager.min-overlap is too high")  # fmt: skip
            self._train = pairs
        return self._train

    def _pairs_from_file(self, scene: MatchScene) -> List[MatchPair]:
        index = {f.name: i for i, f in enumerate(scene.train_frames)}
        out = []
        for query, refs in read_pairs(self.config.pairs_file).items():
            for ref in refs[: self.config.pairs_per_frame]:
                if query not in index or ref not in index:
                    missing = query if query not in index else ref
                    raise ValueError(f"{self.config.pairs_file}: {missing!r} is not a training frame of {self.data}")
                out.append(MatchPair(0, scene.train_frames[index[query]], index[ref]))
        return out

    def eval_pairs(self) -> List[MatchPair]:
        """``num_eval_pairs`` evenly spaced test frames, each with its most overlapping training frame."""
        if self._eval is None:
            frames = [(s, frame) for s, scene in enumerate(self.scenes) for frame in scene.test_frames]
            step = max(1, len(frames) // max(1, self.config.num_eval_pairs))
            chosen = frames[::step][: self.config.num_eval_pairs]
            self._eval = [
                MatchPair(s, frame, self.scenes[s].covisibility().best_reference(frame)) for s, frame in chosen
            ]
        return self._eval

    # ---------------------------------------------------------------- batches
    def collate(self, pairs: List[MatchPair]) -> Dict[str, Tensor]:
        images, feats, pts_ns, valid, cells, pixels = [], [], [], [], [], []
        for pair in pairs:
            scene = self.scenes[pair.scene]
            ref = scene.rendered(pair.reference)
            intr = pair.query.intrinsics.cropped_to_multiple_of(8)
            c, uv = coarse_fine_labels(
                ref.points,
                ref.valid.cpu().numpy(),
                intr.matrix(),
                invert_rigid(pair.query.c2w),
                intr.width,
                intr.height,
            )
            images.append(scene.image(pair.query))
            feats.append(ref.features)
            pts_ns.append(ref.points_ns)
            valid.append(ref.valid)
            cells.append(torch.from_numpy(c))
            pixels.append(torch.from_numpy(uv).float())
        dev = images[0].device
        return {
            "images": torch.stack(images),
            "features": torch.stack(feats),
            "points_ns": torch.stack(pts_ns),
            "valid": torch.stack(valid),
            "gt_cells": torch.stack(cells).to(dev),
            "gt_pixels": torch.stack(pixels).to(dev),
        }

    def next_train(self, step: int) -> Dict[str, Tensor]:
        pairs = self.train_pairs()
        return self.collate([pairs[self._rng.randrange(len(pairs))] for _ in range(self.config.batch_size)])

    def eval_batches(self) -> Iterator[Dict[str, Tensor]]:
        pairs = self.eval_pairs()
        for start in range(0, len(pairs), self.config.batch_size):
            yield self.collate(pairs[start : start + self.config.batch_size])


@dataclass
class NerfMatchPipelineConfig(InstantiateConfig):
    _target: Type = field(default_factory=lambda: NerfMatchPipeline)
    datamanager: NerfMatchDataManagerConfig = field(default_factory=NerfMatchDataManagerConfig)
    model: NerfMatchModelConfig = field(default_factory=NerfMatchModelConfig)


class NerfMatchPipeline(FrozenFieldPipeline):
    """Trainer-facing wrapper: batches from :class:`NerfMatchDataManager`, losses from the model."""

    param_group = "nerfmatch"

    def build_model(self) -> nn.Module:
        return self.config.model.setup(nerf_feature_dim=self.datamanager.feature_dim)
