"""Base Nerfstudio dataparser for datasets given as lists of posed frames.

Each dataset parser only reads its own files into :class:`PosedFrame` records
(``read_frames``); this base turns them into Nerfstudio ``DataparserOutputs``:

* the normalisation (orientation, centring, scale) is computed from the **train** frames
  only, so the map frame never depends on query poses, and is applied to every split;
* the transform is kept (``dataparser_transform`` / ``dataparser_scale``, saved by
  Nerfstudio as ``dataparser_transforms.json``) so results are reported back in the
  dataset's own metric frame with :class:`~nerfloc_plugins.geometry.poses.DataparserTransform`;
* ``split`` "train" gives the mapping frames; "val" and "test" give the held-out query
  frames with their ground-truth poses.

Metadata added to the outputs: ``frame_names`` (names relative to the dataset root),
``dataset_root``, and when depth exists ``depth_filenames``, ``depth_unit_scale_factor``
and ``depth_invalid_values``.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Tuple, Type

import numpy as np
import torch
from nerfstudio.cameras import camera_utils
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.utils.rich_utils import CONSOLE

from nerfloc_plugins.data.dataset_check import BadFramePolicy, check_split
from nerfloc_plugins.data.frames import PosedFrame, format_error, load_depth_meters, select_every
from nerfloc_plugins.data.pseudo_gt import frames_with_pgt, pgt_file, read_pgt_file
from nerfloc_plugins.geometry.poses import DataparserTransform, flip_opencv_opengl
from nerfloc_plugins.geometry.projection import depth_map_points

Split = Literal["train", "test"]


@dataclass
class PosedFramesDataParserConfig(DataParserConfig):
    """Options shared by all nerfloc dataparsers."""

    _target: Type = field(default_factory=lambda: PosedFramesDataParser)
    data: Path = Path()
    """Dataset (scene) root directory."""
    scale_factor: float = 1.0
    """Extra scale applied after automatic scaling."""
    orientation_method: Literal["pca", "up", "vertical", "none"] = "up"
    """How to orient the map frame (Nerfstudio's ``auto_orient_and_center_poses``)."""
    center_method: Literal["poses", "focus", "none"] = "poses"
    """How to centre the map frame."""
    auto_scale_poses: bool = True
    """Scale the map so ``scene_bounds`` fit into [-1, 1]."""
    scene_bounds: Literal["auto", "cameras", "depth"] = "auto"
    """What must fit in [-1, 1]: the train camera centres (Nerfstudio's rule), or also the
    surfaces seen by the train depth maps (1st-99th percentile, centred on them); "auto"
    uses depth when the dataset has it."""
    scene_scale: float = 1.0
    """Half-size of the scene box in normalised units (Nerfacto contracts outside it)."""
    load_depth: bool = True
    """Expose depth maps (when the dataset has them) to models and localizers."""
    train_stride: int = 1
    """Use every n-th training frame (few-shot mapping)."""
    max_train_frames: Optional[int] = None
    """Cap the number of training frames after striding."""
    test_stride: int = 1
    """Use every n-th query frame."""
    max_test_frames: Optional[int] = None
    """Cap the number of query frames after striding."""
    bad_frames: BadFramePolicy = "error"
    """Frames failing the dataset check (unreadable or truncated image, bad pose, missing or odd
    depth map): ``error`` lists them all and stops; ``skip`` leaves them out and reports how many."""
    max_translation: float = 1e5
    """Largest camera-centre coordinate accepted, in the dataset's units (catches corrupt poses)."""
    pgt: Optional[Path] = None
    """Folder of SfM pseudo ground truth files (``<scene>_train.txt``, ``<scene>_test.txt`` of the
    ``visloc_pseudo_gt_limitations`` repository, :mod:`~nerfloc_plugins.data.pseudo_gt`): mapping
    and query frames take their poses and focal lengths (maps, errors and ``poses.txt`` are then in
    the pGT's frame); frames the pGT lacks are left out and counted."""


@dataclass
class PosedFramesDataParser(DataParser):
    """Turns ``read_frames`` into normalised Nerfstudio outputs (see module docstring)."""

    config: PosedFramesDataParserConfig
    depth_unit_scale_factor: float = 1.0
    """Metres per stored depth unit; set by subclasses."""
    depth_invalid_values: Tuple[float, ...] = (0.0,)
    """Raw depth values that mean "no reading"; set by subclasses."""
    layout: str = "dataset"
    """The parser's subcommand name (``sevenscenes-data``), for messages; set by subclasses."""
    checks_depth_unit: bool = True
    """Whether the dataset check decodes a few depth maps to check their unit (off where the depth's
    unit is the model's own, e.g. SfM depth of a COLMAP model at ``--scale``); set by subclasses."""
    skips_unknown_poses: bool = False
    """Whether non-finite poses are the layout's own "pose unknown" (skipped and reported, e.g.
    12-Scenes ``INF``) rather than a bad frame; set by subclasses."""

    @abstractmethod
    def read_frames(self, split: Split) -> list[PosedFrame]:
        """All frames of ``split`` in dataset order; raise DatasetFormatError on bad files."""

    def frames(self, split: Split) -> list[PosedFrame]:
        """Frames of ``split`` after the configured stride / cap, checked by the dataset check
        (:mod:`~nerfloc_plugins.data.dataset_check`) once per parser."""
        cache = self.__dict__.setdefault("_checked_frames", {})
        if split not in cache:
            cache[split] = self.check_frames(split, self.selected_frames(split))
        return list(cache[split])

    def selected_frames(self, split: Split) -> list[PosedFrame]:
        """Frames of ``split`` as read, after the configured stride / cap (not yet checked)."""
        if not self.config.data.is_dir():
            raise format_error(self.config.data, "dataset directory does not exist")
        frames = self.read_frames(split)
        if self.config.pgt is not None:
            frames = self.with_pseudo_gt(split, frames)
        if split == "train":
            return select_every(frames, self.config.train_stride, self.config.max_train_frames)
        return select_every(frames, self.config.test_stride, self.config.max_test_frames)

    def with_pseudo_gt(self, split: Split, frames: list[PosedFrame]) -> list[PosedFrame]:
        """``frames`` with the poses of the ``--pgt`` files (see ``pgt``)."""
        path = pgt_file(self.config.pgt, self.config.data, "train" if split == "train" else "test")
        out, missing = frames_with_pgt(frames, read_pgt_file(path))
        if not out:
            example = next(iter(read_pgt_file(path)))
            raise format_error(
                path, f"names none of the {len(frames)} {split} frames ({example!r} vs {frames[0].name!r})"
            )
        if missing:
            CONSOLE.print(
                f"[yellow]{path}: no pseudo ground truth for {missing} of {len(frames)} {split} frames (left out)"
            )
        return out

    def check_frames(self, split: Split, frames: list[PosedFrame]) -> list[PosedFrame]:
        """The usable frames of ``split`` under the ``bad_frames`` policy."""
        checked = check_split(
            frames,
            what=f"{self.layout} {self.config.data} {split}",
            policy=self.config.bad_frames,
            max_translation=self.config.max_translation,
            depth_unit_scale=self.depth_unit_scale_factor,
            depth_invalid_values=self.depth_invalid_values,
            skip_unknown_poses=self.skips_unknown_poses,
            check_depth_unit=self.checks_depth_unit,
        )
        if frames and not checked:
            raise format_error(self.config.data, f"no usable {split} frames left after the dataset check")
        return checked

    def depth_points(self, frames: list[PosedFrame], max_frames: int = 64, stride: int = 8) -> np.ndarray:
        """Dataset-frame 3D points ``(N, 3)`` seen by a subset of the frames' depth maps."""
        chosen = frames[:: max(1, len(frames) // max_frames)]
        points = []
        for frame in chosen:
            intr = frame.intrinsics
            depth = load_depth_meters(
                frame.depth_path, self.depth_unit_scale_factor, self.depth_invalid_values, (intr.width, intr.height)
            )
            points.append(depth_map_points(depth, intr.matrix(), frame.c2w, stride))
        return np.concatenate(points) if points else np.zeros((0, 3))

    def compute_transform(self, train_frames: list[PosedFrame]) -> DataparserTransform:
        """Orientation, centring and scale of the map frame, from the train frames only."""
        if not train_frames:
            raise ValueError(f"{self.config.data}: no training frames found")
        c2w_gl = torch.from_numpy(flip_opencv_opengl(np.stack([f.c2w for f in train_frames])))
        poses, transform = camera_utils.auto_orient_and_center_poses(
            c2w_gl.float(), method=self.config.orientation_method, center_method=self.config.center_method
        )
        transform = transform.double().numpy()
        centres = poses[:, :3, 3].double().numpy()
        has_depth = all(f.depth_path is not None for f in train_frames)
        use_depth = self.config.scene_bounds == "depth" or (self.config.scene_bounds == "auto" and has_depth)
        if use_depth:
            if not has_depth:
                raise ValueError(f"{self.config.data}: scene_bounds='depth' needs depth maps for every train frame")
            points = self.depth_points(train_frames) @ transform[:, :3].T + transform[:, 3]
            lo = np.minimum(np.percentile(points, 1, axis=0), centres.min(axis=0))
            hi = np.maximum(np.percentile(points, 99, axis=0), centres.max(axis=0))
            centre = (lo + hi) / 2
            transform[:, 3] -= centre
            half_extent = float(np.max(hi - lo)) / 2 * 1.05
        else:
            half_extent = float(np.max(np.abs(centres)))
        scale = 1.0
        if self.config.auto_scale_poses and half_extent > 1e-8:
            scale = 1.0 / half_extent
        return DataparserTransform(transform, scale * self.config.scale_factor)

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        train_frames = self.frames("train")
        frames = train_frames if split == "train" else self.frames("test")
        if not frames:
            raise ValueError(f"{self.config.data}: no frames in split '{split}'")
        transform = self.compute_transform(train_frames)
        c2w_ns = transform.c2w_to_nerfstudio(np.stack([f.c2w for f in frames]))

        def column(attr: str) -> torch.Tensor:
            return torch.tensor([[getattr(f.intrinsics, attr)] for f in frames], dtype=torch.float32)

        cameras = Cameras(
            camera_to_worlds=torch.from_numpy(c2w_ns).float(),
            fx=column("fx"),
            fy=column("fy"),
            cx=column("cx"),
            cy=column("cy"),
            width=column("width").int(),
            height=column("height").int(),
            camera_type=CameraType.PERSPECTIVE,
        )
        aabb_scale = self.config.scene_scale
        scene_box = SceneBox(aabb=torch.tensor([[-aabb_scale] * 3, [aabb_scale] * 3], dtype=torch.float32))
        metadata: dict = {
            "frame_names": [f.name for f in frames],
            "dataset_root": self.config.data,
            "dataparser_scale": transform.scale,
        }
        if self.config.load_depth and all(f.depth_path is not None for f in frames):
            metadata.update(
                depth_filenames=[f.depth_path for f in frames],
                depth_unit_scale_factor=self.depth_unit_scale_factor,
                depth_invalid_values=tuple(self.depth_invalid_values),
            )
        return DataparserOutputs(
            image_filenames=[f.image_path for f in frames],
            cameras=cameras,
            scene_box=scene_box,
            dataparser_transform=torch.from_numpy(transform.transform).float(),
            dataparser_scale=transform.scale,
            metadata=metadata,
        )
