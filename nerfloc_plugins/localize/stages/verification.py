"""Render verification: the map renders each pose hypothesis, the one that looks like the query wins.

Feature matching can be confidently wrong: a query facing a picture that also hangs elsewhere gets
a PnP pose at the copy, with as many inliers as a right pose.  A trained map (any nerfloc run that
renders RGB: ``nerfloc-nerfacto``, CrossFire, NeuraLoc, ...) tells the places apart even when it is
blurred: rendered at the wrong copy it shows the wrong surroundings.  For each distinct
hypothesis (:mod:`~nerfloc_plugins.localize.stages.hypotheses`) the map renders a small image with the
query's camera (``resolution`` pixels wide), and a dense score compares it with the query
downsampled to the same size:

* ``ncc``: zero-mean normalised cross-correlation of grey levels (gain- and offset-invariant);
* ``ssim``: after matching both images' global mean and contrast (gain- and offset-invariant),
  SSIM's contrast-structure term averaged over a ``grid`` of windows: each part of the image must
  agree on its own, so a plain object standing at one copy of a picture and not at the other
  counts as much as the picture both copies share (flat in both: agreement; flat in one only:
  disagreement);
* ``gradient-ncc``: NCC of Sobel gradients (x and y stacked): structure only, blind to
  smooth shading differences between the map and the query.

Both are computed after a Gaussian blur of ``blur_px`` on both images (a CPU map renders blurred;
the blur keeps sharp query edges from dominating), over the pixels where the map rendered a
surface.  The hypothesis with the best score is chosen, but the pipeline's own choice (the first
hypothesis) is only overruled by a score higher by ``switch_margin``; the chosen pose is
**verified** when its score reaches ``min_score``, else the query is ``unverified`` (its pose is
still written).  Scores are in [-1, 1]; the margin is the chosen score minus the best other one.

Render-and-match refinement after it is kept only when the refined pose scores at least as well
(:meth:`RenderVerifier.keeps_refinement`).  Render size: the query camera scaled to ``resolution``
pixels wide (aspect kept), with ``sample_fraction`` of the run's samples per ray: a CPU-trained
``nerfloc-nerfacto-cpu`` map renders one 40x30 hypothesis in ~0.2 s on 2 CPU cores.  Only the
hypotheses that can change the decision are rendered: when the pipeline's own pose scores above
``1 - switch_margin`` no other can overrule it, and the rest are left unrendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import List, Literal, Optional

import cv2
import numpy as np
from typing_extensions import Annotated

from nerfloc_plugins.data.frames import Intrinsics
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.stages.hypotheses import PoseHypothesis, distinct_hypotheses
from nerfloc_plugins.nerf.render_sampling import RenderSampling
from nerfloc_plugins.utils.option_ranges import COUNT, NON_NEGATIVE, POSITIVE, Between


@dataclass
class VerifyConfig:
    """Render verification of pose hypotheses (``--verify.*``; off unless ``--verify.map`` or
    ``--verify.enabled``)."""

    map: Optional[Path] = None
    """config.yml of the trained run that renders the hypotheses (turns verification on); without
    it, ``--verify.enabled`` uses the localizer's own field."""
    enabled: bool = False
    """Verify with the localizer's own field (``ns-localize`` on a map that renders RGB)."""
    resolution: Annotated[int, Between(8, 4096)] = 40
    """Width in pixels of the renderings and of the downsampled query (the height keeps the
    query's aspect ratio): enough to tell places apart, not to see errors of a few cm."""
    score: Literal["ncc", "ssim", "gradient-ncc"] = "ncc"
    """Dense agreement of a rendering with the query (see module docstring)."""
    grid: tuple[int, int] = (4, 3)
    """Windows across and down the image of ``ssim``."""
    blur_px: Annotated[float, NON_NEGATIVE] = 1.0
    """Gaussian sigma (pixels at ``resolution``) applied to both images before scoring."""
    min_score: Annotated[float, Between(-1, 1)] = 0.5
    """A chosen pose scoring below this is ``unverified`` (written, but flagged in per_query.csv)."""
    switch_margin: Annotated[float, Between(0, 2)] = 0.05
    """Another hypothesis replaces the pipeline's own choice only when it scores this much higher."""
    max_hypotheses: Annotated[int, COUNT] = 5
    """Distinct hypotheses rendered per query (the pipeline's choice first, then by inliers)."""
    distinct_m: Annotated[float, POSITIVE] = 0.3
    """Hypotheses closer than this (metres) and ``distinct_deg`` are one place (the one with more
    inliers is kept): at ``resolution`` 80 a render cannot see errors below ~30 cm."""
    distinct_deg: Annotated[float, POSITIVE] = 10.0
    min_inliers: Annotated[int, NON_NEGATIVE] = 12
    """PnP inliers another hypothesis needs to be rendered at all (a pose from a handful of matches
    is too weak to overrule the pipeline's; regressed poses, without matches, are always rendered)."""
    further_models: Annotated[int, NON_NEGATIVE] = 2
    """Extra PnP models per match set (sequential RANSAC on the matches earlier models left)."""
    further_min_inliers: Annotated[int, COUNT] = 12
    """Inliers a further model needs to become a hypothesis."""
    every_stage: bool = True
    """Run every stage of the cascade for hypotheses, not only until one is accepted (a confident
    wrong-place pose is accepted; the verified retrieval stage then offers the right one)."""
    sample_fraction: Annotated[float, Between(0, 1)] = 0.5
    """Render with this fraction of the run's samples per ray (maps with proposal samplers, e.g.
    Nerfacto's 64 32 32 -> 32 16 16: about 2x faster at this resolution; 1: the run's schedule);
    ``--verify.sampling.*`` given explicitly wins."""
    sampling: RenderSampling = field(default_factory=RenderSampling)
    """Samples per ray of the renderings (``.samples 32 16 16``, ``.band-samples 8 8 8``: depth-guided;
    see nerf/render_sampling.py)."""

    @property
    def on(self) -> bool:
        return self.enabled or self.map is not None


