"""COLMAP sparse-model dataparser (``colmap-data``): a user's own SfM reconstruction as the map.

Layout (hloc's and COLMAP's)::

    DATA/images/...                 the images (``--images``, names as in the model)
    DATA/sparse/0/cameras.{bin,txt} images.{bin,txt} points3D.{bin,txt}   (``--model``)
    DATA/depth/<image stem>.png     optional sensor depth (``--depth-dir``, uint16, ``--depth-unit`` m)

The model is read with pycolmap (binary or text).  Poses: the model's frame is the map's frame,
scaled to metres by ``--scale`` (metres per model unit; 1 keeps model units), OpenCV camera axes
as COLMAP's.  Cameras of any model COLMAP writes are undistorted to PINHOLE once with COLMAP's own
undistorter (``pycolmap.undistort_images``) into ``DATA/nerfloc_cache/undistorted/`` and read from
there; PINHOLE / SIMPLE_PINHOLE models are used as they are.

Queries (the ``test`` split), the first that applies: the names in ``--queries-list`` (one per
line, as in the model), the images whose name starts with ``--query-prefix`` (a separate folder
registered in the same model, e.g. ``query/``), or every ``--test-every``-th image by name.

Depth: sensor depth when ``--depth-dir`` is given; otherwise **SfM depth** from the model itself,
hloc's way of lifting without a depth sensor: each image's observed 3D points (its 2D-3D tracks)
give the z-depth at their keypoints, drawn ``--sfm-depth-radius`` px wide into a sparse depth map
(float metres, ``.npy``, 0 = none) cached under ``DATA/nerfloc_cache/sfm_depth/``.  The classical
baseline lifts the keypoints that fall on them; Nerfacto-based methods use them as sparse depth
supervision (or render their own depth).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import List, Optional, Set, Tuple, Type

import cv2
import numpy as np

from nerfloc_plugins.data.frames import DatasetFormatError, Intrinsics, PosedFrame, format_error, image_size
from nerfloc_plugins.data.posed_frames_dataparser import PosedFramesDataParser, PosedFramesDataParserConfig, Split
from nerfloc_plugins.data.text_files import read_lines
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.utils.atomic import atomic_path

PINHOLE_MODELS = {"PINHOLE", "SIMPLE_PINHOLE"}
ZERO_DISTORTION_IS_PINHOLE = {"SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV"}
"""Models that project as a pinhole when every distortion parameter is 0 (a camera fixed to known
intrinsics keeps its model); fisheye models do not (equidistant at k = 0)."""


def is_pinhole(camera) -> bool:
    """Whether a COLMAP camera is a pinhole camera: a pinhole model, or a radial / OpenCV model whose
    distortion parameters are all zero."""
    if camera.model_name in PINHOLE_MODELS:
        return True
    return camera.model_name in ZERO_DISTORTION_IS_PINHOLE and all(
        camera.params[i] == 0.0 for i in camera.extra_params_idxs()
    )
MODEL_FILES = ("cameras", "images", "points3D")
CACHE = "nerfloc_cache"


@dataclass
class ColmapDataParserConfig(PosedFramesDataParserConfig):
    """A COLMAP sparse model plus its images (see module docstring)."""

    _target: Type = field(default_factory=lambda: ColmapDataParser)
    model: Path = Path("sparse/0")
    """Folder of the sparse model (cameras, images, points3D; .bin or .txt), relative to ``data``."""
    images: Path = Path("images")
    """Folder the model's image names are relative to, relative to ``data``."""
    scale: float = 1.0
    """Metres per model unit (COLMAP models have no metric scale of their own)."""
    queries_list: Optional[Path] = None
    """File of query image names (one per line, as in the model), relative to ``data``."""
    query_prefix: Optional[str] = None
    """Images whose name starts with this are the queries (e.g. ``query/``)."""
    test_every: int = 8
    """Without a list or prefix: every n-th image (sorted by name) is a query (0: none)."""
    depth_dir: Optional[Path] = None
    """Sensor depth maps ``<image stem>.png``, relative to ``data`` (default: SfM depth from the model)."""
    depth_unit: float = 1e-3
    """Metres per stored sensor-depth unit."""
    sfm_depth_radius: int = 1
    """Half-size in pixels of the square drawn at each observed 3D point of the SfM depth maps."""


