"""Python API: load a map once, localize many images (the path ``ns-localize`` and
``ns-localize-baseline`` run too).

    import nerfloc_plugins
    loc = nerfloc_plugins.load_localizer("examples/demo_room")                  # classical baseline
    loc = nerfloc_plugins.load_localizer("outputs/room/crossfire-cpu/<ts>/config.yml")  # a trained method
    result = loc.localize("photo.jpg", camera=(fx, fy, cx, cy))
    if result.localized:
        print(result.c2w)        # camera-to-world, map frame, OpenCV axes, metres

    # render verification of every pose hypothesis with a trained map (the best pipeline measured)
    from dataclasses import replace
    from nerfloc_plugins.localize.stages.verification import VerifyConfig
    from nerfloc_plugins.localize.pipeline_config import best_baseline_pipeline
    pipeline = replace(best_baseline_pipeline(), verify=VerifyConfig(map=Path("outputs/room/nerfloc-nerfacto-cpu/<ts>/config.yml")))
    loc = nerfloc_plugins.load_localizer("examples/demo_room", pipeline=pipeline)
    result = loc.localize("photo.jpg")   # result.status: "localized" | "unverified" | "failed"; result.verify_score

Poses are in the map's (dataset's) metric frame with OpenCV camera axes (x right, y down,
z forward); ``c2w`` maps camera to world coordinates, ``w2c`` is its inverse (hloc/COLMAP's
convention).  ``load_localizer``'s keyword options: ``pipeline=PipelineConfig(...)`` (retrieval,
PnP, refinement, cascade, verification); for a dataset directory the classical map's options
(:class:`~nerfloc_plugins.localize.map_sources.ClassicalMapConfig` fields, e.g. ``features="aliked"``,
``map_matching="views"``), ``dataparser=`` and ``train_stride=``; for a run file its localizer's
options by name (e.g. ``crossfire=CrossFireLocalizerConfig(...)``) and ``pose_prior=RUN``.  A
pipeline composed by hand (:class:`~nerfloc_plugins.localize.pipeline.LocalizationPipeline`) is
wrapped by ``MapLocalizer(pipeline)``.

Images are decoded once; an array is localized as it is (no file is written).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from nerfloc_plugins.data.frames import Intrinsics, PosedFrame, image_size
from nerfloc_plugins.data.query_images import intrinsics_for
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.interface.specs import discover_specs
from nerfloc_plugins.localize.map_sources import ClassicalMapConfig, pipeline_from_dataset, pipeline_from_run
from nerfloc_plugins.localize.pipeline import LocalizationPipeline
from nerfloc_plugins.localize.pipeline_config import PipelineConfig
from nerfloc_plugins.localize.stages.query_result import QueryResult

CameraLike = Union[Intrinsics, Sequence[float], None]
ImageLike = Union[str, Path, np.ndarray]


@dataclass
class Localization:
    """The pose of one query image (see the module docstring for conventions)."""

    name: str
    localized: bool
    """Whether a pose was estimated (PnP succeeded, or a regressor gave one)."""
    c2w: Optional[np.ndarray]
    """4x4 camera-to-world pose, map frame, metres; ``None`` when not localized."""
    w2c: Optional[np.ndarray]
    """4x4 world-to-camera pose (the inverse of ``c2w``)."""
    num_inliers: int
    num_matches: int
    inlier_ratio: float
    reprojection_px: Optional[float]
    """Median reprojection error of the PnP inliers."""
    stage: str
    """Which localizer (cascade stage) produced the pose, ``+render-match`` when refined."""
    timings: Dict[str, float] = field(default_factory=dict)
    """Seconds per pipeline stage."""
    prior_c2w: Optional[np.ndarray] = None
    """The best prior's pose (what ``poses.txt`` gives a failed query)."""
    intrinsics: Optional[Intrinsics] = None
    """The pinhole camera the query was localized with."""
    status: str = "failed"
    """``localized``, ``unverified`` (render verification did not confirm the pose) or ``failed``."""
    verify_score: Optional[float] = None
    """Render-verification score of the pose (``--verify.*``; ``None`` when off)."""
    verify_margin: Optional[float] = None
    """Its lead over the best other hypothesis (``None`` with one hypothesis)."""

    @classmethod
    def from_result(cls, result: QueryResult) -> "Localization":
        w2c = result.w2c
        return cls(
            name=result.frame.name,
            localized=w2c is not None,
            c2w=invert_rigid(w2c) if w2c is not None else None,
            w2c=w2c,
            num_inliers=result.num_inliers,
            num_matches=result.num_matches,
            inlier_ratio=result.inlier_ratio,
            reprojection_px=result.reprojection_px,
            stage=result.stage,
            timings=dict(result.timings),
            prior_c2w=result.prior_c2w,
            intrinsics=result.frame.intrinsics,
            status=result.status,
            verify_score=result.verification.score if result.verification else None,
            verify_margin=result.verification.margin if result.verification else None,
        )


