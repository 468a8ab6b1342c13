"""Method specifications of PoseMap / PMNet: ``posemap-nerf``, ``posemap-apr``, ``posemap-align``
(and their ``-cpu`` presets).  The three stages after the stage-1 NeRF (``nerfloc-nerfacto``):

1. ``ns-train posemap-nerf --data NERF_RUN/config.yml``: NeRF-P's pose branch + decoder on the frozen NeRF;
2. ``ns-train posemap-apr --data POSEMAP_NERF_RUN/config.yml``: APRNet (PMNet) with L_pose, L_image,
   L_posemap and L_rvs;
3. ``ns-train posemap-align --data POSEMAP_APR_RUN/config.yml``: self-supervised alignment on
   unlabelled images (PMNet_ud).

Paper settings (Sec. 4.1): C = 256, decoder 1536-256-128-12, Adam 1e-4 for APRNet, RVS
±0.2 m / ±10° (indoor), alignment batch 1 at 1e-5.  Step counts and the NeRF-P learning rate are
not given in the paper (ours below).  The CPU presets keep NeRF-P (C = 256), train APRNet on a 0.25-wide
VGG16-BN layout from scratch at half the image size (no ImageNet weights exist offline; 1/64 of the FLOPs) and shorten the runs; their RVS views come from a pool of 32 re-rendered every 100 steps instead
of new views every step (rendering a view costs ~0.1 s on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nerfstudio.configs.base_config import MachineConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import CosineDecaySchedulerConfig
from nerfstudio.plugins.types import MethodSpecification

from nerfloc_plugins.methods.posemap.posemap_apr_pipeline import PoseMapAPRDataManagerConfig, PoseMapAPRPipelineConfig
from nerfloc_plugins.methods.posemap.posemap_aprnet import APRConfig
from nerfloc_plugins.methods.posemap.posemap_nerf_pipeline import (
    PoseMapNerfDataManagerConfig,
    PoseMapNerfPipelineConfig,
)
from nerfloc_plugins.nerf.trainer import NerflocTrainerConfig


@dataclass
class PoseMapNerfTrainerConfig(NerflocTrainerConfig):
    """Typed ``pipeline`` so that tyro exposes ``--pipeline.model.*`` / ``--pipeline.datamanager.*``."""

    pipeline: PoseMapNerfPipelineConfig = field(default_factory=PoseMapNerfPipelineConfig)


@dataclass
class PoseMapAPRTrainerConfig(NerflocTrainerConfig):
    """Typed ``pipeline`` (see :class:`PoseMapNerfTrainerConfig`)."""

    pipeline: PoseMapAPRPipelineConfig = field(default_factory=PoseMapAPRPipelineConfig)


def _common(name: str, steps: int, cpu: bool, eval_every: int) -> dict:
    common = dict(
        method_name=name,
        steps_per_eval_batch=eval_every,
        steps_per_eval_image=eval_every,
        steps_per_eval_all_images=1_000_000,
        steps_per_save=steps,
        max_num_iterations=steps,
        mixed_precision=not cpu,
        vis="tensorboard",
    )
    if cpu:
        common["machine"] = MachineConfig(device_type="cpu")
    return common


def posemap_nerf_method(name: str, steps: int, batch: int, lr: float, cpu: bool) -> MethodSpecification:
    config = PoseMapNerfTrainerConfig(
        **_common(name, steps, cpu, eval_every=100 if cpu else 1000),
        pipeline=PoseMapNerfPipelineConfig(datamanager=PoseMapNerfDataManagerConfig(batch_size=batch)),
        optimizers={
            "posemap": {
                "optimizer": AdamOptimizerConfig(lr=lr),
                "scheduler": CosineDecaySchedulerConfig(warm_up_end=0, learning_rate_alpha=0.05, max_steps=steps),
            }
        },
    )
    where = " (CPU preset)" if cpu else ""
    return MethodSpecification(
        config=config,
        description=f"PoseMap NeRF-P stage 2{where}: pose branch + decoder on a frozen nerfloc-nerfacto run (--data RUN/config.yml).",
    )


def posemap_apr_method(name: str, steps: int, cpu: bool, align: bool) -> MethodSpecification:
    if align:
        datamanager = PoseMapAPRDataManagerConfig(stage="align", batch_size=1)
        lr = 1e-5
    else:
        datamanager = PoseMapAPRDataManagerConfig(
            batch_size=4, rvs_pool_size=32 if cpu else 4, rvs_refresh_every=100 if cpu else 1
        )
        lr = 1e-4
    config = PoseMapAPRTrainerConfig(
        **_common(name, steps, cpu, eval_every=100 if cpu else 1000),
        pipeline=PoseMapAPRPipelineConfig(
            datamanager=datamanager, model=APRConfig(width=0.25, input_scale=0.5) if cpu else APRConfig()
        ),
        # gradient-norm clip 1.0 (ours): gradients through PoseMap rendering at poses far from the
        # truth are large early in training; without it the pose loss grows (docs/posemap.md)
        optimizers={"apr": {"optimizer": AdamOptimizerConfig(lr=lr, max_norm=1.0), "scheduler": None}},
    )
    where = " (CPU preset)" if cpu else ""
    if align:
        what = f"PoseMap self-supervised alignment (PMNet_ud){where} of a posemap-apr run (--data APR_RUN/config.yml) on unlabelled images."
    else:
        what = f"PoseMap APRNet (PMNet){where} on a frozen posemap-nerf run (--data POSEMAP_NERF_RUN/config.yml)."
    return MethodSpecification(config=config, description=what)


posemap_nerf = posemap_nerf_method("posemap-nerf", steps=10000, batch=8, lr=1e-3, cpu=False)
posemap_nerf_cpu = posemap_nerf_method("posemap-nerf-cpu", steps=600, batch=8, lr=3e-3, cpu=True)
posemap_apr = posemap_apr_method("posemap-apr", steps=30000, cpu=False, align=False)
posemap_apr_cpu = posemap_apr_method("posemap-apr-cpu", steps=600, cpu=True, align=False)
posemap_align = posemap_apr_method("posemap-align", steps=2000, cpu=False, align=True)
posemap_align_cpu = posemap_apr_method("posemap-align-cpu", steps=200, cpu=True, align=True)
