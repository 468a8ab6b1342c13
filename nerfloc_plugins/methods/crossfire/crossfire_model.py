"""CrossFire (Moreau et al.): Nerfacto + a view-independent descriptor field + a CNN, trained jointly.

Training steps render **whole downsampled images**: the full-image datamanager hands the
model a camera; the model renders one ray per ``stride x stride`` block (the CNN's output
cells, centres at ``stride * i + stride / 2``), so colour, depth and descriptors come out as
``h x w`` maps aligned with the CNN's descriptor map of the full-resolution image.  The loss
is eq. 3: ``MSE + 0.1 DSSIM + 1e-3 TV(depth, 5x5 patches) + L_pos + L_neg`` (plus Nerfacto's
proposal losses), with the 3D-distance margin of ``L_neg`` in metres and no gradient from the
descriptor loss into depth.  Ray batches (e.g. the viewer) render per ray as usual, with the
outputs ``descriptors`` (``D`` channels) and ``descriptor_pca`` (a fixed PCA projection to RGB
that does not flicker between frames; refitted every ``pca_refit_every`` steps).

Viewer similarity map: press "Pick a descriptor" in the viewer's Custom Elements panel, then
click a surface; the descriptor rendered along the clicked ray is stored and the output
``descriptor_similarity`` shows the cosine similarity of every rendered descriptor to it
(clamped to [0, 1]).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Tuple, Type

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.model_components.losses import distortion_loss, interlevel_loss
from nerfstudio.viewer.viewer_elements import ViewerButton, ViewerClick, ViewerControl
from torch import Tensor
from torch.nn import Parameter

from nerfloc_plugins.geometry.rays import ray_bundle
from nerfloc_plugins.methods.crossfire import crossfire_losses as losses
from nerfloc_plugins.methods.crossfire.crossfire_cnn import CrossFireCNN
from nerfloc_plugins.methods.crossfire.crossfire_field import DESCRIPTOR_INPUTS, CrossFireField
from nerfloc_plugins.nerf.feature_pca import FixedPCAColouring
from nerfloc_plugins.nerf.nerfloc_nerfacto_model import NerflocNerfactoModel, NerflocNerfactoModelConfig


@dataclass
class CrossFireModelConfig(NerflocNerfactoModelConfig):
    """CrossFire options; defaults from the paper where it gives them."""

    _target: Type = field(default_factory=lambda: CrossFireModel)
    descriptor_dim: int = 32
    """D (Sec. 4: descriptors of size 32)."""
    descriptor_hidden_dim: int = 64
    cnn_widths: Tuple[int, int, int] = (64, 128, 128)
    ssim_mult: float = 0.1
    """lambda_1 of eq. 3."""
    tv_mult: float = 1e-3
    """lambda_2 of eq. 3."""
    tv_patch_size: int = 5
    tv_num_patches: int = 16
    descriptor_loss_mult: float = 1.0
    """Weight of L_pos + L_neg (1 in eq. 3)."""
    margin_lambda: float = 2.0
    """lambda of t = max(0, 1 - lambda * d), per metre (not given in the paper: similarity may
    be positive only for points closer than 1 / lambda = 0.5 m)."""
    num_permutations: int = 4
    """m random permutations for L_neg."""
    descriptor_loss: Literal["hinge", "contrastive"] = "hinge"
    """``hinge``: the paper's L_pos + L_neg (eq. 1-2).  ``contrastive``: our distance-aware
    InfoNCE (crossfire_losses.contrastive_loss), which converges in far fewer steps."""
    contrastive_temperature: float = 0.1
    contrastive_max_cells: int = 4096
    stride: int = 4
    """Rendered descriptor map stride = the CNN's output stride."""
    pca_refit_every: int = 1000
    """Refit the viewer's fixed PCA colouring every N steps (0 = fit once)."""


