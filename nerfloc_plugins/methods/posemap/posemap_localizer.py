"""PMNet (PoseMap APRNet) in the shared localization pipeline: one forward pass per query.

* :class:`APRPoseRegressor` loads a ``posemap-apr`` / ``posemap-align`` run from its
  ``config.yml`` and checkpoint alone (no NeRF, no map: the run stores the NeRF's dataparser
  transform and the input size) and maps an RGB image to a **dataset-frame OpenCV c2w** pose.
* :class:`APRLocalizer` (``ns-localize --load-config APR_RUN/config.yml``) reports that pose
  directly (``LocalizerKind.REGRESSES_POSE``: no retrieval, matching or PnP).
* ``ns-localize --load-config OTHER_RUN/config.yml --pose-prior APR_RUN/config.yml`` uses the
  APR pose instead of retrieval as the prior of another method's render -> match -> PnP ->
  refinement loop (the regressor is a ``PosePrior``; :data:`POSEMAP_LOCALIZER` says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from nerfloc_plugins.data.frames import PosedFrame, load_frame_rgb
from nerfloc_plugins.geometry.poses import DataparserTransform, flip_opencv_opengl
from nerfloc_plugins.localize.interface.localizer import DatasetFramesMixin, PoseRegressionLocalizer, QueryDescription
from nerfloc_plugins.localize.interface.specs import LocalizerSpec
from nerfloc_plugins.methods.posemap.posemap_apr_pipeline import (
    PoseMapAPRModel,
    PoseMapAPRPipelineConfig,
    model_state,
    network_config,
)
from nerfloc_plugins.methods.posemap.posemap_aprnet import APRConfig, APRNet
from nerfloc_plugins.methods.posemap.posemap_nerfp import orthonormalise_pose
from nerfloc_plugins.nerf.run_files import load_trained_state, read_run_config
from nerfloc_plugins.utils.devices import resolve_device
from nerfloc_plugins.utils.parameters import parameter_bytes


def nerf_run_config(load_config: Path):
    """The config object of the NeRF run an APR run was trained on (following ``--data``:
    align -> apr -> posemap-nerf -> nerf; configs only, no checkpoint is read)."""
    config = read_run_config(load_config)
    for _ in range(3):
        data = Path(config.pipeline.datamanager.data)
        if not data.is_file():
            raise FileNotFoundError(f"{load_config}: the run it was trained on, {data}, is missing")
        config = read_run_config(data)
        if hasattr(config.pipeline.datamanager, "dataparser"):
            return config
    raise ValueError(f"{load_config}: cannot find the NeRF run this APR was trained on")


class APRPoseRegressor:
    """A trained APRNet that maps query images to dataset-frame c2w poses (also a ``PosePrior``)."""

    name = "APR"

    def __init__(self, load_config: Path, device: Optional[str | torch.device] = None) -> None:
        self.load_config = Path(load_config)
        config, state = load_trained_state(self.load_config)
        if not isinstance(config.pipeline, PoseMapAPRPipelineConfig):
            raise ValueError(f"{load_config}: not a posemap-apr / posemap-align run (got {config.method_name})")
        self.method_name = config.method_name
        self.device = resolve_device(device)
        self.model = PoseMapAPRModel(APRNet(network_config(self.load_config), load_weights=False))
        self.model.load_state_dict(model_state(state))
        self.model.to(self.device).eval()
        self.transform = DataparserTransform(
            self.model.dataparser_transform.cpu().numpy(), float(self.model.dataparser_scale)
        )
        width, height = (int(v) for v in self.model.image_size)
        self.size = (height, width)

    def size_bytes(self) -> int:
        return parameter_bytes(self.model.net)

    @torch.no_grad()
    def predict(self, images: np.ndarray | List[np.ndarray]) -> np.ndarray:
        """``(H, W, 3)`` float RGB image(s) in [0, 1] -> ``(B, 4, 4)`` dataset-frame OpenCV c2w."""
        batch = [images] if isinstance(images, np.ndarray) else list(images)
        x = torch.stack([torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).float() for im in batch])
        x = x.to(self.device)
        if tuple(x.shape[-2:]) != self.size:
            x = torch.nn.functional.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        c2w_ns = orthonormalise_pose(self.model.net(x, with_features=False)[0]).double().cpu().numpy()
        return self.transform.c2w_to_dataset(flip_opencv_opengl(c2w_ns))

    def prior_frame(self, query: PosedFrame) -> PosedFrame:
        """A reference frame at the APR pose of ``query`` (for another localizer's prior)."""
        c2w = self.predict(load_frame_rgb(query))[0]
        return PosedFrame(name="apr-prior", image_path=query.image_path, c2w=c2w, intrinsics=query.intrinsics)


class APRLocalizer(DatasetFramesMixin, PoseRegressionLocalizer):
    """Absolute pose regression: the query's pose from one forward pass."""

    def __init__(self, load_config: Path, device: Optional[str] = None) -> None:
        self.regressor = APRPoseRegressor(load_config, device)
        nerf_config = nerf_run_config(Path(load_config))
        self.parser = nerf_config.pipeline.datamanager.dataparser.setup()
        self.scene = Path(self.parser.config.data).name
        self.name = "pmnet_ud" if "align" in self.regressor.method_name else "pmnet"
        self.device = self.regressor.device

    def describe_query(self, frame: PosedFrame) -> QueryDescription:
        return QueryDescription(
            keypoints=np.zeros((0, 2)),
            descriptors=torch.zeros((0, 1)),
            intrinsics=frame.intrinsics,
            image=load_frame_rgb(frame),
        )

    def regress_pose(self, query: QueryDescription) -> np.ndarray:
        return self.regressor.predict(query.image)[0]

    def map_size_bytes(self) -> int:
        return self.regressor.size_bytes()


def _build(run_file: Path, options: None) -> APRLocalizer:
    return APRLocalizer(run_file)


POSEMAP_LOCALIZER = LocalizerSpec(
    name="posemap",
    serves=APRConfig,
    build=_build,
    pose_prior=APRPoseRegressor,
    help="PMNet (posemap-apr / posemap-align runs): the APR's pose, or the pose prior of another map",
)
