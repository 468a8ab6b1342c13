"""Nerfstudio ``transforms.json`` dataparser (``transforms-data``): what ``ns-process-data`` writes.

Read fields (Nerfstudio's own names, see ``nerfstudio/data/dataparsers/nerfstudio_dataparser.py``):
``fl_x fl_y cx cy w h`` (top level or per frame), ``camera_model`` (``OPENCV``, ``PINHOLE``,
``SIMPLE_PINHOLE``, ``SIMPLE_RADIAL``, ``RADIAL``; fisheye and equirectangular captures are
refused in one line) with ``k1 k2 k3 p1 p2``, ``frames[].file_path``,
``frames[].transform_matrix`` (camera-to-world, OpenGL axes), optional
``frames[].depth_file_path`` (uint16 depth, ``--depth-unit`` metres per unit), optional
``train_filenames`` / ``test_filenames`` and ``applied_transform``.

Frame: ``ns-process-data`` rotates COLMAP's world into its own (``applied_transform``, 3x4);
nerfloc undoes it, so the dataset frame is the **capture's** (the COLMAP model's) frame, scaled to
metres by ``--scale``, OpenCV camera axes, and ``poses.txt`` lines up with the user's COLMAP or
hloc results.  Distorted images are undistorted to the pinhole camera with the same K (OpenCV)
into ``DATA/nerfloc_cache/undistorted_images/``.

Queries: ``test_filenames`` when present, else ``--queries-list`` / ``--query-prefix`` /
every ``--test-every``-th frame (as ``colmap-data``).  Depth: ``depth_file_path``; without it,
SfM depth from the COLMAP model ``ns-process-data`` leaves in ``DATA/colmap/sparse/0``
(``--colmap-model``), matched by image file name; without either, no depth (NeRF methods render
their own; the classical baseline says in one line that it needs depth).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import List, Optional, Tuple, Type

import cv2
import numpy as np
from PIL import Image

from nerfloc_plugins.data.colmap_model import (
    CACHE,
    cached_sfm_depth,
    model_fingerprint,
    read_reconstruction,
    select_queries,
)
from nerfloc_plugins.data.frames import DatasetFormatError, Intrinsics, PosedFrame, format_error, image_size
from nerfloc_plugins.data.posed_frames_dataparser import PosedFramesDataParser, PosedFramesDataParserConfig, Split
from nerfloc_plugins.data.text_files import read_text
from nerfloc_plugins.geometry.poses import flip_opencv_opengl
from nerfloc_plugins.utils.atomic import save_png_atomically

SUPPORTED_MODELS = {"OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"}
CAMERA_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


@dataclass
class TransformsDataParserConfig(PosedFramesDataParserConfig):
    """An ``ns-process-data`` folder (``transforms.json`` + images; see module docstring)."""

    _target: Type = field(default_factory=lambda: TransformsDataParser)
    transforms: Path = Path("transforms.json")
    """The transforms file, relative to ``data``."""
    scale: float = 1.0
    """Metres per capture unit (COLMAP captures have no metric scale of their own)."""
    queries_list: Optional[Path] = None
    """File of query image paths (as in ``file_path``), relative to ``data``."""
    query_prefix: Optional[str] = None
    """Frames whose ``file_path`` starts with this are the queries."""
    test_every: int = 8
    """Without ``test_filenames``, a list or a prefix: every n-th frame (by file name) is a query."""
    depth_unit: float = 1e-3
    """Metres per stored unit of ``depth_file_path`` maps (Nerfstudio's convention: millimetres)."""
    colmap_model: Path = Path("colmap/sparse/0")
    """COLMAP model for SfM depth when frames have no ``depth_file_path`` (relative to ``data``)."""
    sfm_depth_radius: int = 1


def read_transforms(path: Path) -> dict:
    try:
        meta = json.loads(read_text(path, "transforms.json (ns-process-data's output)"))
    except DatasetFormatError:
        raise
    except (ValueError, RecursionError) as err:
        raise format_error(path, f"not valid JSON ({str(err)[:200]})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise format_error(path, "expected an object with a non-empty 'frames' list")
    for index, frame in enumerate(meta["frames"]):
        if not isinstance(frame, dict):
            raise format_error(path, f"frame {index}: expected an object, got {type(frame).__name__}")
        for key in ("file_path", "depth_file_path"):
            if key in frame and not isinstance(frame[key], str):
                raise format_error(path, f"frame {index}: {key!r} must be a path string")
    names = meta.get("test_filenames", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise format_error(path, "'test_filenames' must be a list of image paths")
    return meta


def frame_camera(meta: dict, frame: dict, path: Path, index: int) -> Tuple[Intrinsics, Tuple[float, ...]]:
    """Pinhole intrinsics and OpenCV distortion (k1 k2 p1 p2 k3) of one frame (its own keys
    override the top level's)."""
    merged = {**meta, **frame}
    missing = [k for k in CAMERA_KEYS if k not in merged]
    if missing:
        raise format_error(
            path, f"frame {index} ({frame.get('file_path')}): no {missing[0]!r} (expected {' '.join(CAMERA_KEYS)})"
        )
    model = merged.get("camera_model", "OPENCV")
    if not isinstance(model, str) or model not in SUPPORTED_MODELS:
        raise format_error(
            path, f"camera_model {model!r}: nerfloc localizes pinhole images ({', '.join(sorted(SUPPORTED_MODELS))})"
        )
    try:
        intr = Intrinsics(*(float(merged[k]) for k in CAMERA_KEYS[:4]), int(merged["w"]), int(merged["h"]))
        distortion = tuple(float(merged.get(k, 0.0)) for k in ("k1", "k2", "p1", "p2", "k3"))
    except (TypeError, ValueError, OverflowError):
        raise format_error(path, f"frame {index}: camera values must be numbers") from None
    values = [intr.fx, intr.fy, intr.cx, intr.cy, *distortion]
    if not np.all(np.isfinite(values)) or min(intr.fx, intr.fy) <= 0 or min(intr.width, intr.height) <= 0:
        raise format_error(path, f"frame {index}: expected positive focal lengths and size, finite camera values")
    return intr, distortion if any(distortion) else ()


def capture_from_transforms(meta: dict) -> np.ndarray:
    """4x4 map from the transforms file's world to the capture's (inverse ``applied_transform``)."""
    applied = np.eye(4)
    if "applied_transform" in meta:
        try:
            applied[:3] = np.asarray(meta["applied_transform"], dtype=np.float64)[:3]
            inverse = np.linalg.inv(applied)
        except (TypeError, ValueError, np.linalg.LinAlgError):
            inverse = None
        if inverse is None or not np.isfinite(inverse).all():
            raise DatasetFormatError("'applied_transform': expected an invertible 3x4 matrix of finite numbers")
        return inverse
    return np.linalg.inv(applied)


@dataclass
class TransformsDataParser(PosedFramesDataParser):
    """Reads ``transforms.json`` (see module docstring)."""

    config: TransformsDataParserConfig
    layout: str = "transforms-data"
    checks_depth_unit: bool = False

    def read_frames(self, split: Split) -> List[PosedFrame]:
        cfg = self.config
        if cfg.scale <= 0:
            raise ValueError(f"transforms-data --scale {cfg.scale}: expected metres per capture unit > 0")
        path = cfg.data / cfg.transforms
        meta = read_transforms(path)
        try:
            to_capture = capture_from_transforms(meta)
        except DatasetFormatError as err:
            raise format_error(path, str(err)) from None
        names = [Path(f["file_path"]).as_posix() if f.get("file_path") else "" for f in meta["frames"]]
        if "test_filenames" in meta:
            queries = {str(Path(n)) for n in meta["test_filenames"]}
            queries = {n for n in names if str(Path(n)) in queries}
        else:
            queries = select_queries(names, cfg.data, cfg.queries_list, cfg.query_prefix, cfg.test_every)
        has_depth = ["depth_file_path" in f for f in meta["frames"]]
        if any(has_depth) and not all(has_depth):
            raise format_error(path, "depth_file_path is given for some frames only (expected all or none)")
        sfm = self.sfm_model if not any(has_depth) else None
        self.depth_unit_scale_factor = cfg.depth_unit if any(has_depth) else 1.0
        frames = []
        for index, (frame, name) in enumerate(zip(meta["frames"], names)):
            if (name in queries) != (split == "test"):
                continue
            image = cfg.data / name
            if not name or not image.is_file():
                raise format_error(path, f"frame {index}: image {name!r} not found")
            intr, distortion = frame_camera(meta, frame, path, index)
            if image_size(image) != (intr.width, intr.height):
                raise format_error(
                    image, f"image is {image_size(image)}, transforms.json says {intr.width}x{intr.height}"
                )
            try:
                c2w_gl = np.asarray(frame["transform_matrix"], dtype=np.float64)
            except (KeyError, TypeError, ValueError):
                raise format_error(path, f"frame {index}: expected a 4x4 'transform_matrix'") from None
            if c2w_gl.shape != (4, 4) or not np.isfinite(c2w_gl).all():
                raise format_error(path, f"frame {index}: expected a finite 4x4 'transform_matrix'")
            c2w = to_capture @ flip_opencv_opengl(c2w_gl)
            c2w[:3, 3] *= cfg.scale
            if distortion:
                image = self.undistorted(image, name, intr, distortion)
            depth = cfg.data / frame["depth_file_path"] if any(has_depth) else None
            if sfm is not None:
                depth = self.sfm_depth(sfm, frame, name, intr, distortion)
            frames.append(PosedFrame(name, image, c2w, intr, depth))
        return frames

    @cached_property
    def sfm_model(self):
        """``(reconstruction, images by name, cache folder)`` of ``--colmap-model``, or None; read
        once per parser (every split asks for it)."""
        cfg = self.config
        model_dir = cfg.data / cfg.colmap_model
        if not model_dir.is_dir():
            return None
        rec = read_reconstruction(model_dir)
        by_name = {im.name: im for im in rec.images.values()}
        key = f"{model_fingerprint(model_dir)}-r{cfg.sfm_depth_radius}-s{cfg.scale:g}"
        return rec, by_name, cfg.data / CACHE / "sfm_depth" / key

    def sfm_depth(self, sfm, frame: dict, name: str, intr: Intrinsics, distortion: Tuple[float, ...]) -> Optional[Path]:
        """SfM depth of a frame: its COLMAP image is ``colmap_im_id`` (what ns-process-data writes),
        else the one named like the frame's path inside the image folder."""
        rec, by_name, cache = sfm
        image_id = frame.get("colmap_im_id")
        image = rec.images[image_id] if isinstance(image_id, int) and rec.exists_image(image_id) else None
        if image is None:
            relative = Path(name).relative_to(Path(name).parts[0]).as_posix() if len(Path(name).parts) > 1 else name
            image = by_name.get(relative)
        if image is None:
            raise DatasetFormatError(
                f"{self.config.data / self.config.colmap_model}: image {name!r} of transforms.json is not in the "
                "COLMAP model (SfM depth); pass --colmap-model or give depth_file_path"
            )
        camera = rec.cameras[image.camera_id]
        if (camera.width, camera.height) != (intr.width, intr.height):
            return None  # a model of other-sized images: no SfM depth for this frame
        cfg = self.config
        return cached_sfm_depth(rec, image, intr, cfg.scale, cfg.sfm_depth_radius, cache, distortion)

    def undistorted(self, image: Path, name: str, intr: Intrinsics, distortion: Tuple[float, ...]) -> Path:
        target = self.config.data / CACHE / "undistorted_images" / (name.rsplit(".", 1)[0] + ".png")
        if not target.is_file() or target.stat().st_mtime < image.stat().st_mtime:
            with Image.open(image) as img:
                rgb = np.asarray(img.convert("RGB"))
            K = intr.matrix()
            rgb = cv2.undistort(rgb, K, np.asarray(distortion), None, K)
            save_png_atomically(rgb, target)
        return target