@dataclass
class Verification:
    """What render verification decided for one query."""

    hypotheses: List[PoseHypothesis]
    """The distinct hypotheses, each with its ``score``; the pipeline's own choice first."""
    chosen: int
    """Index of the chosen hypothesis."""
    verified: bool
    """Whether the chosen score reaches ``min_score``."""
    margin: Optional[float]
    """Chosen score minus the best other hypothesis's (``None`` with one rendered hypothesis)."""
    unrendered: int = 0
    """Distinct hypotheses not rendered: the first scored so high that none could overrule it."""
    renders: List[np.ndarray] = field(default_factory=list)
    """RGB renderings ``(h, w, 3)`` of each hypothesis (report figures; not journaled)."""
    query_image: Optional[np.ndarray] = None
    """The query at the render size (report figures)."""

    @property
    def score(self) -> float:
        return float(self.hypotheses[self.chosen].score)

    @property
    def overruled(self) -> bool:
        """Whether verification chose another pose than the pipeline's own."""
        return self.chosen != 0

    @property
    def runner_up(self) -> Optional[int]:
        others = [i for i in range(len(self.hypotheses)) if i != self.chosen]
        return max(others, key=lambda i: self.hypotheses[i].score) if others else None

    def record(self) -> dict:
        return {
            "hypotheses": [h.record() for h in self.hypotheses],
            "chosen": self.chosen,
            "verified": self.verified,
            "margin": self.margin,
            "unrendered": self.unrendered,
        }

    @classmethod
    def from_record(cls, record: dict) -> "Verification":
        hyps = [PoseHypothesis.from_record(h) for h in record["hypotheses"]]
        return cls(hyps, record["chosen"], record["verified"], record["margin"], unrendered=record.get("unrendered", 0))


