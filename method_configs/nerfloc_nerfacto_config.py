"""Method specifications of the base method ``nerfloc-nerfacto`` (and its CPU preset).

Defaults follow Nerfstudio's ``nerfacto`` except:
* the camera optimiser is off: localization datasets come with accurate metric poses and
  the map frame must stay the dataset's frame;
* data come from nerfloc dataparsers through :class:`NerflocDataset` (RGB + metric depth,
  never a downloaded monocular depth network);
* depth supervision (``depth_loss_mult`` 0.05, URF loss, 1 cm sigma) wherever the dataset has depth
  (7-Scenes, 12-Scenes, generated rooms; a no-op on RGB-only captures such as Cambridge): every
  method localizes against the map's rendered depth, which RGB alone leaves semi-transparent.

The GPU preset keeps Nerfacto's unbounded field (scene contraction) and near/far planes, so it serves
outdoor scenes too; the CPU preset bounds the field to the scene box and 0.02-4 m for indoor rooms.
"""

from __future__ import annotations

from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from nerfloc_plugins.data.nerfloc_dataset import NerflocDataset
from nerfloc_plugins.data.sevenscenes import SevenScenesDataParserConfig
from nerfloc_plugins.nerf.nerfloc_nerfacto_model import NerflocNerfactoModelConfig
from nerfloc_plugins.nerf.trainer import NerflocTrainerConfig


def nerfacto_optimizers(lr: float = 1e-2, max_steps: int = 200000) -> dict:
    """Nerfacto's optimiser set-up for the proposal networks and the field."""
    return {
        group: {
            "optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=max_steps),
        }
        for group in ("proposal_networks", "fields")
    }


DEPTH_LOSS_MULT = 0.05
"""Weight of depth supervision of both nerfloc-nerfacto presets and every CPU preset (used only where the
dataset has depth)."""

CPU_MODEL_SETTINGS = dict(
    eval_num_rays_per_chunk=1 << 13,
    average_init_density=0.01,
    implementation="torch",
    log2_hashmap_size=16,
    max_res=512,
    num_nerf_samples_per_ray=32,
    num_proposal_samples_per_ray=(64, 32),
    proposal_net_args_list=[
        {"hidden_dim": 16, "log2_hashmap_size": 15, "num_levels": 5, "max_res": 64, "use_linear": False},
        {"hidden_dim": 16, "log2_hashmap_size": 15, "num_levels": 5, "max_res": 128, "use_linear": False},
    ],
    depth_loss_mult=DEPTH_LOSS_MULT,
    # indoor RGB-D scenes fit the scene box (dataparser scene_bounds="auto"): bounded field
    disable_scene_contraction=True,
    proposal_initial_sampler="uniform",
    near_plane=0.02,
    far_plane=4.0,
)
"""Model settings of every CPU preset: small hash grids and sample counts, a bounded field, and
depth supervision (used when the dataset has depth)."""

nerfloc_nerfacto = MethodSpecification(
    config=NerflocTrainerConfig(
        method_name="nerfloc-nerfacto",
        steps_per_eval_batch=500,
        steps_per_save=2000,
        max_num_iterations=30000,
        mixed_precision=True,
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                _target=VanillaDataManager[NerflocDataset],
                dataparser=SevenScenesDataParserConfig(),
                train_num_rays_per_batch=4096,
                eval_num_rays_per_batch=4096,
            ),
            model=NerflocNerfactoModelConfig(
                eval_num_rays_per_chunk=1 << 15,
                average_init_density=0.01,
                camera_optimizer=CameraOptimizerConfig(mode="off"),
                depth_loss_mult=DEPTH_LOSS_MULT,
            ),
        ),
        optimizers=nerfacto_optimizers(),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    ),
    description="Offline-safe Nerfacto for localization maps; renders intermediate field features on request.",
)

nerfloc_nerfacto_cpu = MethodSpecification(
    config=NerflocTrainerConfig(
        method_name="nerfloc-nerfacto-cpu",
        steps_per_eval_batch=250,
        steps_per_eval_image=500,
        steps_per_save=500,
        max_num_iterations=1000,
        mixed_precision=False,
        machine=MachineConfig(device_type="cpu"),
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                _target=VanillaDataManager[NerflocDataset],
                dataparser=SevenScenesDataParserConfig(),
                train_num_rays_per_batch=1024,
                eval_num_rays_per_batch=1024,
            ),
            model=NerflocNerfactoModelConfig(camera_optimizer=CameraOptimizerConfig(mode="off"), **CPU_MODEL_SETTINGS),
        ),
        optimizers=nerfacto_optimizers(max_steps=5000),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 13),
        vis="tensorboard",
    ),
    description="nerfloc-nerfacto CPU preset (small hash grid, 1k rays, depth-supervised) for tests and the demo.",
)