class CrossFireModel(NerflocNerfactoModel):
    config: CrossFireModelConfig
    field: CrossFireField

    def build_field(self, aabb, **kwargs) -> CrossFireField:
        return CrossFireField(
            aabb,
            descriptor_dim=self.config.descriptor_dim,
            descriptor_hidden_dim=self.config.descriptor_hidden_dim,
            **kwargs,
        )

    def populate_modules(self) -> None:
        super().populate_modules()
        self.cnn = CrossFireCNN(self.config.descriptor_dim, self.config.cnn_widths)
        metadata = self.kwargs.get("metadata") or {}
        self.metres_per_unit = 1.0 / float(metadata.get("dataparser_scale", 1.0))
        self.descriptor_pca = FixedPCAColouring(self.config.descriptor_dim)
        self._generator = torch.Generator(device="cpu").manual_seed(0)
        # viewer similarity map (not saved: a viewing aid)
        self.picked_descriptor: Tensor | None = None
        self.viewer_control = ViewerControl()
        self.pick_button = ViewerButton("Pick a descriptor (then click the scene)", cb_hook=self._arm_descriptor_pick)

    def sample_feature_layers(self) -> Tuple[str, ...]:
        return tuple(dict.fromkeys(tuple(self.config.feature_outputs) + DESCRIPTOR_INPUTS))

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = super().get_param_groups()
        groups["crossfire_cnn"] = list(self.cnn.parameters())
        return groups

    # ----------------------------------------------------------------- rendering
    def render_extra_outputs(self, ray_samples, field_outputs, features, weights) -> Dict[str, Tensor]:
        outputs = super().render_extra_outputs(ray_samples, field_outputs, features, weights)
        descriptors = self.renderer_feature(self.field.descriptors(features), weights=weights)
        outputs["descriptors"] = descriptors
        outputs["descriptor_pca"] = self.descriptor_colours(descriptors.detach())
        if self.picked_descriptor is not None:
            outputs["descriptor_similarity"] = self.descriptor_similarity(descriptors.detach())
        return outputs

    def descriptor_similarity(self, descriptors: Tensor) -> Tensor:
        """Cosine similarity ``(N, 1)`` in [0, 1] (negative clamped) to the picked descriptor."""
        picked = torch.nn.functional.normalize(self.picked_descriptor.to(descriptors), dim=-1)
        return torch.clamp(torch.nn.functional.normalize(descriptors, dim=-1) @ picked[:, None], 0.0, 1.0)

    def _arm_descriptor_pick(self, _button: ViewerButton) -> None:
        self.viewer_control.register_pointer_cb("click", self.pick_descriptor)

    @torch.no_grad()
    def pick_descriptor(self, click: ViewerClick) -> None:
        """Store the descriptor rendered along the clicked ray (Nerfstudio frame, unit direction)."""
        origin = torch.tensor(click.origin, dtype=torch.float32, device=self.device)[None]
        direction = torch.nn.functional.normalize(
            torch.tensor(click.direction, dtype=torch.float32, device=self.device)[None], dim=-1
        )
        bundle = ray_bundle(origin, direction)
        # the collider gives the ray the same near/far bounds as rays of rendered cameras
        self.picked_descriptor = self.get_outputs(self.collider(bundle))["descriptors"][0].float()
        if getattr(self.viewer_control, "viewer", None) is not None:
            self.viewer_control.unregister_pointer_cb()

    def descriptor_colours(self, descriptors: Tensor) -> Tensor:
        """RGB in [0, 1] through the viewer's fixed PCA projection."""
        return self.descriptor_pca(descriptors)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        # checkpoints written before the shared FixedPCAColouring stored pca_mean/basis/range/fitted
        for name in ("mean", "basis", "range", "fitted"):
            old = f"{prefix}pca_{name}"
            if old in state_dict:
                state_dict[f"{prefix}descriptor_pca.{name}"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, ray_bundle):  # type: ignore[override]
        if isinstance(ray_bundle, Cameras):
            return self.render_descriptor_image(ray_bundle)
        return super().forward(ray_bundle)

    def render_descriptor_image(self, camera: Cameras) -> Dict[str, Tensor]:
        """Render one ray per ``stride x stride`` block of ``camera``'s image (see module docstring)."""
        small = copy.deepcopy(camera)
        small.rescale_output_resolution(1.0 / self.config.stride)
        h, w = int(small.height[0, 0]), int(small.width[0, 0])
        rays = small.generate_rays(camera_indices=0, keep_shape=True).flatten()
        cam_idx = (camera.metadata or {}).get("cam_idx", 0)
        rays.camera_indices = torch.full_like(rays.camera_indices, int(cam_idx))
        rays = self.collider(rays)
        outputs = self.get_outputs(rays)
        outputs["points"] = (rays.origins + rays.directions * outputs["expected_depth"]).detach()
        outputs["map_shape"] = torch.tensor([h, w])
        return outputs

    # ------------------------------------------------------------------ training
    def _image_batch(self, outputs, batch) -> Tuple[Tensor, Tensor, int, int]:
        h, w = (int(v) for v in outputs["map_shape"])
        s = self.config.stride
        image = batch["image"][..., :3].to(self.device).float()
        full = image[: h * s, : w * s].permute(2, 0, 1)[None]
        small = torch.nn.functional.avg_pool2d(full, s)[0].permute(1, 2, 0)
        return full, small, h, w

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        if "map_shape" not in outputs:
            return super().get_metrics_dict(outputs, batch)
        _, small, h, w = self._image_batch(outputs, batch)
        metrics = {"psnr": self.psnr(outputs["rgb"].view(h, w, 3), small)}
        if self.training:
            metrics["distortion"] = distortion_loss(outputs["weights_list"], outputs["ray_samples_list"])
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        if "map_shape" not in outputs:
            return super().get_loss_dict(outputs, batch, metrics_dict)
        cfg = self.config
        full, small, h, w = self._image_batch(outputs, batch)
        rgb = outputs["rgb"].view(h, w, 3)
        loss = {"rgb_loss": self.rgb_loss(small, rgb), "ssim_loss": cfg.ssim_mult * losses.dssim(rgb, small)}
        loss["depth_tv_loss"] = cfg.tv_mult * losses.depth_tv_patches(
            outputs["expected_depth"].view(h, w), cfg.tv_patch_size, cfg.tv_num_patches, self._generator
        )
        image_desc = self.cnn(full)[0].permute(1, 2, 0).reshape(h * w, -1)
        rendered_desc = outputs["descriptors"]
        xyz = outputs["points"] * self.metres_per_unit
        if cfg.descriptor_loss == "contrastive":
            loss["descriptor_contrastive_loss"] = cfg.descriptor_loss_mult * losses.contrastive_loss(
                image_desc,
                rendered_desc,
                xyz,
                cfg.margin_lambda,
                cfg.contrastive_temperature,
                cfg.contrastive_max_cells,
                self._generator,
            )
        else:
            loss["descriptor_pos_loss"] = cfg.descriptor_loss_mult * losses.positive_loss(image_desc, rendered_desc)
            loss["descriptor_neg_loss"] = cfg.descriptor_loss_mult * losses.negative_loss(
                image_desc, rendered_desc, xyz, cfg.margin_lambda, cfg.num_permutations, self._generator
            )
        if self.training and cfg.depth_loss_mult > 0 and "depth_image" in batch:
            # z-depth at the pixel nearest to each cell centre (stride * i + stride / 2)
            s = cfg.stride
            depth = batch["depth_image"].to(self.device)[s // 2 :: s, s // 2 :: s][:h, :w]
            loss["depth_loss"] = self.depth_supervision_loss(outputs, depth.reshape(h * w, 1))
        if self.training:
            loss["interlevel_loss"] = cfg.interlevel_loss_mult * interlevel_loss(
                outputs["weights_list"], outputs["ray_samples_list"]
            )
            loss["distortion_loss"] = cfg.distortion_loss_mult * metrics_dict["distortion"]
            if not bool(self.descriptor_pca.fitted) or (cfg.pca_refit_every and self.step % cfg.pca_refit_every == 0):
                self.descriptor_pca.fit(rendered_desc)
        return loss

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        callbacks = super().get_training_callbacks(attrs)

        def set_step(step: int) -> None:
            self.step = step

        callbacks.append(TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], set_step))
        return callbacks

    @torch.no_grad()
    def query_descriptors(self, image: Tensor) -> Tensor:
        """CNN descriptor map ``(H/4, W/4, D)`` of an ``(H, W, 3)`` image in [0, 1]."""
        return self.cnn(image[..., :3].permute(2, 0, 1)[None].float().to(self.device))[0].permute(1, 2, 0)
