"""Training pipeline of NeuraLoc: pixel rays with depth and teacher targets, plus keypoint rays.

Each step (on top of Nerfstudio's ray batch from an RGB-D nerfloc dataset):

* ``surface_t``: the ray distance of the sensor depth reading (z-depth times the ray's
  ``directions_norm``, Nerfstudio units) goes into the ray bundle for depth-guided sampling and
  into the batch for the depth / SDF losses;
* ``teacher_descriptors`` / ``teacher_context``: the 2D teachers' maps read at each ray's pixel;
* L_kl (eq. 10): rays through ``kl_keypoints`` keypoints of one random training image are
  rendered and their descriptors aligned with the keypoints' 2D descriptors.

Teacher maps (and the depth at their keypoints) are computed once per training image; the maps are cached on disk
(:mod:`nerfloc_plugins.methods.neuraloc.neuraloc_teacher_cache`) and held as one stack per map
(:class:`~nerfloc_plugins.methods.neuraloc.neuraloc_teachers.StackedMaps`, dtype ``teacher_dtype``) on the
training device, or on the host when they would take more than ``teacher_gpu_fraction`` of the GPU
(~6.7 MB per 640x480 frame in float16: ~47 GB for a 7,000-frame scene).  A ray batch reads the
teachers of all the images it touches in one gather.  Nothing of the teachers is saved in checkpoints.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Type

import torch
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from nerfloc_plugins.methods.neuraloc.neuraloc_losses import similarity_alignment_loss
from nerfloc_plugins.methods.neuraloc.neuraloc_model import NeuraLocModel
from nerfloc_plugins.methods.neuraloc.neuraloc_teacher_cache import teacher_outputs_for_dataset
from nerfloc_plugins.methods.neuraloc.neuraloc_teachers import StackedMaps


@dataclass
class NeuraLocPipelineConfig(VanillaPipelineConfig):
    _target: Type = field(default_factory=lambda: NeuraLocPipeline)
    teacher_dtype: Literal["float16", "float32"] = "float16"
    teacher_storage: Literal["auto", "device", "host"] = "auto"
    """Where the teacher maps live: the training device, the host (only the sampled values move to
    the device per batch), or ``auto``: the device unless they exceed ``teacher_gpu_fraction`` of it."""
    teacher_gpu_fraction: float = 0.3
    seed: int = 0


class NeuraLocPipeline(VanillaPipeline):
    config: NeuraLocPipelineConfig
    model: NeuraLocModel

    def __init__(self, config: NeuraLocPipelineConfig, device: str, test_mode: str = "val", **kwargs) -> None:
        super().__init__(config, device, test_mode=test_mode, **kwargs)
        dataset = self.datamanager.train_dataset
        if not getattr(dataset, "has_depth", False):
            raise ValueError(
                f"{self.datamanager.config.dataparser.data}: NeuraLoc trains on RGB-D data "
                "(expected depth maps for the training frames)"
            )
        self.keypoints: List[Tensor] = []
        """``(K, 2)`` teacher keypoints (pixels) of each training image."""
        self.keypoint_descriptors: List[Tensor] = []
        """``(K, Dg)`` their 2D descriptors."""
        self.keypoint_depths: List[Tensor] = []
        """Sensor z-depth (Nerfstudio units) at each training image's teacher keypoints."""
        self.descriptor_maps: Optional[StackedMaps] = None
        self.context_maps: Optional[StackedMaps] = None
        self._train_cameras = dataset.cameras.to(self.device)
        self._rng = random.Random(config.seed)
        if test_mode == "val":  # training; inference / test loads need no teachers
            self._load_teachers(dataset)

    def _load_teachers(self, dataset) -> None:
        config = self.config
        dtype = torch.float16 if config.teacher_dtype == "float16" else torch.float32
        storage = self._teacher_storage(dataset, dtype)
        self.descriptor_maps, self.context_maps = StackedMaps(storage, dtype), StackedMaps(storage, dtype)
        for out in teacher_outputs_for_dataset(dataset, self.model.config.teachers, self.device):
            self.keypoints.append(out.keypoints.to(self.device).float())
            self.keypoint_descriptors.append(out.keypoint_descriptors.to(self.device, dtype))
            self.descriptor_maps.add(out.descriptor_map, out.image_size)
            self.context_maps.add(out.context_map, out.image_size)
        self.descriptor_maps.finish()
        self.context_maps.finish()
        self.keypoint_depths = [self._depth_at_keypoints(i) for i in range(len(self.keypoints))]
        size = (self.descriptor_maps.nbytes() + self.context_maps.nbytes()) / 2**20
        CONSOLE.print(f"NeuraLoc teachers: {len(self.keypoints)} training images, {size:.0f} MiB on {storage}")

    def _teacher_storage(self, dataset, dtype: torch.dtype) -> torch.device:
        """The device of the teacher maps (see ``teacher_storage``), estimated from the image sizes."""
        device = torch.device(self.device)
        if self.config.teacher_storage == "host":
            return torch.device("cpu")
        if self.config.teacher_storage == "device" or device.type != "cuda":
            return device
        teachers = self.model.config.teachers
        pixels = float((dataset.cameras.width * dataset.cameras.height).sum())
        channels = teachers.descriptor_dim / teachers.descriptor_stride**2 + teachers.context_dim / 8**2
        estimate = pixels * channels * torch.finfo(dtype).bits / 8 * 2  # stacking holds them twice for a moment
        total = torch.cuda.get_device_properties(device).total_memory
        return device if estimate <= self.config.teacher_gpu_fraction * total else torch.device("cpu")

    # ------------------------------------------------------------------ batches
    def _attach_depth(self, ray_bundle, batch: Dict, guide_sampling: bool) -> None:
        if "depth_image" not in batch:
            return
        z = batch["depth_image"].to(self.device).reshape(-1, 1)
        surface_t = z * ray_bundle.metadata["directions_norm"].to(self.device)
        batch["surface_t"] = surface_t
        if guide_sampling:
            ray_bundle.metadata["surface_t"] = surface_t

    def _attach_teachers(self, batch: Dict) -> None:
        """Teacher features at each ray's pixel (``indices``: image, row, column)."""
        idx = batch["indices"].long()
        uv = torch.stack([idx[:, 2], idx[:, 1]], dim=1).float() + 0.5
        batch["teacher_descriptors"] = self.descriptor_maps.sample(idx[:, 0], uv, self.device)
        batch["teacher_context"] = self.context_maps.sample(idx[:, 0], uv, self.device)
        batch["teacher_valid"] = torch.ones(len(idx), dtype=torch.bool, device=self.device)

    def _depth_at_keypoints(self, image: int) -> Tensor:
        """``(K,)`` depth-map values at training image ``image``'s keypoints (read once)."""
        depth = self.datamanager.train_dataset.get_metadata({"image_idx": image})["depth_image"][..., 0]
        uv = self.keypoints[image].cpu()
        rows = uv[:, 1].long().clamp(0, depth.shape[0] - 1)
        cols = uv[:, 0].long().clamp(0, depth.shape[1] - 1)
        return depth[rows, cols].to(self.device)

    def keypoint_rays(self) -> Optional[tuple]:
        """Rays through up to ``kl_keypoints`` keypoints of one random training image (with
        depth-guided sampling) and the keypoints' 2D descriptors."""
        image = self._rng.randrange(len(self.keypoints))
        k = len(self.keypoints[image])
        if k < 2:
            return None
        chosen = torch.tensor(self._rng.sample(range(k), min(k, self.model.config.kl_keypoints)), device=self.device)
        uv = self.keypoints[image][chosen]
        bundle = self._train_cameras.generate_rays(
            camera_indices=torch.full((len(uv), 1), image, dtype=torch.long, device=self.device),
            coords=torch.stack([uv[:, 1], uv[:, 0]], dim=1),
        )
        z = self.keypoint_depths[image][chosen][:, None]
        bundle.metadata["surface_t"] = z * bundle.metadata["directions_norm"]
        return bundle, self.keypoint_descriptors[image][chosen].float()

    # ------------------------------------------------------------------- losses
    def get_train_loss_dict(self, step: int):
        ray_bundle, batch = self.datamanager.next_train(step)
        self._attach_depth(ray_bundle, batch, guide_sampling=True)
        self._attach_teachers(batch)
        outputs = self.model(ray_bundle)
        metrics = self.model.get_metrics_dict(outputs, batch)
        loss = self.model.get_loss_dict(outputs, batch, metrics)
        cfg = self.model.config
        if cfg.kl_mult > 0:
            rays = self.keypoint_rays()
            if rays is not None:
                bundle, desc_2d = rays
                rendered = self.model(bundle)["descriptors"]
                loss["kl_loss"] = cfg.kl_mult * similarity_alignment_loss(desc_2d, rendered, cfg.kl_temperature)
        return outputs, loss, metrics

    def get_eval_loss_dict(self, step: int):
        self.eval()
        ray_bundle, batch = self.datamanager.next_eval(step)
        self._attach_depth(ray_bundle, batch, guide_sampling=False)
        outputs = self.model(ray_bundle)
        metrics = self.model.get_metrics_dict(outputs, batch)
        loss = self.model.get_loss_dict(outputs, batch, metrics)
        self.train()
        return outputs, loss, metrics
