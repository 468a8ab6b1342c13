"""``nerfloc-nerfacto``: offline-safe Nerfacto that can render its intermediate features.

Differences from Nerfstudio's ``nerfacto`` (everything else is Nerfacto's own code path):

* **Offline-safe construction.** Stock Nerfacto builds an LPIPS metric whose AlexNet
  backbone is downloaded on first use.  Here LPIPS is built only when those weights are
  already in the Torch hub cache (``lpips="auto"``); otherwise it is skipped with one
  warning and ``lpips`` is left out of the evaluation metrics.
* **Feature outputs.** ``feature_outputs`` lists field layers (``hash``, ``hidden``,
  ``geo``; see :mod:`nerfloc_plugins.nerf.nerfloc_nerfacto_field`) that are volume
  rendered with the colour weights into outputs ``feature_<layer>`` (``F = sum_i w_i f_i``)
  and shown in the viewer.  ``point`` output: the expected 3D point ``X = sum_i w_i X_i``
  in Nerfstudio's normalised frame, rendered whenever features are.
* **Optional depth supervision** (``depth_loss_mult > 0``) from the ``depth_image`` that
  nerfloc datasets provide for RGB-D scenes, with Nerfstudio's depth losses.
* Subclasses add their own heads through :meth:`render_extra_outputs`, which receives the
  samples, field outputs and weights of the final sampling round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Tuple, Type

import numpy as np
import torch
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.field_components.spatial_distortions import SceneContraction
from nerfstudio.fields.density_fields import HashMLPDensityField
from nerfstudio.model_components import losses
from nerfstudio.model_components.losses import DepthLossType, MSELoss, scale_gradients_by_distance_squared
from nerfstudio.model_components.ray_samplers import ProposalNetworkSampler, UniformSampler
from nerfstudio.model_components.renderers import (
    AccumulationRenderer,
    DepthRenderer,
    NormalsRenderer,
    RGBRenderer,
    SemanticRenderer,
)
from nerfstudio.model_components.scene_colliders import NearFarCollider
from nerfstudio.model_components.shaders import NormalsShader
from nerfstudio.models.base_model import Model
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from nerfloc_plugins.nerf.nerfloc_nerfacto_field import (
    FeatureLayer,
    NerflocNerfactoField,
    feature_output_name,
)

ALEXNET_WEIGHTS_FILE = "alexnet-owt-7be5be79.pth"


def lpips_weights_cached() -> bool:
    """True when torchvision's AlexNet weights (LPIPS backbone) are in the Torch hub cache."""
    return (Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS_FILE).is_file()


@dataclass
class NerflocNerfactoModelConfig(NerfactoModelConfig):
    """Nerfacto options plus feature outputs, depth supervision and offline LPIPS."""

    _target: Type = field(default_factory=lambda: NerflocNerfactoModel)
    feature_outputs: Tuple[FeatureLayer, ...] = ()
    """Field layers to volume-render as ``feature_<layer>`` outputs (hash, hidden, geo)."""
    num_layers_base: int = 2
    """Layers of the density MLP (Nerfacto: 2, i.e. one hidden layer)."""
    lpips: Literal["auto", "off"] = "auto"
    """LPIPS metric: "auto" builds it only when its AlexNet weights are cached (no download)."""
    depth_loss_mult: float = 0.0
    """Weight of depth supervision (0 = RGB only, as plain Nerfacto)."""
    depth_loss_type: DepthLossType = DepthLossType.URF
    """Nerfstudio depth loss used when ``depth_loss_mult > 0``."""
    depth_sigma: float = 0.01
    """Depth uncertainty (Nerfstudio units) of the depth loss."""