def model_fingerprint(model_dir: Path) -> str:
    """Changes whenever a model file changes (size or modification time)."""
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(model_dir.iterdir()) if p.is_file()]
    return hashlib.sha1(repr(stats).encode()).hexdigest()[:16]


def read_reconstruction(model_dir: Path):
    """The pycolmap reconstruction in ``model_dir``; one-line errors for a missing or bad model."""
    import pycolmap

    if not model_dir.is_dir():
        raise format_error(model_dir, "COLMAP model folder not found (expected cameras, images, points3D .bin/.txt)")
    for kind in MODEL_FILES:
        if not any((model_dir / f"{kind}{ext}").is_file() for ext in (".bin", ".txt")):
            raise format_error(model_dir, f"no {kind}.bin or {kind}.txt (expected a COLMAP sparse model)")
    try:
        return pycolmap.Reconstruction(str(model_dir))
    except Exception as err:  # pycolmap raises plain exceptions for unreadable models
        raise format_error(model_dir, f"cannot read the COLMAP model ({str(err).splitlines()[0][:200]})") from None


def select_queries(
    names: List[str], data: Path, queries_list: Optional[Path], query_prefix: Optional[str], test_every: int
) -> Set[str]:
    """The query (``test`` split) names among ``names``: those of ``queries_list`` (relative to
    ``data``), else those starting with ``query_prefix``, else every ``test_every``-th by name."""
    if queries_list is not None:
        path = data / queries_list
        listed = [line.split()[0] for line in read_lines(path, "query list (image names)") if line.strip()]
        unknown = sorted(set(listed) - set(names))
        if unknown:
            raise format_error(path, f"query {unknown[0]!r} is not an image of the dataset")
        return set(listed)
    if query_prefix is not None:
        chosen = {n for n in names if n.startswith(query_prefix)}
        if not chosen:
            raise DatasetFormatError(f"{data}: no image name starts with {query_prefix!r}")
        return chosen
    return set(sorted(names)[::test_every]) if test_every > 0 else set()


def sfm_depth_map(
    rec, image, intr: Intrinsics, scale: float, radius: int, distortion: Tuple[float, ...] = ()
) -> np.ndarray:
    """``(H, W)`` sparse z-depth (metres: model units x ``scale``) of the 3D points ``image``
    observes, a ``2 radius + 1`` px square at each keypoint (the nearest point where squares
    overlap), 0 elsewhere; ``distortion``: OpenCV coefficients of the image the keypoints were
    found in, to draw them where the undistorted pinhole image (same K) shows them."""
    uv, xyz = [], []
    for point in image.points2D:
        if point.has_point3D():
            uv.append(point.xy)
            xyz.append(rec.points3D[point.point3D_id].xyz)
    depth = np.zeros((intr.height, intr.width), np.float32)
    if not xyz:
        return depth
    pose = image.cam_from_world()
    z = (np.asarray(xyz) @ pose.rotation.matrix().T + pose.translation)[:, 2] * scale
    uv = np.asarray(uv, dtype=np.float64)
    if distortion:
        K = intr.matrix()
        uv = cv2.undistortPoints(uv[:, None], K, np.asarray(distortion), P=K)[:, 0]
    cols, rows = np.floor(uv).astype(int).T
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            y, x = rows + dy, cols + dx
            ok = (z > 0) & (x >= 0) & (y >= 0) & (x < intr.width) & (y < intr.height)
            current = depth[y[ok], x[ok]]
            depth[y[ok], x[ok]] = np.where((current == 0) | (z[ok] < current), z[ok], current)
    return depth


