"""Input dataset that adds metric depth (when the dataparser found depth maps).

Unlike Nerfstudio's ``DepthDataset`` it never runs a monocular depth network (which would
download weights): without depth files it is a plain RGB dataset.  Depth is returned as
``depth_image`` (``H x W x 1``, float32) in **Nerfstudio units** (metres times
``dataparser_scale``), 0 where the sensor had no reading, so Nerfstudio's depth losses and
pixel samplers can use it unchanged.
"""

from __future__ import annotations

from typing import Dict

import torch
from nerfstudio.data.datasets.base_dataset import InputDataset

from nerfloc_plugins.data.frames import DatasetFormatError, load_depth_meters

NOT_A_NERFLOC_PARSER = (
    "nerfloc methods read nerfloc dataparsers (their poses map back to the capture's metric frame): "
    "for an ns-process-data folder use 'transforms-data', for a COLMAP model 'colmap-data' "
    "(also sevenscenes-data, cambridge-data, twelvescenes-data, replica-data)"
)


class NerflocDataset(InputDataset):
    """RGB (+ optional metric depth) dataset for nerfloc dataparsers."""

    exclude_batch_keys_from_device = InputDataset.exclude_batch_keys_from_device + ["depth_image"]

    def __init__(self, dataparser_outputs, scale_factor: float = 1.0) -> None:
        if "frame_names" not in dataparser_outputs.metadata:
            raise DatasetFormatError(NOT_A_NERFLOC_PARSER)
        super().__init__(dataparser_outputs, scale_factor)

    @property
    def has_depth(self) -> bool:
        return self.metadata.get("depth_filenames") is not None

    def get_metadata(self, data: Dict) -> Dict:
        if not self.has_depth:
            return {}
        idx = data["image_idx"]
        depth = load_depth_meters(
            self.metadata["depth_filenames"][idx],
            unit_scale=self.metadata["depth_unit_scale_factor"],
            invalid_values=self.metadata.get("depth_invalid_values", (0,)),
            size=(int(self.cameras.width[idx]), int(self.cameras.height[idx])),
        )
        depth_ns = torch.from_numpy(depth)[..., None] * self._dataparser_outputs.dataparser_scale
        return {"depth_image": depth_ns}