class FixedPosePrior:
    """One given camera-to-world pose as the prior of a map-view localizer that renders."""

    name = "given"

    def __init__(self, c2w: np.ndarray) -> None:
        c2w = np.asarray(c2w, dtype=np.float64)
        if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
            raise ValueError(f"prior: expected a finite 4x4 camera-to-world matrix, got shape {c2w.shape}")
        self.c2w = c2w

    def prior_frame(self, query: PosedFrame) -> PosedFrame:
        return PosedFrame("prior", Path(), self.c2w, query.intrinsics)


class MapLocalizer:
    """A loaded map (its :class:`LocalizationPipeline`: localizers, cascade stages, retrieval index)
    that localizes images."""

    def __init__(self, pipeline: LocalizationPipeline) -> None:
        self.pipeline = pipeline
        self.map_camera = pipeline.localizer.map_camera()
        self._count = 0

    @property
    def name(self) -> str:
        return self.pipeline.name

    @property
    def localizer(self):
        """The first stage's localizer (its map frames, camera, name)."""
        return self.pipeline.localizer

    def camera_for(self, path: Optional[Path], size: tuple, camera: CameraLike) -> Intrinsics:
        """The query's pinhole camera: ``camera`` (Intrinsics, or fx fy cx cy [W H]), else the map's
        camera rescaled to the image, else (a file) its EXIF focal length."""
        if isinstance(camera, Intrinsics):
            return camera if (camera.width, camera.height) == size else camera.scaled_to(*size)
        return intrinsics_for(path, size, None if camera is None else tuple(camera), self.map_camera)

    def query_frame(self, image: ImageLike, camera: CameraLike, name: Optional[str]) -> PosedFrame:
        """The query as a frame: a file (decoded once, by the pipeline) or an array (used as it is:
        ``(H, W, 3)`` RGB, uint8 or float in [0, 1], finite)."""
        if not isinstance(image, np.ndarray):
            path = Path(image)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: query image not found")
            return PosedFrame(name or path.name, path, None, self.camera_for(path, image_size(path), camera))
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"query image: expected an (H, W, 3) RGB array, got shape {image.shape}")
        if image.dtype == np.uint8:
            rgb = image.astype(np.float32) / 255.0
        elif np.issubdtype(image.dtype, np.floating):
            if not np.isfinite(image).all():
                bad = int((~np.isfinite(image)).any(axis=2).sum())
                raise ValueError(f"query image: {bad} pixels are NaN or infinite (expected finite values in [0, 1])")
            rgb = np.clip(image, 0.0, 1.0).astype(np.float32)
        else:
            raise ValueError(f"query image: expected a uint8 or float array, got {image.dtype}")
        self._count += 1
        name = name or f"array-{self._count:06d}"
        size = (image.shape[1], image.shape[0])
        return PosedFrame(name, Path(name), None, self.camera_for(None, size, camera), pixels=rgb)

    def localize(
        self,
        image: ImageLike,
        camera: CameraLike = None,
        prior: Optional[np.ndarray] = None,
        name: Optional[str] = None,
    ) -> Localization:
        """The pose of one image (a path or an RGB array); ``camera``: its pinhole intrinsics
        (default: the map's camera, or EXIF); ``prior``: a camera-to-world pose to render and match
        at instead of retrieval (field maps only)."""
        frame = self.query_frame(image, camera, name)
        stages = None if prior is None else self.pipeline.with_pose_prior(FixedPosePrior(prior))
        return Localization.from_result(self.pipeline.localize(frame, stages))

    def localize_many(self, images: Sequence[ImageLike], camera: CameraLike = None) -> List[Localization]:
        return [self.localize(image, camera) for image in images]


def load_localizer(source: Union[str, Path], pipeline: Optional[PipelineConfig] = None, **options) -> MapLocalizer:
    """Load a map once: a dataset directory (the classical baseline, ``ns-localize-baseline``'s
    default pipeline) or a trained run's ``config.yml`` / run file (its method, ``ns-localize``'s
    defaults); ``options``: see the module docstring."""
    source = Path(source)
    if source.is_dir():
        classical_fields = {f.name for f in fields(ClassicalMapConfig)}
        unknown = set(options) - classical_fields - {"dataparser", "train_stride"}
        if unknown:
            raise TypeError(f"load_localizer({source}): unknown options {sorted(unknown)} for a dataset directory")
        classical = ClassicalMapConfig(**{k: v for k, v in options.items() if k in classical_fields})
        extra = {k: options[k] for k in ("dataparser", "train_stride") if k in options}
        return MapLocalizer(pipeline_from_dataset(source, pipeline, classical, **extra))
    if not source.is_file():
        raise FileNotFoundError(f"{source}: expected a dataset directory or a run's config.yml")
    pose_prior = options.pop("pose_prior", None)
    by_name = {name.replace("_", "-"): value for name, value in options.items()}
    unknown = set(by_name) - {spec.name for spec in discover_specs()}
    if unknown:
        raise TypeError(f"load_localizer({source}): unknown options {sorted(unknown)} (expected localizer names)")
    return MapLocalizer(pipeline_from_run(source, pipeline, by_name, pose_prior))