def cached_sfm_depth(
    rec, image, intr: Intrinsics, scale: float, radius: int, cache_dir: Path, distortion: Tuple[float, ...] = ()
) -> Path:
    """:func:`sfm_depth_map` of ``image`` as ``.npy`` under ``cache_dir`` (written once)."""
    target = cache_dir / (image.name.replace("/", "__") + ".npy")
    if not target.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, sfm_depth_map(rec, image, intr, scale, radius, distortion))
    return target


def pinhole_intrinsics(camera, where: Path) -> Intrinsics:
    if not is_pinhole(camera):
        raise format_error(
            where, f"camera {camera.camera_id} is {camera.model_name}, expected PINHOLE after undistortion"
        )
    return Intrinsics(
        camera.focal_length_x,
        camera.focal_length_y,
        camera.principal_point_x,
        camera.principal_point_y,
        camera.width,
        camera.height,
    )


@dataclass
class ColmapDataParser(PosedFramesDataParser):
    """Reads a COLMAP sparse model (see module docstring)."""

    config: ColmapDataParserConfig
    layout: str = "colmap-data"
    checks_depth_unit: bool = False

    @cached_property
    def model_and_images(self):
        """The pinhole reconstruction and its image folder (undistorted into the cache when needed);
        read once per parser (every split asks for it)."""
        cfg = self.config
        model_dir, image_dir = cfg.data / cfg.model, cfg.data / cfg.images
        rec = read_reconstruction(model_dir)
        if all(is_pinhole(cam) for cam in rec.cameras.values()):
            return rec, image_dir
        import pycolmap

        out = cfg.data / CACHE / "undistorted" / model_fingerprint(model_dir)
        if not (out / "sparse" / "images.bin").is_file():
            missing = [im.name for im in rec.images.values() if not (image_dir / im.name).is_file()]
            if missing:
                raise format_error(image_dir, f"image {missing[0]!r} of the model not found")
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)  # a killed earlier run
            tmp.mkdir(parents=True)
            try:
                pycolmap.undistort_images(str(tmp), str(model_dir), str(image_dir))
            except Exception as err:
                raise format_error(model_dir, f"COLMAP could not undistort the images ({str(err)[:200]})") from None
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
        return read_reconstruction(out / "sparse"), out / "images"

    def read_frames(self, split: Split) -> List[PosedFrame]:
        cfg = self.config
        if cfg.scale <= 0:
            raise ValueError(f"colmap-data --scale {cfg.scale}: expected metres per model unit > 0")
        rec, image_dir = self.model_and_images
        images = sorted(rec.images.values(), key=lambda im: im.name)
        queries = select_queries(
            [im.name for im in images], cfg.data, cfg.queries_list, cfg.query_prefix, cfg.test_every
        )
        self.depth_unit_scale_factor = cfg.depth_unit if cfg.depth_dir is not None else 1.0
        key = f"{model_fingerprint(cfg.data / cfg.model)}-r{cfg.sfm_depth_radius}-s{cfg.scale:g}"
        sfm_dir = cfg.data / CACHE / "sfm_depth" / key
        frames = []
        for image in images:
            if (image.name in queries) != (split == "test"):
                continue
            path = image_dir / image.name
            if not path.is_file():
                raise format_error(image_dir, f"image {image.name!r} of the model not found")
            intr = pinhole_intrinsics(rec.cameras[image.camera_id], cfg.data / cfg.model)
            if image_size(path) != (intr.width, intr.height):
                raise format_error(
                    path, f"image is {image_size(path)}, its COLMAP camera is {intr.width}x{intr.height}"
                )
            w2c = np.eye(4)
            w2c[:3] = image.cam_from_world().matrix()
            c2w = invert_rigid(w2c)
            c2w[:3, 3] *= cfg.scale
            if cfg.depth_dir is not None:
                depth = cfg.data / cfg.depth_dir / (Path(image.name).stem + ".png")
                if not depth.is_file():
                    raise format_error(depth, f"depth map of {image.name!r} not found (--depth-dir)")
            else:
                depth = cached_sfm_depth(rec, image, intr, cfg.scale, cfg.sfm_depth_radius, sfm_dir)
            frames.append(PosedFrame(image.name, path, c2w, intr, depth))
        return frames
