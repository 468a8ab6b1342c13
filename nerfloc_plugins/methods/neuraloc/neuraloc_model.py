"""NeuraLoc model (Zhai et al.): SDF neural implicit map with distilled descriptor and context fields.

Rendering (eq. 2-4): samples along each ray, the SDF -> bell weight of eq. 2, weights normalised
per ray (only up to the first surface plus ``tr``, as Co-SLAM which NeuraLoc follows), colour,
depth, context ``f`` and descriptor ``g`` as weighted sums.

Sampling.  Training rays carry the sensor depth (``ray_bundle.metadata["surface_t"]``, the ray
distance of the depth reading, Nerfstudio units, set by :mod:`neuraloc_pipeline`): stratified
samples over ``[near, far]`` plus ``num_surface_samples`` jittered samples within
``surface_sample_range_m`` of the reading (depth-guided sampling).  Rays without depth (the
viewer, localization, evaluation) find the first + -> - crossing of the SDF on a coarse uniform
pass and put the same number of samples around it; rays with no crossing render nothing
(``accumulation`` 0).

Losses (eq. 5-11, per-ray means): ``0.5 L_c + 1 L_d + 5000 L_sdf + 10 L_fs`` on the geometry
branch, ``1 L_dis`` (cosine to the teachers' maps at the ray's pixel) and ``0.01 L_kl`` (computed
by the pipeline on rays through one image's keypoints).  Lengths in the losses are metres.

Viewer outputs: ``rgb``, ``depth``, ``accumulation``, ``normals`` (SDF gradient, rendered),
``descriptor_pca`` and ``context_pca`` (fixed PCA colourings), ``descriptors`` / ``context``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple, Type

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.model_components.scene_colliders import NearFarCollider
from nerfstudio.models.base_model import Model, ModelConfig
from torch import Tensor
from torch.nn import Parameter

from nerfloc_plugins.methods.neuraloc import neuraloc_losses as losses
from nerfloc_plugins.methods.neuraloc.neuraloc_field import HashGridConfig, NeuraLocField
from nerfloc_plugins.methods.neuraloc.neuraloc_teachers import NeuraLocTeacherConfig
from nerfloc_plugins.nerf.feature_pca import FixedPCAColouring


@dataclass
class NeuraLocModelConfig(ModelConfig):
    """NeuraLoc options; defaults from the paper where it gives them."""

    _target: Type = field(default_factory=lambda: NeuraLocModel)
    teachers: NeuraLocTeacherConfig = field(default_factory=NeuraLocTeacherConfig)
    geometry_grid: HashGridConfig = field(default_factory=HashGridConfig)
    semantic_grid: HashGridConfig = field(default_factory=HashGridConfig)
    geometry_hidden_dim: int = 32
    semantic_hidden_dim: int = 128
    implementation: str = "tcnn"
    """Hash grid / MLP backend: ``tcnn`` (tiny-cuda-nn when installed, else torch) or ``torch``."""
    truncation_m: float = 0.1
    """tr: SDF truncation distance in metres (eq. 2, 6, 7)."""
    first_surface_only: bool = True
    near_plane: float = 0.02
    far_plane: float = 4.0
    """Ray bounds (Nerfstudio units)."""
    num_stratified_samples: int = 32
    num_surface_samples: int = 11
    surface_sample_range_m: float = 0.1
    """Depth-guided samples lie within this many metres of the depth reading / SDF crossing."""
    num_coarse_samples: int = 128
    """Uniform SDF evaluations per ray to find the surface when no depth is given."""
    rgb_mult: float = 0.5
    depth_mult: float = 1.0
    sdf_mult: float = 5000.0
    free_space_mult: float = 10.0
    distillation_mult: float = 1.0
    kl_mult: float = 0.01
    kl_temperature: float = 0.1
    kl_keypoints: int = 256
    """M keypoints of one training image per step for L_kl."""
    render_normals: bool = True
    """Render SDF-gradient normals outside training (viewer); localizers switch this off."""
    pca_refit_every: int = 500


class NeuraLocModel(Model):
    config: NeuraLocModelConfig
    field: NeuraLocField

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        metadata = self.kwargs.get("metadata") or {}
        self.metres_per_unit = 1.0 / float(metadata.get("dataparser_scale", 1.0))
        implementation = cfg.implementation
        if implementation == "tcnn":
            try:
                import tinycudann  # noqa: F401
            except ImportError:
                implementation = "torch"
        self.field = NeuraLocField(
            self.scene_box.aabb,
            self.metres_per_unit,
            descriptor_dim=cfg.teachers.descriptor_dim,
            context_dim=cfg.teachers.context_dim,
            geometry_grid=cfg.geometry_grid,
            semantic_grid=cfg.semantic_grid,
            geometry_hidden_dim=cfg.geometry_hidden_dim,
            colour_hidden_dim=cfg.geometry_hidden_dim,
            semantic_hidden_dim=cfg.semantic_hidden_dim,
            implementation=implementation,  # type: ignore[arg-type]
        )
        self.collider = NearFarCollider(near_plane=cfg.near_plane, far_plane=cfg.far_plane)
        self.descriptor_pca = FixedPCAColouring(cfg.teachers.descriptor_dim)
        self.context_pca = FixedPCAColouring(cfg.teachers.context_dim)
        self.render_normals = cfg.render_normals
        self.step = 0
        from torchmetrics.image import PeakSignalNoiseRatio

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {"fields": list(self.field.parameters())}

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        def set_step(step: int) -> None:
            self.step = step

        return [TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], set_step)]

    # ----------------------------------------------------------------- sampling
    def _surface_samples(self, centre: Tensor, jitter: bool) -> Tensor:
        """``(R, num_surface_samples)`` ray distances around ``centre (R, 1)`` (Nerfstudio units)."""
        n = self.config.num_surface_samples
        half = self.config.surface_sample_range_m / self.metres_per_unit
        offsets = torch.linspace(-half, half, n, device=centre.device)[None].expand(centre.shape[0], n)
        if jitter and n > 1:
            offsets = offsets + (torch.rand_like(offsets) - 0.5) * (2 * half / (n - 1))
        return centre + offsets

    def _stratified(self, near: Tensor, far: Tensor, n: int, jitter: bool) -> Tensor:
        bins = torch.linspace(0.0, 1.0, n + 1, device=near.device)[None]
        lower, width = bins[:, :-1], bins[:, 1:] - bins[:, :-1]
        u = (
            torch.rand((near.shape[0], n), device=near.device)
            if jitter
            else torch.full((near.shape[0], n), 0.5, device=near.device)
        )
        return near + (far - near) * (lower + width * u)

    @torch.no_grad()
    def find_surface(self, origins: Tensor, directions: Tensor, near: Tensor, far: Tensor) -> Tuple[Tensor, Tensor]:
        """Ray distance ``(R, 1)`` of the first + -> - SDF crossing (linear interpolation) on a
        uniform coarse pass, and whether the ray has one ``(R,)``."""
        t = self._stratified(near, far, self.config.num_coarse_samples, jitter=False)
        sdf = self.field.sdf(origins[:, None] + directions[:, None] * t[..., None])[..., 0]
        crossing = (sdf[:, :-1] > 0) & (sdf[:, 1:] <= 0)
        has = crossing.any(dim=1)
        i = crossing.float().argmax(dim=1, keepdim=True)
        s0, s1 = torch.gather(sdf, 1, i), torch.gather(sdf, 1, i + 1)
        t0, t1 = torch.gather(t, 1, i), torch.gather(t, 1, i + 1)
        t_star = t0 + (t1 - t0) * s0 / (s0 - s1).clamp(min=1e-8)
        return torch.where(has[:, None], t_star, far), has

    # ---------------------------------------------------------------- rendering
    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        cfg = self.config
        origins, directions = ray_bundle.origins, ray_bundle.directions
        n_rays = origins.shape[0]
        near = ray_bundle.nears if ray_bundle.nears is not None else torch.full((n_rays, 1), cfg.near_plane)
        far = ray_bundle.fars if ray_bundle.fars is not None else torch.full((n_rays, 1), cfg.far_plane)
        near, far = near.to(origins), far.to(origins)
        surface_t = (ray_bundle.metadata or {}).get("surface_t")
        if surface_t is not None:
            surface_t = surface_t.to(origins)
            has_depth = surface_t > 0
            centre = torch.where(has_depth, surface_t, 0.5 * (near + far))
            t = torch.cat(
                [
                    self._stratified(near, far, cfg.num_stratified_samples, jitter=self.training),
                    self._surface_samples(centre, jitter=self.training),
                ],
                dim=1,
            )
            has_surface = torch.ones(n_rays, dtype=torch.bool, device=origins.device)
        else:
            centre, has_surface = self.find_surface(origins, directions, near, far)
            t = self._surface_samples(centre, jitter=False)
        t = torch.sort(t.clamp(min=1e-4), dim=1).values
        points = origins[:, None] + directions[:, None] * t[..., None]
        sdf, geo_feature, grid = self.field.geometry(points)
        sdf = sdf[..., 0]
        t_m = t * self.metres_per_unit
        weights = losses.normalised_weights(sdf, t_m, cfg.truncation_m, cfg.first_surface_only)
        weights = weights * has_surface[:, None]
        colour = self.field.colour(geo_feature, grid)
        outputs: Dict[str, Tensor] = {
            "rgb": (weights[..., None] * colour).sum(dim=1),
            "depth": (weights * t).sum(dim=1, keepdim=True),
            "accumulation": weights.sum(dim=1, keepdim=True),
        }
        outputs["expected_depth"] = outputs["depth"]
        # semantic branch only where the normalised weight is not negligible
        active = weights > 1e-4
        semantics = self.field.semantics(points[active])
        for name, values in semantics.items():
            full = torch.zeros((*weights.shape, values.shape[-1]), dtype=values.dtype, device=values.device)
            full[active] = values
            outputs[name] = (weights[..., None] * full).sum(dim=1)
        outputs["descriptor_pca"] = self.descriptor_pca(outputs["descriptors"].detach())
        outputs["context_pca"] = self.context_pca(outputs["context"].detach())
        if self.training:
            outputs["sdf"] = sdf
            outputs["t_m"] = t_m
        elif self.render_normals:
            outputs["normals"] = self.rendered_normals(points, weights)
        return outputs

    def rendered_normals(self, points: Tensor, weights: Tensor) -> Tensor:
        """Unit SDF gradients rendered with the weights, mapped to [0, 1] RGB (viewer)."""
        with torch.enable_grad():
            p = points.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.field.sdf(p).sum(), p)
        normals = torch.nn.functional.normalize((weights[..., None] * grad).sum(dim=1), dim=-1)
        return (normals + 1.0) / 2.0

    # ------------------------------------------------------------------- losses
    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        image = batch["image"][..., :3].to(self.device)
        return {"psnr": self.psnr(outputs["rgb"].clamp(0, 1), image)}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        cfg = self.config
        image = batch["image"][..., :3].to(self.device)
        loss = {"rgb_loss": cfg.rgb_mult * ((outputs["rgb"] - image) ** 2).sum(dim=-1).mean()}
        surface_t = batch.get("surface_t")
        if surface_t is not None:
            surface_t = surface_t.to(self.device)
            valid = surface_t[:, 0] > 0
            if valid.any():
                err_m = (outputs["depth"][valid] - surface_t[valid]) * self.metres_per_unit
                loss["depth_loss"] = cfg.depth_mult * (err_m**2).mean()
            if "sdf" in outputs:
                fs, trunc = losses.free_space_and_sdf_losses(
                    outputs["sdf"], outputs["t_m"], surface_t[:, 0] * self.metres_per_unit, cfg.truncation_m
                )
                loss["free_space_loss"] = cfg.free_space_mult * fs
                loss["sdf_loss"] = cfg.sdf_mult * trunc
        if "teacher_descriptors" in batch:
            ok = batch["teacher_valid"]
            if ok.any():
                loss["distillation_loss"] = cfg.distillation_mult * (
                    losses.distillation_loss(outputs["descriptors"][ok], batch["teacher_descriptors"][ok])
                    + losses.distillation_loss(outputs["context"][ok], batch["teacher_context"][ok])
                )
            if self.training and (
                not bool(self.descriptor_pca.fitted) or (cfg.pca_refit_every and self.step % cfg.pca_refit_every == 0)
            ):
                self.descriptor_pca.fit(outputs["descriptors"])
                self.context_pca.fit(outputs["context"])
        return loss

    def get_image_metrics_and_images(self, outputs, batch):
        image = batch["image"][..., :3].to(self.device)
        rgb = outputs["rgb"].clamp(0, 1)
        psnr = self.psnr(rgb.reshape(-1, 3), image.reshape(-1, 3))
        images = {
            "img": torch.cat([image, rgb], dim=1),
            "depth": outputs["depth"] / outputs["depth"].max().clamp(min=1e-6),
        }
        return {"psnr": float(psnr)}, images
