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
    from nerfloc_plugins.localize.verification import VerifyConfig
    from nerfloc_plugins.scripts.localize_baseline import best_baseline_pipeline
    pipeline = replace(best_baseline_pipeline(), verify=VerifyConfig(map=Path("outputs/room/nerfloc-nerfacto-cpu/<ts>/config.yml")))
    loc = nerfloc_plugins.load_localizer("examples/demo_room", pipeline=pipeline)
    result = loc.localize("photo.jpg")   # result.status: "localized" | "unverified" | "failed"; result.verify_score

Poses are in the map's (dataset's) metric frame with OpenCV camera axes (x right, y down,
z forward); ``c2w`` maps camera to world coordinates, ``w2c`` is its inverse (hloc/COLMAP's
convention).  ``options`` are the fields of the command the source selects, as keyword
arguments: :class:`~nerfloc_plugins.scripts.localize_baseline.LocalizeBaseline` for a dataset
directory (e.g. ``features="aliked"``, ``map_matching="views"``,
``pipeline=PipelineConfig(...)``) and :class:`~nerfloc_plugins.scripts.localize.LocalizeBase`
plus the method's options group for a run file (e.g. ``crossfire=CrossFireLocalizerConfig(...)``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from PIL import Image

from nerfloc_plugins.data.frames import Intrinsics, PosedFrame, image_size
from nerfloc_plugins.data.query_images import intrinsics_for
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.localizer import Localizer, LocalizerKind, PosePrior
from nerfloc_plugins.localize.pipeline import (
    PipelineConfig,
    PriorSource,
    QueryResult,
    localize_with_cascade,
    prepare_stages,
)

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
    """A loaded map (its localizer, cascade stages, retrieval index) that localizes images."""

    def __init__(
        self,
        localizer: Localizer,
        config: PipelineConfig,
        fallbacks: Sequence[Localizer] = (),
        pose_prior: Optional[PosePrior] = None,
    ) -> None:
        self.localizer = localizer
        self.config = config
        self.fallbacks = list(fallbacks)
        self.stages, self.refiner, self.verifier = prepare_stages(localizer, config, pose_prior, self.fallbacks)
        self.map_camera = localizer.map_camera()
        self._scratch = tempfile.TemporaryDirectory(prefix="nerfloc-api-")
        self._count = 0

    @property
    def name(self) -> str:
        return " -> ".join(loc.name for loc, _ in self.stages)

    def camera_for(self, path: Path, camera: CameraLike) -> Intrinsics:
        """The query's pinhole camera: ``camera`` (Intrinsics, or fx fy cx cy [W H]), else the map's
        camera rescaled to the image, else its EXIF focal length."""
        size = image_size(path)
        if isinstance(camera, Intrinsics):
            return camera if (camera.width, camera.height) == size else camera.scaled_to(*size)
        return intrinsics_for(path, size, None if camera is None else tuple(camera), self.map_camera)

    def image_file(self, image: ImageLike) -> Path:
        """A file for ``image`` (localizers read queries from disk): the path itself, or the array
        (``(H, W, 3)``, uint8 or float in [0, 1]) written to this localizer's scratch folder."""
        if not isinstance(image, np.ndarray):
            path = Path(image)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: query image not found")
            return path
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"query image: expected an (H, W, 3) RGB array, got shape {image.shape}")
        rgb = image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        self._count += 1
        path = Path(self._scratch.name) / f"query-{self._count:06d}.png"
        Image.fromarray(rgb).save(path)
        return path

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
        path = self.image_file(image)
        frame = PosedFrame(name or path.name, path, None, self.camera_for(path, camera))
        stages = self.stages
        if prior is not None:
            first, _ = stages[0]
            if first.kind is not LocalizerKind.MATCHES_MAP_VIEWS or not first.renders_at_any_pose:
                raise ValueError(f"prior: {first.name} cannot render at a given pose (it needs a field map)")
            stages = [(first, PriorSource(first, self.config, FixedPosePrior(prior)))] + stages[1:]
        result = localize_with_cascade(stages, frame, self.config, self.refiner, self.verifier)
        return Localization.from_result(result)

    def localize_many(self, images: Sequence[ImageLike], camera: CameraLike = None) -> List[Localization]:
        return [self.localize(image, camera) for image in images]


def load_localizer(source: Union[str, Path], **options) -> MapLocalizer:
    """Load a map once: a dataset directory (the classical baseline, ``ns-localize-baseline``'s
    default pipeline) or a trained run's ``config.yml`` / run file (its method, ``ns-localize``'s
    defaults); ``options``: fields of that command (module docstring)."""
    source = Path(source)
    if source.is_dir():
        from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline

        command = LocalizeBaseline(data=source, **options)
        localizer, fallbacks = command.stages()
        return MapLocalizer(localizer, command.pipeline, fallbacks)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: expected a dataset directory or a run's config.yml")
    from nerfloc_plugins.scripts.localize import Localize

    command = Localize(load_config=source, **options)
    localizer = command.localizer()
    fallbacks = [f for f in [command.fallback()] if f is not None]
    return MapLocalizer(localizer, command.pipeline, fallbacks, command.prior(localizer))
