"""Dataparser specifications registered with Nerfstudio (entry point ``nerfstudio.dataparser_configs``)."""

from importlib.metadata import entry_points
from pathlib import Path
from typing import Dict, Optional

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from nerfloc_plugins.data.cambridge import CambridgeDataParserConfig
from nerfloc_plugins.data.colmap_model import ColmapDataParserConfig
from nerfloc_plugins.data.nerfstudio_transforms import TransformsDataParserConfig
from nerfloc_plugins.data.posed_frames_dataparser import PosedFramesDataParser
from nerfloc_plugins.data.replica import ReplicaDataParserConfig
from nerfloc_plugins.data.sevenscenes import SevenScenesDataParserConfig
from nerfloc_plugins.data.twelvescenes import TwelveScenesDataParserConfig

sevenscenes_data = DataParserSpecification(
    config=SevenScenesDataParserConfig(),
    description="7-Scenes layout (seq-XX/frame-XXXXXX.{color,depth,pose}), RGB-D, metric poses.",
)
cambridge_data = DataParserSpecification(
    config=CambridgeDataParserConfig(),
    description="Cambridge Landmarks (dataset_{train,test}.txt + reconstruction.nvm focal lengths).",
)
twelvescenes_data = DataParserSpecification(
    config=TwelveScenesDataParserConfig(),
    description="12-Scenes (data/frame-XXXXXX.*, info.txt intrinsics, split.txt: first sequence = queries).",
)
replica_data = DataParserSpecification(
    config=ReplicaDataParserConfig(),
    description="Replica in NICE-SLAM layout (results/frame*.jpg, depth*.png, traj.txt).",
)
colmap_data = DataParserSpecification(
    config=ColmapDataParserConfig(),
    description="COLMAP sparse model (sparse/0 + images/), any camera model (undistorted), SfM or sensor depth.",
)
transforms_data = DataParserSpecification(
    config=TransformsDataParserConfig(),
    description="ns-process-data output (transforms.json), poses in the capture's frame, depth or SfM depth.",
)


def detect_layout(data: Path) -> Optional[str]:
    """The nerfloc dataparser a scene folder's files call for: ``transforms-data`` (a
    ``transforms.json``), ``colmap-data`` (``sparse/0``), ``sevenscenes-data`` (``TrainSplit.txt``);
    ``None`` when none of these is there."""
    data = Path(data)
    if (data / "transforms.json").is_file():
        return "transforms-data"
    if any((data / "sparse" / "0" / f"images{ext}").is_file() for ext in (".bin", ".txt")):
        return "colmap-data"
    if (data / "TrainSplit.txt").is_file():
        return "sevenscenes-data"
    return None


ENTRY_POINT_GROUP = "nerfstudio.dataparser_configs"


def discover_dataparsers() -> Dict[str, DataParserSpecification]:
    """Every dataparser registered under Nerfstudio's ``nerfstudio.dataparser_configs`` entry points
    whose parser reads posed frames (a :class:`PosedFramesDataParser`: what the classical map and
    ``ns-localize-baseline`` need), by entry-point name, sorted; nerfloc's own and a third-party
    plugin's alike (no hand list: one module plus one entry point adds one)."""
    found: Dict[str, DataParserSpecification] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = entry.load()
        except Exception:  # noqa: BLE001 - another plugin's broken entry point is not ours to raise
            continue
        target = getattr(getattr(spec, "config", None), "_target", None)
        if isinstance(target, type) and issubclass(target, PosedFramesDataParser):
            found[entry.name] = spec
    return dict(sorted(found.items()))
