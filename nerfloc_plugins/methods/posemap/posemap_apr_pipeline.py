"""``ns-train posemap-apr`` / ``posemap-align``: PMNet's APRNet on a frozen NeRF-P (PoseMap Sec. 3.1, 3.3).

* ``posemap-apr --data POSEMAP_NERF_RUN/config.yml`` (stage ``supervised``): real training
  images with poses; ``L_pose + L_image + L_posemap + L_rvs`` (``methods/posemap/posemap_losses.py``).
  Renderings at the training poses (for ``L_image``) are made once; random-view-synthesis
  views come from a pool of ``rvs_pool_size`` perturbed poses re-rendered every
  ``rvs_refresh_every`` steps (1 and the batch size: new views every step, the paper's
  online RVS; the CPU presets use a larger pool refreshed less often).
* ``posemap-align --data POSEMAP_APR_RUN/config.yml`` (stage ``align``, PMNet_ud): starts from
  that run's weights and fine-tunes on unlabelled images (every ``unlabelled_every``-th image
  of ``unlabelled_split``, their poses unused) with ``L_image + L_posemap``; the view at each
  predicted pose is rendered on the fly.

Eval (both): APR poses of the held-out images (median cm / deg, orthonormalised).  The model
stores the NeRF's dataparser transform and the input size, so ``ns-localize`` uses the APR
without loading any map (``methods/posemap/posemap_localizer.py``).  Poses: OpenCV c2w, NeRF frame.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Literal, Optional, Type

import torch
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn

from nerfloc_plugins.data.frames import Intrinsics, PosedFrame
from nerfloc_plugins.data.images import load_rgb
from nerfloc_plugins.geometry.pose_errors import pose_errors_c2w
from nerfloc_plugins.methods.posemap.posemap_aprnet import (
    APRConfig,
    APRLossConfig,
    APRNet,
    PerturbationConfig,
    perturb_poses,
    pose_loss,
)
from nerfloc_plugins.methods.posemap.posemap_losses import align_losses, apr_losses
from nerfloc_plugins.methods.posemap.posemap_nerf_pipeline import ns_poses, require_run_config, single_intrinsics
from nerfloc_plugins.methods.posemap.posemap_nerfp import PoseMapRenderer, orthonormalise_pose
from nerfloc_plugins.nerf.field_renderer import FieldRenderer
from nerfloc_plugins.nerf.frozen_run_pipeline import FrozenFieldPipeline, FrozenRunDataManager
from nerfloc_plugins.nerf.run_files import load_run, load_trained_state, read_run_config

Stage = Literal["supervised", "align"]


def render_views(renderer: FieldRenderer, poses: Tensor, intrinsics: Intrinsics, scale: float) -> Tensor:
    """``(N, 3, H, W)`` RGB rendered at NeRF-frame OpenCV poses ``(N, 3, 4)``: at ``scale`` of
    the image size, upsampled to it (on the poses' device)."""
    small = intrinsics.scaled_to(max(8, round(intrinsics.width * scale)), max(8, round(intrinsics.height * scale)))
    out = []
    for pose in poses.detach().double().cpu().numpy():
        rgb = renderer.render(renderer.c2w_from_ns_opencv(pose), small)["rgb"]
        out.append(torch.from_numpy(rgb).permute(2, 0, 1)[None].float())
    views = torch.cat(out).to(poses.device)
    return nn.functional.interpolate(views, size=(intrinsics.height, intrinsics.width), mode="bilinear")


def load_images(frames: List[PosedFrame], device: torch.device | str) -> Tensor:
    return torch.stack([torch.from_numpy(load_rgb(f.image_path)).permute(2, 0, 1) for f in frames]).to(device)


@dataclass
class PoseMapAPRDataManagerConfig(InstantiateConfig):
    _target: Type = field(default_factory=lambda: PoseMapAPRDataManager)
    data: Optional[Path] = None
    """``supervised``: config.yml of a ``posemap-nerf`` run; ``align``: of a ``posemap-apr`` run."""
    stage: Stage = "supervised"
    batch_size: int = 4
    render_scale: float = 0.5
    """Renderings are made at this fraction of the image size and upsampled."""
    perturbation: PerturbationConfig = field(default_factory=PerturbationConfig)
    """RVS bounds (paper: 0.2 m / 10 deg indoor, 3 m / 7.5 deg outdoor)."""
    rvs_pool_size: int = 4
    rvs_refresh_every: int = 1
    unlabelled_split: Literal["test", "train"] = "test"
    """``align``: where the unlabelled images come from (their poses are never read)."""
    unlabelled_every: int = 10
    """``align``: every n-th image of the split (paper: 10 % indoor, 50 % outdoor)."""
    seed: int = 0


class PoseMapAPRDataManager(FrozenRunDataManager):
    """Images and poses of the frozen NeRF-P's dataset, renderings, RVS views."""

    def __init__(self, config: PoseMapAPRDataManagerConfig, device: str | torch.device = "cpu", **_: Any) -> None:
        self.config = config
        self.device = device
        if config.stage == "align":
            self.init_from = require_run_config(config.data, "posemap-align", "posemap-apr")
            posemap_run = Path(read_run_config(self.init_from).pipeline.datamanager.data)
        else:
            self.init_from = None
            posemap_run = require_run_config(config.data, "posemap-apr", "posemap-nerf")
        _, nerf_p, _, _ = load_run(posemap_run)
        self.posemaps: PoseMapRenderer = nerf_p.posemaps
        for p in self.posemaps.parameters():
            p.requires_grad_(False)
        self.renderer: FieldRenderer = nerf_p.datamanager.renderer
        self.train_frames = self.renderer.frames("train")
        self.test_frames = self.renderer.frames("test") or self.train_frames
        self.intrinsics = single_intrinsics(self.train_frames + self.test_frames, f"{posemap_run}")
        self.metres_per_unit = 1.0 / self.renderer.transform.scale
        self.train_poses = ns_poses(self.renderer, self.train_frames, device)
        self.test_poses = ns_poses(self.renderer, self.test_frames, device)
        self.train_images = load_images(self.train_frames, device)
        self.test_images = load_images(self.test_frames, device)
        source = self.test_frames if config.unlabelled_split == "test" else self.train_frames
        self.unlabelled = load_images(source[:: max(1, config.unlabelled_every)], device)
        self._rng = random.Random(config.seed)
        self._gen = torch.Generator().manual_seed(config.seed)
        self._rendered: Optional[Tensor] = None
        self._rvs: Optional[tuple[Tensor, Tensor]] = None

    def get_train_rays_per_batch(self) -> int:
        return self.config.batch_size * self.intrinsics.width * self.intrinsics.height  # pixels per batch

    def render(self, poses: Tensor) -> Tensor:
        return render_views(self.renderer, poses, self.intrinsics, self.config.render_scale)

    def rendered_train_views(self) -> Tensor:
        """Renderings at every training pose (made once)."""
        if self._rendered is None:
            self._rendered = self.render(self.train_poses)
        return self._rendered

    def rvs_views(self, step: int) -> tuple[Tensor, Tensor]:
        """``(images, poses)`` of perturbed training poses (a pool, re-rendered every ``rvs_refresh_every``)."""
        c = self.config
        if self._rvs is None or step % max(1, c.rvs_refresh_every) == 0:
            base = self.train_poses[torch.randint(0, len(self.train_poses), (c.rvs_pool_size,), generator=self._gen)]
            poses = perturb_poses(base, c.perturbation, self.metres_per_unit, self._gen)
            self._rvs = (self.render(poses), poses)
        images, poses = self._rvs
        j = self._rng.sample(range(len(poses)), min(c.batch_size, len(poses)))
        return images[j], poses[j]

    def next_train(self, step: int) -> Dict[str, Tensor]:
        c = self.config
        if c.stage == "align":
            i = self._rng.sample(range(len(self.unlabelled)), min(c.batch_size, len(self.unlabelled)))
            negatives = self._rng.sample(range(len(self.train_poses)), len(i))
            return {"images": self.unlabelled[i], "negatives": self.rendered_train_views()[negatives]}
        idx = self._rng.sample(range(len(self.train_images)), min(c.batch_size, len(self.train_images)))
        batch = {"images": self.train_images[idx], "poses": self.train_poses[idx]}
        batch["rendered"] = self.rendered_train_views()[idx]
        batch["rvs_images"], batch["rvs_poses"] = self.rvs_views(step)
        return batch

    def eval_batches(self) -> Iterator[Dict[str, Tensor]]:
        bs = max(8, self.config.batch_size)
        for start in range(0, len(self.test_poses), bs):
            yield {"images": self.test_images[start : start + bs], "poses": self.test_poses[start : start + bs]}


class PoseMapAPRModel(nn.Module):
    """APRNet plus what turns its output into a dataset-frame pose without the map
    (buffers: the NeRF's dataparser transform and scale, the training image size)."""

    def __init__(self, net: APRNet) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("dataparser_transform", torch.eye(4)[:3].double())
        self.register_buffer("dataparser_scale", torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer("image_size", torch.tensor([0, 0]))
        """(width, height) of the training images; queries are resized to it."""
        self.stage: Stage = "supervised"
        self.losses = APRLossConfig()
        self.data: Optional[PoseMapAPRDataManager] = None  # frozen NeRF-P and renderer (training only)
        self.metres_per_unit = 1.0

    def attach(self, data: PoseMapAPRDataManager, stage: Stage, losses: APRLossConfig) -> None:
        """Training set-up: the frozen NeRF-P / renderer and the frame of its NeRF."""
        self.data, self.stage, self.losses = data, stage, losses
        self.metres_per_unit = data.metres_per_unit
        self.dataparser_transform.copy_(torch.from_numpy(data.renderer.transform.transform))
        self.dataparser_scale.fill_(data.renderer.transform.scale)
        self.image_size.copy_(torch.tensor([data.intrinsics.width, data.intrinsics.height]))

    def forward(self, batch: Dict[str, Tensor]) -> Dict[str, Any]:
        data = self.data
        if not self.training or data is None:
            return {"raw": self.net(batch["images"], with_features=False)[0]}
        if self.stage == "align":
            with torch.no_grad():
                predicted = orthonormalise_pose(self.net(batch["images"], with_features=False)[0])
            rendered = data.render(predicted)
            losses = align_losses(
                self.net, data.posemaps, batch["images"], predicted, rendered, batch["negatives"],
                data.intrinsics, self.losses,
            )  # fmt: skip
            return {"losses": losses}
        losses = apr_losses(
            self.net, data.posemaps, batch["images"], batch["poses"], batch["rendered"], data.intrinsics,
            self.losses, (batch["rvs_images"], batch["rvs_poses"]),
        )  # fmt: skip
        return {"losses": losses}

    def get_loss_dict(self, outputs: Dict[str, Any], batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        if "losses" in outputs:
            return outputs["losses"]
        return {"pose": pose_loss(outputs["raw"], batch["poses"])}

    def get_metrics_dict(self, outputs: Dict[str, Any], batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        if "raw" not in outputs or "poses" not in batch:
            return {}
        pred = orthonormalise_pose(outputs["raw"].detach())
        t, r = pose_errors_c2w(pred, batch["poses"], self.metres_per_unit)
        return {"median_translation_cm": 100 * t.median(), "median_rotation_deg": r.median()}


@dataclass
class PoseMapAPRPipelineConfig(InstantiateConfig):
    _target: Type = field(default_factory=lambda: PoseMapAPRPipeline)
    datamanager: PoseMapAPRDataManagerConfig = field(default_factory=PoseMapAPRDataManagerConfig)
    model: APRConfig = field(default_factory=APRConfig)
    losses: APRLossConfig = field(default_factory=APRLossConfig)


def model_state(pipeline_state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """The :class:`PoseMapAPRModel` entries of a checkpoint's pipeline state."""
    prefix = "_model."
    return {k[len(prefix) :]: v for k, v in pipeline_state.items() if k.startswith(prefix)}


def network_config(load_config: Path) -> APRConfig:
    """APRNet architecture of an APR run: an ``align`` run keeps the one of the run it started
    from, whatever its own config.yml's ``model`` says."""
    config = read_run_config(load_config)
    while config.pipeline.datamanager.stage == "align":
        config = read_run_config(Path(config.pipeline.datamanager.data))
    return config.pipeline.model


class PoseMapAPRPipeline(FrozenFieldPipeline):
    param_group = "apr"
    datamanager: PoseMapAPRDataManager

    def build_model(self) -> nn.Module:
        dm, stage = self.datamanager, self.config.datamanager.stage
        if stage == "align":
            self.config.model = network_config(dm.init_from)
        side = min(dm.intrinsics.width, dm.intrinsics.height) * self.config.model.input_scale
        if side < 32:
            raise ValueError(
                f"{dm.config.data}: images of {dm.intrinsics.width}x{dm.intrinsics.height} at "
                f"--pipeline.model.input-scale {self.config.model.input_scale} are under 32 px (VGG16's five pools)"
            )
        model = PoseMapAPRModel(APRNet(self.config.model, load_weights=stage == "supervised"))
        if stage == "align":
            _, state = load_trained_state(dm.init_from)
            model.load_state_dict(model_state(state))
            model.net.freeze_batch_norm = True  # batch 1: keep the supervised run's statistics
            model.net.train(model.net.training)  # applies it now (modules start in training mode)
        else:
            model.net.pose_offset.copy_(dm.train_poses.mean(dim=0).flatten().cpu())
        model.attach(dm, stage, self.config.losses)
        return model

    def eval_images(self) -> Dict[str, Tensor]:
        """The first held-out image beside the NeRF's rendering at its APR pose."""
        dm = self.datamanager
        image = dm.test_images[:1]
        pose = orthonormalise_pose(self._model.net(image, with_features=False)[0])
        return {"apr_query_vs_render": torch.cat([image[0], dm.render(pose)[0]], dim=2).permute(1, 2, 0)}
