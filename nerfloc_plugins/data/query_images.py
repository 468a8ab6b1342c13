"""Query images given without poses: a folder, a video file, or a query list.

``--queries PATH`` (``ns-localize``, ``ns-localize-baseline``) localizes these images instead of a
dataset split:

* a **folder**: every image in it and its sub-folders (sorted; names relative to the folder);
* a **video** file (``.mp4 .mov .avi .mkv .m4v .webm``): frames sampled at ``--query-fps`` per
  second, named ``<video stem>/frame-NNNNNN.png`` (the source frame index) and kept in memory;
* a **list** file (anything else): hloc's query list with intrinsics, one ``name MODEL W H
  params...`` per line (COLMAP camera models SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL,
  OPENCV, FULL_OPENCV), or one image name per line; names are relative to ``--query-images``
  (default: the list's folder).

Intrinsics, in this order: the list's camera; ``--camera fx fy cx cy [W H]`` (for a W x H image,
rescaled to each image's size; without W H: for the images' own size); the map's camera rescaled
to the image when the aspect ratio is the same; the EXIF 35 mm-equivalent focal length with the
principal point at the centre.  A query with none gets a one-line error naming it.

Images with lens distortion are undistorted to the pinhole camera with the same K, and images
larger than ``--query-max-size`` on their longest side are downscaled (intrinsics scaled with
them); either way in memory, when the query is localized (nothing is written: the image is decoded
once, in the pipeline).  A file that cannot be read is skipped with one line naming it and recorded
as failed (``--strict-queries``: stop instead).  The frames carry no pose (``c2w`` is ``None``); names contain no whitespace (replaced by ``_``),
so ``poses.txt`` stays readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from nerfloc_plugins.data.frames import DatasetFormatError, Intrinsics, PosedFrame, format_error, image_size
from nerfloc_plugins.data.images import read_rgb
from nerfloc_plugins.data.text_files import read_lines

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".m4v", ".webm"}
# COLMAP camera model -> (parameter names); distortion in OpenCV's (k1, k2, p1, p2, k3, k4, k5, k6) order
CAMERA_MODELS: Dict[str, Tuple[str, ...]] = {
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fx", "fy", "cx", "cy"),
    "SIMPLE_RADIAL": ("f", "cx", "cy", "k1"),
    "RADIAL": ("f", "cx", "cy", "k1", "k2"),
    "OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"),
    "FULL_OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"),
}
EXIF_IFD, EXIF_FOCAL_35MM = 0x8769, 0xA405


@dataclass
class QueryImagesConfig:
    """Pose-free query images (flat on the CLIs: ``--queries``, ``--camera``, ``--query-*``)."""

    queries: Optional[Path] = None
    """Localize these instead of the dataset's split: a folder of images, a video file, or a query
    list (hloc ``name MODEL W H params...`` lines, or one image name per line). No ground truth."""
    query_images: Optional[Path] = None
    """Folder the names of a query list are relative to (default: the list's folder)."""
    camera: Optional[Tuple[float, ...]] = None
    """Pinhole intrinsics of the query images, ``fx fy cx cy`` or ``fx fy cx cy W H`` (for a W x H image)."""
    query_fps: float = 2.0
    """Frames per second sampled from a video."""
    query_max_size: int = 1024
    """Downscale query images whose longest side is larger (0: keep the full resolution)."""
    strict_queries: bool = False
    """Stop at the first query image that cannot be read instead of skipping it (it is recorded as
    failed, as hloc's pipelines go on past a bad query)."""


@dataclass(frozen=True)
class QueryCamera:
    """A query image's camera from a list: pinhole intrinsics plus OpenCV distortion coefficients."""

    intrinsics: Intrinsics
    distortion: Tuple[float, ...] = ()


def parse_camera_line(tokens: Sequence[str], path: Path, line: int) -> QueryCamera:
    """``MODEL W H params...`` of an hloc query list line -> :class:`QueryCamera`."""
    model = tokens[0]
    if model not in CAMERA_MODELS:
        raise format_error(path, f"camera model {model!r}: expected one of {', '.join(CAMERA_MODELS)}", line)
    names = CAMERA_MODELS[model]
    if len(tokens) != 3 + len(names):
        raise format_error(path, f"{model} expects W H and {len(names)} parameters ({' '.join(names)})", line)
    try:
        width, height = int(tokens[1]), int(tokens[2])
        values = dict(zip(names, map(float, tokens[3:])))
    except ValueError:
        raise format_error(path, f"{model}: width, height and parameters must be numbers", line) from None
    if width <= 0 or height <= 0 or not all(np.isfinite(v) for v in values.values()):
        raise format_error(path, f"{model}: expected a positive size and finite parameters", line)
    fx, fy = values.get("fx", values.get("f")), values.get("fy", values.get("f"))
    if fx <= 0 or fy <= 0:
        raise format_error(path, f"{model}: focal length must be positive", line)
    distortion = tuple(values.get(k, 0.0) for k in ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6") if k in names)
    if distortion and "p1" not in names:  # radial only: OpenCV wants k1 k2 p1 p2
        distortion = (values.get("k1", 0.0), values.get("k2", 0.0), 0.0, 0.0)
    intr = Intrinsics(fx, fy, values["cx"], values["cy"], width, height)
    return QueryCamera(intr, distortion if any(distortion) else ())


def read_query_list(path: Path, images: Path) -> List[Tuple[str, Path, Optional[QueryCamera]]]:
    """``(name, image path, camera or None)`` per line of an hloc query list (or a list of names)."""
    lines = read_lines(path, "query list ('name MODEL W H params...' lines)")
    entries = []
    for number, text in enumerate(lines, 1):
        tokens = text.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        camera = parse_camera_line(tokens[1:], path, number) if len(tokens) > 1 else None
        image = images / tokens[0]
        if not image.is_file():
            raise format_error(path, f"image {tokens[0]!r} not found under {images}", number)
        entries.append((tokens[0], image, camera))
    if not entries:
        raise format_error(path, "no query images listed (expected 'name MODEL W H params...' lines)")
    return entries


def exif_intrinsics(path: Path, width: int, height: int) -> Optional[Intrinsics]:
    """Pinhole intrinsics from the EXIF 35 mm-equivalent focal length (centred principal point)."""
    try:
        with Image.open(path) as img:
            focal_35mm = img.getexif().get_ifd(EXIF_IFD).get(EXIF_FOCAL_35MM)
    except (OSError, ValueError):
        return None
    if not focal_35mm:
        return None
    f = float(focal_35mm) * max(width, height) / 36.0
    return Intrinsics(f, f, width / 2, height / 2, width, height)


def intrinsics_for(
    image: Optional[Path], size: Tuple[int, int], camera: Optional[Tuple[float, ...]], map_camera: Optional[Intrinsics]
) -> Intrinsics:
    """Intrinsics of a query image of ``size`` without a list camera (module docstring's order);
    ``image``: its file (for EXIF), ``None`` for an image given as an array."""
    width, height = size
    if camera is not None:
        if len(camera) not in (4, 6):
            raise ValueError(f"--camera {' '.join(map(str, camera))}: expected fx fy cx cy [W H]")
        fx, fy, cx, cy = camera[:4]
        given = Intrinsics(fx, fy, cx, cy, int(camera[4]), int(camera[5])) if len(camera) == 6 else None
        return given.scaled_to(width, height) if given else Intrinsics(fx, fy, cx, cy, width, height)
    if map_camera is not None and abs(map_camera.width / map_camera.height - width / height) < 0.01 * width / height:
        return map_camera.scaled_to(width, height)
    exif = exif_intrinsics(image, width, height) if image is not None else None
    if exif is not None:
        return exif
    raise DatasetFormatError(
        f"{image or 'query array'}: no camera for this query ({width}x{height}, the map's camera has another aspect ratio and "
        "the image has no EXIF focal length): pass --camera fx fy cx cy [W H] or a query list with cameras"
    )


def read_image(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB (16-bit images at their bit depth, then rounded to 8 bits); one-line
    error naming the file when it cannot be read."""
    return (read_rgb(path) * 255.0 + 0.5).astype(np.uint8)


def pinhole_pixels(rgb: np.ndarray, camera: QueryCamera, size: Tuple[int, int]) -> np.ndarray:
    """``rgb`` (uint8, the camera's size) undistorted to the pinhole camera with the same K and
    resized to ``size`` (uint8)."""
    intr = camera.intrinsics
    if camera.distortion:
        rgb = cv2.undistort(rgb, intr.matrix(), np.asarray(camera.distortion), None, intr.matrix())
    if size != (intr.width, intr.height):
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb


def as_float(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB as float32 in [0, 1]."""
    return rgb.astype(np.float32) / 255.0


def pinhole_image(source: Path, camera: QueryCamera, size: Tuple[int, int]) -> np.ndarray:
    """The pinhole image of the file ``source``, float32 in [0, 1] (decoded when the query is localized)."""
    return as_float(pinhole_pixels(read_image(source), camera, size))


def pinhole_frame(
    name: str, source: Path, rgb: Optional[np.ndarray], camera: QueryCamera, max_size: int
) -> PosedFrame:
    """The frame the localizer reads: the file itself for a pinhole image of at most ``max_size``;
    otherwise undistorted and downscaled in memory when it is localized (``rgb``: the decoded
    image when already in memory, e.g. a video frame, kept as uint8 at the final size)."""
    intr = camera.intrinsics
    width, height = intr.width, intr.height
    actual = image_size(source) if rgb is None else (rgb.shape[1], rgb.shape[0])
    if actual != (width, height):
        raise format_error(source, f"image is {actual[0]}x{actual[1]}, its camera is for {width}x{height}")
    scale = max_size / max(width, height) if max_size and max(width, height) > max_size else 1.0
    if rgb is None and not camera.distortion and scale == 1.0:
        return PosedFrame(name, source, None, intr)
    size = (max(1, round(width * scale)), max(1, round(height * scale))) if scale != 1.0 else (width, height)
    out = intr.scaled_to(*size) if scale != 1.0 else intr
    if rgb is None:
        return PosedFrame(name, source, None, out, pixels=partial(pinhole_image, source, camera, size))
    frame8 = pinhole_pixels(rgb, camera, size)  # a video's frames stay uint8 until localized
    return PosedFrame(name, source, None, out, pixels=partial(as_float, frame8))


def unreadable_query(name: str, path: Path, err: DatasetFormatError, map_camera: Optional[Intrinsics]) -> PosedFrame:
    """A query image that cannot be read, recorded as failed (``--queries`` without ``--strict-queries``)."""
    print(f"skipping query {err} (recorded as failed; --strict-queries stops instead)")
    camera = map_camera if map_camera is not None else Intrinsics(1.0, 1.0, 0.5, 0.5, 1, 1)
    return PosedFrame(name, path, None, camera, problems=(str(err),))


def clean_name(name: str) -> str:
    return "_".join(name.split())


def video_frames(path: Path, fps: float) -> List[Tuple[int, np.ndarray]]:
    """``(source frame index, RGB uint8)`` sampled at ``fps`` frames per second."""
    if fps <= 0:
        raise ValueError(f"--query-fps {fps}: expected a positive rate")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise format_error(path, "cannot open the video (not a video file OpenCV can decode?)")
    rate = capture.get(cv2.CAP_PROP_FPS) or 30.0
    step = max(1, int(round(rate / fps)))
    frames, index = [], 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        if index % step == 0:
            frames.append((index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        index += 1
    capture.release()
    if not frames:
        raise format_error(path, "no frame could be decoded from the video")
    return frames


def load_query_frames(config: QueryImagesConfig, map_camera: Optional[Intrinsics]) -> List[PosedFrame]:
    """The pose-free query frames of ``config.queries`` (see module docstring)."""
    source = config.queries
    if source is None:
        raise ValueError("no --queries given")
    if not source.exists():
        raise DatasetFormatError(f"{source}: --queries not found (expected a folder of images, a video or a list)")
    if config.query_max_size < 0:
        raise ValueError(f"--query-max-size {config.query_max_size}: expected 0 (keep) or a positive size")

    def own_camera(name: str, path: Path, size: Tuple[int, int]) -> QueryCamera:
        return QueryCamera(intrinsics_for(path, size, config.camera, map_camera))

    frames: List[PosedFrame] = []
    if source.is_dir():
        images = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise DatasetFormatError(
                f"{source}: no images in the folder (expected {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        for path in images:
            name = clean_name(path.relative_to(source).as_posix())
            try:
                size = image_size(path, verify=True)
            except DatasetFormatError as err:
                if config.strict_queries:
                    raise
                frames.append(unreadable_query(name, path, err, map_camera))
                continue
            frames.append(pinhole_frame(name, path, None, own_camera(name, path, size), config.query_max_size))
    elif source.suffix.lower() in VIDEO_SUFFIXES:
        for index, rgb in video_frames(source, config.query_fps):
            name = clean_name(f"{source.stem}/frame-{index:06d}.png")
            camera = own_camera(name, source, (rgb.shape[1], rgb.shape[0]))
            frames.append(pinhole_frame(name, source, rgb, camera, config.query_max_size))
    else:
        for name, path, camera in read_query_list(source, config.query_images or source.parent):
            try:
                size = image_size(path, verify=True)
            except DatasetFormatError as err:
                if config.strict_queries:
                    raise
                frames.append(unreadable_query(clean_name(name), path, err, map_camera))
                continue
            camera = camera or own_camera(name, path, size)
            frames.append(pinhole_frame(clean_name(name), path, None, camera, config.query_max_size))
    return frames