class NerflocNerfactoModel(NerfactoModel):
    """Nerfacto with readable features; see module docstring."""

    config: NerflocNerfactoModelConfig

    def populate_modules(self) -> None:
        # Nerfacto's module set, built here (not via NerfactoModel.populate_modules) because
        # the field class differs and LPIPS must not be constructed without cached weights.
        Model.populate_modules(self)
        cfg = self.config
        scene_contraction = None if cfg.disable_scene_contraction else SceneContraction(order=float("inf"))
        self.field = self.build_field(
            self.scene_box.aabb,
            hidden_dim=cfg.hidden_dim,
            num_levels=cfg.num_levels,
            max_res=cfg.max_res,
            base_res=cfg.base_res,
            features_per_level=cfg.features_per_level,
            log2_hashmap_size=cfg.log2_hashmap_size,
            hidden_dim_color=cfg.hidden_dim_color,
            hidden_dim_transient=cfg.hidden_dim_transient,
            spatial_distortion=scene_contraction,
            num_images=self.num_train_data,
            use_pred_normals=cfg.predict_normals,
            use_average_appearance_embedding=cfg.use_average_appearance_embedding,
            appearance_embedding_dim=cfg.appearance_embed_dim if cfg.use_appearance_embedding else 0,
            average_init_density=cfg.average_init_density,
            implementation=cfg.implementation,
            num_layers_base=cfg.num_layers_base,
        )
        self.camera_optimizer = cfg.camera_optimizer.setup(num_cameras=self.num_train_data, device="cpu")

        self.proposal_networks = torch.nn.ModuleList()
        self.density_fns = []
        num_prop = cfg.num_proposal_iterations
        args_list = cfg.proposal_net_args_list[:1] if cfg.use_same_proposal_network else cfg.proposal_net_args_list
        for i in range(1 if cfg.use_same_proposal_network else num_prop):
            network = HashMLPDensityField(
                self.scene_box.aabb,
                spatial_distortion=scene_contraction,
                **args_list[min(i, len(args_list) - 1)],
                average_init_density=cfg.average_init_density,
                implementation=cfg.implementation,
            )
            self.proposal_networks.append(network)
        nets = [self.proposal_networks[0]] * num_prop if cfg.use_same_proposal_network else self.proposal_networks
        self.density_fns.extend([net.density_fn for net in nets])

        def update_schedule(step: int) -> float:
            return float(
                np.clip(
                    np.interp(step, [0, cfg.proposal_warmup], [0, cfg.proposal_update_every]),
                    1,
                    cfg.proposal_update_every,
                )
            )

        initial_sampler = (
            UniformSampler(single_jitter=cfg.use_single_jitter) if cfg.proposal_initial_sampler == "uniform" else None
        )
        self.proposal_sampler = ProposalNetworkSampler(
            num_nerf_samples_per_ray=cfg.num_nerf_samples_per_ray,
            num_proposal_samples_per_ray=cfg.num_proposal_samples_per_ray,
            num_proposal_network_iterations=num_prop,
            single_jitter=cfg.use_single_jitter,
            update_sched=update_schedule,
            initial_sampler=initial_sampler,
        )
        self.collider = NearFarCollider(near_plane=cfg.near_plane, far_plane=cfg.far_plane)
        self.renderer_rgb = RGBRenderer(background_color=cfg.background_color)
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer(method="median")
        self.renderer_expected_depth = DepthRenderer(method="expected")
        self.renderer_normals = NormalsRenderer()
        self.renderer_feature = SemanticRenderer()
        self.normals_shader = NormalsShader()
        self.rgb_loss = MSELoss()
        self.step = 0

        from torchmetrics.functional import structural_similarity_index_measure
        from torchmetrics.image import PeakSignalNoiseRatio

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = structural_similarity_index_measure
        if cfg.lpips == "auto" and lpips_weights_cached():
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            self.lpips = LearnedPerceptualImagePatchSimilarity(normalize=True)
            return
        self.lpips = _UnavailableLPIPS()
        if cfg.lpips == "auto":
            CONSOLE.print(
                f"[yellow]LPIPS skipped: AlexNet weights ({ALEXNET_WEIGHTS_FILE}) are not in the Torch hub cache "
                "and nerfloc never downloads them."
            )

    def build_field(self, aabb, **kwargs) -> NerflocNerfactoField:
        """The field; subclasses return a subclass of :class:`NerflocNerfactoField`."""
        return NerflocNerfactoField(aabb, **kwargs)

    def sample_feature_layers(self) -> Tuple[str, ...]:
        """Field layers evaluated per sample (rendered ones plus what subclasses' heads need)."""
        return tuple(self.config.feature_outputs)

    def render_extra_outputs(
        self, ray_samples: RaySamples, field_outputs: Dict, features: Dict[str, Tensor], weights: Tensor
    ) -> Dict[str, Tensor]:
        """Outputs rendered from the final samples; subclasses extend this hook."""
        outputs = {
            feature_output_name(name): self.renderer_feature(features[name], weights=weights)
            for name in self.config.feature_outputs
        }
        if self.config.feature_outputs:
            outputs["point"] = torch.sum(weights * ray_samples.frustums.get_positions(), dim=-2)
        return outputs

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor | List]:
        if self.training:
            self.camera_optimizer.apply_to_raybundle(ray_bundle)
        ray_samples, weights_list, ray_samples_list = self.proposal_sampler(ray_bundle, density_fns=self.density_fns)
        field_outputs, features = self.field.forward_with_features(ray_samples, self.sample_feature_layers())
        if self.config.use_gradient_scaling:
            field_outputs = scale_gradients_by_distance_squared(field_outputs, ray_samples)
        weights = ray_samples.get_weights(field_outputs[FieldHeadNames.DENSITY])
        weights_list.append(weights)
        ray_samples_list.append(ray_samples)

        outputs: Dict[str, Tensor | List] = {
            "rgb": self.renderer_rgb(rgb=field_outputs[FieldHeadNames.RGB], weights=weights),
            "accumulation": self.renderer_accumulation(weights=weights),
            "expected_depth": self.renderer_expected_depth(weights=weights, ray_samples=ray_samples),
        }
        with torch.no_grad():
            outputs["depth"] = self.renderer_depth(weights=weights, ray_samples=ray_samples)
        outputs.update(self.render_extra_outputs(ray_samples, field_outputs, features, weights))
        if self.training:
            outputs["weights_list"] = weights_list
            outputs["ray_samples_list"] = ray_samples_list
            if self.config.depth_loss_mult > 0:
                outputs["directions_norm"] = ray_bundle.metadata["directions_norm"]
        for i in range(self.config.num_proposal_iterations):
            outputs[f"prop_depth_{i}"] = self.renderer_depth(weights=weights_list[i], ray_samples=ray_samples_list[i])
        return outputs

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)
        if self.training and self.config.depth_loss_mult > 0 and "depth_image" in batch:
            loss_dict["depth_loss"] = self.depth_supervision_loss(outputs, batch["depth_image"].to(self.device))
        return loss_dict

    def depth_supervision_loss(self, outputs: Dict, termination_depth: Tensor) -> Tensor:
        """Weighted Nerfstudio depth loss for rays with a z-depth reading ``(N, 1)`` (0 = none)."""
        valid = termination_depth[..., 0] > 0
        if not valid.any():
            return torch.zeros((), device=self.device)
        # only the final sampling round is supervised (its samples carry the weights)
        depth_loss = losses.depth_loss(
            weights=outputs["weights_list"][-1][valid],
            ray_samples=outputs["ray_samples_list"][-1][valid],
            termination_depth=termination_depth[valid],
            predicted_depth=outputs["expected_depth"][valid],
            sigma=torch.tensor(self.config.depth_sigma, device=self.device),
            directions_norm=outputs["directions_norm"][valid],
            is_euclidean=False,
            depth_loss_type=self.config.depth_loss_type,
        )
        return self.config.depth_loss_mult * depth_loss

    def get_image_metrics_and_images(self, outputs, batch):
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        if isinstance(self.lpips, _UnavailableLPIPS):
            metrics.pop("lpips", None)
        return metrics, images


class _UnavailableLPIPS:
    """Placeholder metric used when LPIPS weights are not cached; its value is dropped."""

    def __call__(self, *_args, **_kwargs) -> float:
        return float("nan")