def grey(image: np.ndarray) -> np.ndarray:
    """Luma of an ``(H, W, 3)`` float RGB image in [0, 1] (ITU-R BT.601 weights), float32."""
    return (np.asarray(image, dtype=np.float32)[..., :3] @ np.float32([0.299, 0.587, 0.114])).astype(np.float32)


def resize_area(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-averaged resize (the query down to the render size)."""
    if image.shape[1] == width and image.shape[0] == height:
        return np.asarray(image, dtype=np.float32)
    return cv2.resize(np.asarray(image, dtype=np.float32), (width, height), interpolation=cv2.INTER_AREA)


def ncc(a: np.ndarray, b: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """Zero-mean normalised cross-correlation of ``a`` and ``b`` (same shape; trailing channels
    are pooled) over ``mask`` ``(H, W)``; 0 when either is constant there."""
    if mask is not None:
        a, b = a[mask], b[mask]
    a = a.reshape(-1).astype(np.float64)
    b = b.reshape(-1).astype(np.float64)
    if a.size < 2:
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 1e-12 else 0.0


def gradients(image: np.ndarray) -> np.ndarray:
    """Sobel x and y derivatives of a grey image, stacked ``(H, W, 2)``."""
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)
    return np.stack([gx, gy], axis=-1)


def agreement(query_grey: np.ndarray, render_grey: np.ndarray, mask: np.ndarray, config: VerifyConfig) -> float:
    """The ``config.score`` of a rendering against the query (both grey, same size)."""
    if config.blur_px > 0:
        query_grey = cv2.GaussianBlur(query_grey, (0, 0), config.blur_px)
        render_grey = cv2.GaussianBlur(render_grey, (0, 0), config.blur_px)
    if config.score == "gradient-ncc":
        return ncc(gradients(query_grey), gradients(render_grey), mask)
    if config.score == "ssim":
        return windowed_ssim(query_grey, render_grey, mask, config.grid)
    return ncc(query_grey, render_grey, mask)


def windowed_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray, grid: tuple[int, int], c: float = 0.01) -> float:
    """SSIM's contrast-structure term ``(2 cov + c) / (var_a + var_b + c)`` averaged over a ``grid``
    (columns, rows) of windows, after both images are standardised over ``mask`` (zero mean, unit
    deviation: gain and offset drop out); windows less than a quarter rendered are left out."""
    a, b = standardised(a, mask), standardised(b, mask)
    height, width = a.shape[:2]
    xs = np.linspace(0, width, grid[0] + 1).round().astype(int)
    ys = np.linspace(0, height, grid[1] + 1).round().astype(int)
    scores = []
    for y0, y1 in zip(ys[:-1], ys[1:]):
        for x0, x1 in zip(xs[:-1], xs[1:]):
            m = mask[y0:y1, x0:x1]
            if m.sum() < max(2, m.size // 4):
                continue
            wa, wb = a[y0:y1, x0:x1][m], b[y0:y1, x0:x1][m]
            wa, wb = wa - wa.mean(), wb - wb.mean()
            scores.append((2 * (wa * wb).mean() + c) / ((wa * wa).mean() + (wb * wb).mean() + c))
    return float(np.mean(scores)) if scores else 0.0


def standardised(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` less its mean over ``mask``, divided by its deviation there (unchanged if flat)."""
    values = image[mask] if mask.any() else image.reshape(-1)
    std = float(values.std())
    return (image - values.mean()) / (std if std > 1e-6 else 1.0)


def fewer_samples(renderer, config: VerifyConfig) -> RenderSampling:
    """``config.sampling``, or when it is the default, the run's samples per ray scaled by
    ``sample_fraction`` (maps whose model has a proposal sampler; others keep their own)."""
    if config.sampling != RenderSampling() or config.sample_fraction >= 1.0:
        return config.sampling
    sampler = getattr(getattr(renderer, "model", None), "proposal_sampler", None)
    if sampler is None:
        return config.sampling
    counts = (*sampler.num_proposal_samples_per_ray, sampler.num_nerf_samples_per_ray)
    return RenderSampling(samples=tuple(max(1, round(n * config.sample_fraction)) for n in counts))


class RenderVerifier:
    """Scores pose hypotheses against a query with renderings of ``renderer`` (module docstring).

    ``renderer``: anything with ``render(c2w, intrinsics, sampling=...) -> {"rgb", "depth"}``
    (:class:`~nerfloc_plugins.nerf.field_renderer.FieldRenderer`; poses dataset-frame OpenCV c2w)."""

    def __init__(self, renderer, config: VerifyConfig) -> None:
        self.renderer = renderer
        self.config = replace(config, sampling=fewer_samples(renderer, config))

    def render_camera(self, intrinsics: Intrinsics) -> Intrinsics:
        width = min(self.config.resolution, intrinsics.width)
        height = max(1, round(intrinsics.height * width / intrinsics.width))
        return intrinsics.scaled_to(width, height)

    def render(self, w2c: np.ndarray, camera: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
        """RGB ``(h, w, 3)`` and the mask of pixels where the map rendered a surface."""
        out = self.renderer.render(invert_rigid(w2c), camera, sampling=self.config.sampling)
        depth = out["depth"]
        return out["rgb"], np.isfinite(depth) & (depth > 0)

    def score_pose(self, w2c: np.ndarray, query_small: np.ndarray, camera: Intrinsics) -> tuple[float, np.ndarray]:
        """Score of one pose against the downsampled query, and its rendering."""
        rgb, mask = self.render(w2c, camera)
        return agreement(grey(query_small), grey(rgb), mask, self.config), rgb

    def query_at_render_size(self, image: np.ndarray, intrinsics: Intrinsics) -> tuple[np.ndarray, Intrinsics]:
        camera = self.render_camera(intrinsics)
        return resize_area(image, camera.width, camera.height), camera

    def verify(self, hypotheses: List[PoseHypothesis], image: np.ndarray, intrinsics: Intrinsics) -> Verification:
        """Render and score the distinct ``hypotheses`` (the pipeline's choice first) against the
        query ``image`` (``(H, W, 3)`` float RGB at ``intrinsics``) and choose one."""
        cfg = self.config
        strong = hypotheses[:1] + [h for h in hypotheses[1:] if h.num_matches == 0 or h.num_inliers >= cfg.min_inliers]
        kept = distinct_hypotheses(strong, cfg.max_hypotheses, cfg.distinct_m, cfg.distinct_deg)
        small, camera = self.query_at_render_size(image, intrinsics)
        renders = []
        for index, hyp in enumerate(kept):
            hyp.score, rgb = self.score_pose(hyp.w2c, small, camera)
            renders.append(rgb)
            if index == 0 and hyp.score + cfg.switch_margin > 1.0:
                break  # scores are at most 1: no other hypothesis could overrule this one
        unrendered = len(kept) - len(renders)
        kept = kept[: len(renders)]
        best = max(range(len(kept)), key=lambda i: kept[i].score)
        chosen = best if kept[best].score >= kept[0].score + cfg.switch_margin else 0
        others = [h.score for i, h in enumerate(kept) if i != chosen]
        margin = kept[chosen].score - max(others) if others else None
        verified = kept[chosen].score >= cfg.min_score
        return Verification(kept, chosen, verified, margin, unrendered=unrendered, renders=renders, query_image=small)

    def keeps_refinement(
        self, verification: Verification, refined_w2c: np.ndarray, image: np.ndarray, intrinsics: Intrinsics
    ) -> tuple[bool, float]:
        """Whether a refined pose scores at least as well as the verified one (and its score); the
        query downsampled by :meth:`verify` is reused when the verification kept it."""
        if verification.query_image is not None:
            small, camera = verification.query_image, self.render_camera(intrinsics)
        else:
            small, camera = self.query_at_render_size(image, intrinsics)
        score, _ = self.score_pose(refined_w2c, small, camera)
        return score >= verification.score, score
