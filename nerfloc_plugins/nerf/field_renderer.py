"""Render a trained nerfloc model at camera poses given in the dataset's metric frame.

Loads the run with Nerfstudio's ``eval_setup`` (checkpoints load with ``weights_only``),
reads the run's ``dataparser_transforms.json`` and converts every pose and depth so that
callers only see dataset-frame OpenCV c2w poses, metres and z-depth.  The field is frozen.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from torch import Tensor

from nerfloc_plugins.data.frames import Intrinsics, PosedFrame, format_error
from nerfloc_plugins.geometry.poses import DataparserTransform, flip_opencv_opengl
from nerfloc_plugins.geometry.projection import ray_length_per_unit_z
from nerfloc_plugins.geometry.rays import ray_bundle
from nerfloc_plugins.nerf.render_sampling import RenderSampling, coarse_intrinsics, depth_bands
from nerfloc_plugins.nerf.run_files import load_run
from nerfloc_plugins.utils.parameters import parameter_bytes


class FieldRenderer:
    """A frozen trained model plus the dataset<->Nerfstudio transform of its run."""

    def __init__(self, load_config: Path) -> None:
        load_config = Path(load_config)
        self.run_dir = load_config.parent
        """The run's folder (where its config.yml is now, wherever it was trained)."""
        self.config, self.pipeline, self.checkpoint, self.step = load_run(load_config)
        self.model = self.pipeline.model
        self.model.eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.device = self.pipeline.device
        transforms = self.run_dir / "dataparser_transforms.json"
        self.transform = DataparserTransform.from_json(transforms)
        self.parser = self.config.pipeline.datamanager.dataparser.setup()
        if not hasattr(self.parser, "frames"):
            from nerfloc_plugins.data.nerfloc_dataset import NOT_A_NERFLOC_PARSER

            name = type(self.config.pipeline.datamanager.dataparser).__name__
            raise format_error(load_config, f"trained with {name}; {NOT_A_NERFLOC_PARSER}")
        self.sampling = RenderSampling()
        """How :meth:`render` samples rays when a call gives no ``sampling`` (the run's schedule)."""

    def frames(self, split: str) -> List[PosedFrame]:
        """Dataset-frame frames of the run's dataset (``train`` = the map's frames)."""
        return self.parser.frames("train" if split == "train" else "test")

    def camera(self, c2w: np.ndarray, intrinsics: Intrinsics) -> Cameras:
        c2w_ns = self.transform.c2w_to_nerfstudio(c2w)
        return Cameras(
            camera_to_worlds=torch.from_numpy(c2w_ns[None]).float(),
            fx=intrinsics.fx,
            fy=intrinsics.fy,
            cx=intrinsics.cx,
            cy=intrinsics.cy,
            width=intrinsics.width,
            height=intrinsics.height,
            camera_type=CameraType.PERSPECTIVE,
        ).to(self.device)

    @contextmanager
    def samples_per_ray(self, samples: Optional[Sequence[int]]) -> Iterator[None]:
        """Render with ``samples`` = (proposal samples per proposal level ..., NeRF samples) per ray
        instead of the run's schedule (Nerfacto-based maps: fewer samples render faster once the
        proposal networks have converged); ``None`` keeps the run's.  Models without a proposal
        sampler (NeuraLoc's SDF) refuse a schedule in one line."""
        if samples is None:
            yield
            return
        sampler = self.check_samples(samples)
        saved = sampler.num_proposal_samples_per_ray, sampler.num_nerf_samples_per_ray
        sampler.num_proposal_samples_per_ray, sampler.num_nerf_samples_per_ray = tuple(samples[:-1]), samples[-1]
        try:
            yield
        finally:
            sampler.num_proposal_samples_per_ray, sampler.num_nerf_samples_per_ray = saved

    def check_samples(self, samples: Sequence[int]):
        """The model's proposal sampler, once ``samples`` fits it (else one-line ValueError)."""
        sampler = getattr(self.model, "proposal_sampler", None)
        levels = getattr(sampler, "num_proposal_network_iterations", None)
        if sampler is None or len(samples) != levels + 1:
            expected = "no proposal sampler" if sampler is None else f"{levels + 1} numbers (proposal levels, NeRF)"
            raise ValueError(f"samples per ray {tuple(samples)}: {type(self.model).__name__} has {expected}")
        return sampler

    def check_sampling(self, sampling: RenderSampling) -> None:
        """One-line ValueError unless every schedule of ``sampling`` fits this model."""
        sampling.validate()
        for samples in (sampling.samples, sampling.band_samples):
            if samples is not None:
                self.check_samples(samples)

    @torch.no_grad()
    def render(
        self,
        c2w: np.ndarray,
        intrinsics: Intrinsics,
        outputs: Sequence[str] = (),
        sampling: Optional[RenderSampling] = None,
    ) -> Dict[str, np.ndarray]:
        """``rgb`` (H, W, 3), ``depth`` (H, W) z-depth in metres, and any extra ``outputs``;
        ``sampling``: samples per ray, one pass or depth-guided
        (:mod:`nerfloc_plugins.nerf.render_sampling`; default :attr:`sampling`)."""
        sampling = sampling or self.sampling
        ray_scale = ray_length_per_unit_z(intrinsics.width, intrinsics.height, intrinsics.matrix())
        camera = self.camera(c2w, intrinsics)
        if sampling.depth_guided:
            self.check_sampling(sampling)  # before the coarse pass is spent
            coarse = self.render(
                c2w, coarse_intrinsics(intrinsics, sampling.coarse_factor), sampling=RenderSampling(sampling.samples)
            )
            with self.samples_per_ray(sampling.band_samples):
                out = self.model.get_outputs_for_camera_ray_bundle(
                    self._rays_in_bands(camera, coarse["depth"], ray_scale, sampling)
                )
        else:
            with self.samples_per_ray(sampling.samples):
                out = self.model.get_outputs_for_camera(camera)
        depth = out["depth"][..., 0].double().cpu().numpy() / ray_scale / self.transform.scale
        result = {"rgb": out["rgb"].float().cpu().numpy(), "depth": depth}
        for name in outputs:
            result[name] = out[name].float().cpu().numpy()
        return result

    def _rays_in_bands(
        self, camera: Cameras, coarse_depth: np.ndarray, ray_scale: np.ndarray, sampling: RenderSampling
    ):
        """The camera's rays with ``nears`` / ``fars`` set to each pixel's depth band."""
        width, height = int(camera.width[0, 0]), int(camera.height[0, 0])
        near_z, far_z = depth_bands(coarse_depth, (width, height), sampling)
        to_ray = ray_scale * self.transform.scale  # z metres -> Nerfstudio ray distance
        near_plane = float(getattr(self.model.config, "near_plane", 0.0))
        nears = np.maximum(near_z * to_ray, near_plane)
        fars = np.maximum(far_z * to_ray, nears + 1e-4)
        bundle = camera.generate_rays(camera_indices=0, keep_shape=True)
        device = bundle.origins.device
        bundle.nears = torch.from_numpy(nears[..., None]).float().to(device)
        bundle.fars = torch.from_numpy(fars[..., None]).float().to(device)
        return bundle

    def c2w_ns_opencv(self, c2w: np.ndarray) -> np.ndarray:
        """Dataset OpenCV c2w -> Nerfstudio-frame OpenCV c2w (the frame rays are cast in)."""
        return flip_opencv_opengl(self.transform.c2w_to_nerfstudio(c2w))

    def c2w_from_ns_opencv(self, c2w_ns: np.ndarray) -> np.ndarray:
        return self.transform.c2w_to_dataset(flip_opencv_opengl(c2w_ns))

    def render_rays(self, origins: Tensor, directions: Tensor) -> Tensor:
        """Differentiable RGB along Nerfstudio-frame rays (unit directions)."""
        return self.model(ray_bundle(origins, directions))["rgb"]

    def size_bytes(self) -> int:
        """Size of the trained field's parameters (what a NeRF map stores)."""
        return parameter_bytes(self.model)
