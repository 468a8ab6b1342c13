"""Method specifications of NeRFMatch (``nerfmatch``, ``nerfmatch-mini`` and CPU presets).

All train a matcher against a frozen ``nerfloc-nerfacto`` run given with ``--data RUN/config.yml``.
Paper settings (Sec. 5, implementation details): ConvFormer image backbone (first two stages),
D_c = 256, D_f = 128, window 5, Adam with learning rate 8e-4 (Mini) / 4e-4 (full), batch 16,
30 / 50 epochs of 10 000 pairs (18 750 / 31 250 steps), cosine annealing.  The CPU presets keep
the architecture but shrink widths, attention depth and batch so they train in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nerfstudio.configs.base_config import MachineConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import CosineDecaySchedulerConfig
from nerfstudio.plugins.types import MethodSpecification

from nerfloc_plugins.methods.nerfmatch.nerfmatch_encoder import ImageEncoderConfig
from nerfloc_plugins.methods.nerfmatch.nerfmatch_matcher import MatcherConfig
from nerfloc_plugins.methods.nerfmatch.nerfmatch_model import NerfMatchModelConfig
from nerfloc_plugins.methods.nerfmatch.nerfmatch_pipeline import NerfMatchDataManagerConfig, NerfMatchPipelineConfig
from nerfloc_plugins.nerf.trainer import NerflocTrainerConfig


@dataclass
class NerfMatchTrainerConfig(NerflocTrainerConfig):
    """Trainer config whose ``pipeline`` field is typed as NeRFMatch's pipeline, so that tyro
    exposes ``--pipeline.model.*`` / ``--pipeline.datamanager.*`` directly (with the base
    class's ``VanillaPipelineConfig`` annotation it would hide them behind a subcommand)."""

    pipeline: NerfMatchPipelineConfig = field(default_factory=NerfMatchPipelineConfig)


def nerfmatch_optimizers(lr: float, max_steps: int) -> dict:
    """Adam with cosine annealing (the paper's schedule; a short warm-up)."""
    return {
        "nerfmatch": {
            "optimizer": AdamOptimizerConfig(lr=lr),
            "scheduler": CosineDecaySchedulerConfig(
                warm_up_end=min(500, max_steps // 20), learning_rate_alpha=0.01, max_steps=max_steps
            ),
        }
    }


def nerfmatch_method(name: str, variant: str, lr: float, steps: int, cpu: bool) -> MethodSpecification:
    if cpu:
        encoder = ImageEncoderConfig(backbone="convformer_s18", coarse_dim=128, fine_dim=64)
        # match threshold 0.01: after minutes of CPU training the dual-softmax scores of correct
        # matches stay far below the paper's 0.2 (docs/nerfmatch.md)
        matcher = MatcherConfig(variant=variant, coarse_dim=128, fine_dim=64, num_self_layers=2, num_cross_layers=1, num_heads=4, match_threshold=0.01)  # fmt: skip
        datamanager = NerfMatchDataManagerConfig(batch_size=4, num_eval_pairs=8)
    else:
        encoder, matcher, datamanager = (
            ImageEncoderConfig(),
            MatcherConfig(variant=variant),
            NerfMatchDataManagerConfig(),
        )
    config = NerfMatchTrainerConfig(
        method_name=name,
        steps_per_eval_batch=100 if cpu else 500,
        steps_per_eval_image=100 if cpu else 1000,
        steps_per_eval_all_images=1_000_000,
        steps_per_save=500 if cpu else 2000,
        max_num_iterations=steps,
        mixed_precision=not cpu,  # cosine similarities, softmax in float32 under autocast
        pipeline=NerfMatchPipelineConfig(
            datamanager=datamanager, model=NerfMatchModelConfig(encoder=encoder, matcher=matcher)
        ),
        optimizers=nerfmatch_optimizers(lr, steps),
        vis="tensorboard",
    )
    if cpu:
        config.machine = MachineConfig(device_type="cpu")
    kind = (
        "NeRFMatch-Mini (dual-softmax on image and NeRF features)"
        if variant == "mini"
        else "NeRFMatch (coarse-to-fine attention matcher)"
    )
    where = "CPU preset (small widths, batch 4) " if cpu else ""
    return MethodSpecification(
        config=config, description=f"{kind} {where}on a frozen nerfloc-nerfacto run (--data RUN/config.yml)."
    )


nerfmatch_mini = nerfmatch_method("nerfmatch-mini", "mini", 8e-4, 18750, cpu=False)
nerfmatch = nerfmatch_method("nerfmatch", "full", 4e-4, 31250, cpu=False)
nerfmatch_mini_cpu = nerfmatch_method("nerfmatch-mini-cpu", "mini", 8e-4, 4000, cpu=True)
nerfmatch_cpu = nerfmatch_method("nerfmatch-cpu", "full", 4e-4, 1500, cpu=True)
