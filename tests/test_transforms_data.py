"""``transforms-data``: an ns-process-data folder (transforms.json written by Nerfstudio's own
``colmap_to_json`` from a COLMAP model of the example scene), poses in the capture's frame, SfM or
``depth_file_path`` depth, pose-free queries, and one-line errors; Nerfstudio's own parser is
refused by nerfloc methods in one line."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nerfloc_plugins.data.frames import DatasetFormatError, load_depth_meters
from nerfloc_plugins.data.hloc_files import read_poses
from nerfloc_plugins.data.nerfstudio_transforms import TransformsDataParserConfig
from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.geometry.poses import invert_rigid

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "demo_room"


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """``DATA/images``, ``DATA/colmap/sparse/0`` and ``DATA/transforms.json`` as ns-process-data leaves them."""
    from nerfstudio.process_data.colmap_utils import colmap_to_json
    from test_colmap_data import write_colmap_scene

    base = tmp_path_factory.mktemp("processed")
    truth = write_colmap_scene(base / "colmap_project")
    data = base / "capture"
    data.mkdir()
    shutil.copytree(base / "colmap_project" / "images", data / "images")
    shutil.copytree(base / "colmap_project" / "sparse" / "0", data / "colmap" / "sparse" / "0")
    assert colmap_to_json(data / "colmap" / "sparse" / "0", data) == len(truth)
    return data, truth


def test_transforms_written_by_nerfstudio_read_in_the_capture_frame(processed):
    data, truth = processed
    meta = json.loads((data / "transforms.json").read_text())
    assert {"fl_x", "fl_y", "cx", "cy", "w", "h", "camera_model", "frames", "applied_transform"} <= set(meta)
    # Nerfstudio's own parser reads the same file (field names as Nerfstudio writes them)
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    outputs = NerfstudioDataParserConfig(data=data, eval_mode="all").setup().get_dataparser_outputs("train")
    assert len(outputs.image_filenames) == len(truth)
    parser = TransformsDataParserConfig(data=data, query_prefix="images/seq-03/").setup()
    train, test = parser.frames("train"), parser.frames("test")
    assert len(train) == 100 and len(test) == 20
    for frame in train[:4] + test[:4]:
        name = frame.name.removeprefix("images/")
        assert pose_error(invert_rigid(frame.c2w), truth[name])[0] < 1e-6  # applied_transform undone
    # SfM depth from colmap/sparse/0, where the true depth has it
    frame = train[7]
    sfm = load_depth_meters(frame.depth_path, parser.depth_unit_scale_factor, parser.depth_invalid_values)
    true = load_depth_meters(EXAMPLE / frame.name.removeprefix("images/").replace("color.png", "depth.png"), 1e-3)
    known = sfm > 0
    assert known.mean() > 0.02 and np.median(np.abs(sfm[known] - true[known])) < 0.01
    scaled = TransformsDataParserConfig(data=data, query_prefix="images/seq-03/", scale=0.5).setup().frames("train")
    assert np.allclose(scaled[0].c2w[:3, 3], 0.5 * train[0].c2w[:3, 3])


def test_baseline_on_processed_capture_with_depth_files(processed, tmp_path):
    """``depth_file_path`` maps (mm, Nerfstudio's convention) are used when present; the baseline
    then localizes a folder of pose-free query images within 2 cm of the truth kept aside."""
    import tyro

    from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline

    data, truth = processed
    with_depth = tmp_path / "capture"
    shutil.copytree(data, with_depth, ignore=shutil.ignore_patterns("nerfloc_cache"))
    meta = json.loads((with_depth / "transforms.json").read_text())
    for frame in meta["frames"]:
        name = frame["file_path"].removeprefix("images/")
        target = with_depth / "depths" / name.replace("color.png", "depth.png")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLE / name.replace("color.png", "depth.png"), target)
        frame["depth_file_path"] = str(target.relative_to(with_depth))
    (with_depth / "transforms.json").write_text(json.dumps(meta))
    parser = TransformsDataParserConfig(data=with_depth, query_prefix="images/seq-03/").setup()
    assert parser.frames("train")[0].depth_path.parent.parent.name == "depths"
    photos = tmp_path / "photos"
    photos.mkdir()
    names = [f"seq-03/frame-{i:06d}.color.png" for i in range(1, 20, 3)]
    for name in names:
        shutil.copy(EXAMPLE / name, photos / Path(name).name)
    out = tmp_path / "out"
    args = ["--data", str(with_depth), "--output-dir", str(out), "--queries", str(photos)]
    tyro.cli(LocalizeBaseline, args=args + ["transforms-data", "--query-prefix", "images/seq-03/"]).main()
    poses = read_poses(out / "poses.txt")
    errors = [pose_error(poses[Path(n).name], truth[n])[0] * 100 for n in names]
    assert np.median(errors) < 2.0 and max(errors) < 10.0, errors


def test_bad_transforms_give_one_line(processed, tmp_path):
    data, _ = processed
    meta = json.loads((data / "transforms.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "images").symlink_to(data / "images")
    cases = [
        ({k: v for k, v in meta.items() if k != "fl_x"}, r"transforms.json: frame 0 \(.*\): no 'fl_x'"),
        (
            {**meta, "camera_model": "OPENCV_FISHEYE"},
            r"camera_model 'OPENCV_FISHEYE': nerfloc localizes pinhole images",
        ),
        (
            {**meta, "frames": [{**meta["frames"][0], "file_path": "./images/nope.png"}]},
            r"image 'images/nope.png' not found",
        ),
        ({**meta, "frames": []}, r"expected an object with a non-empty 'frames' list"),
        ({**meta, "w": 320}, r"transforms.json says 320x120"),
    ]
    for content, message in cases:
        (bad / "transforms.json").write_text(json.dumps(content))
        with pytest.raises(DatasetFormatError, match=message):
            TransformsDataParserConfig(data=bad, test_every=0, colmap_model=Path("none")).setup().frames("train")
    (bad / "transforms.json").write_text("{not json")
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        TransformsDataParserConfig(data=bad).setup().frames("train")


def test_nerfstudio_parser_is_refused_by_nerfloc_methods_in_one_line(processed):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    from nerfloc_plugins.data.nerfloc_dataset import NerflocDataset

    data, _ = processed
    outputs = NerfstudioDataParserConfig(data=data, eval_mode="all").setup().get_dataparser_outputs("train")
    with pytest.raises(ValueError, match="for an ns-process-data folder use 'transforms-data'"):
        NerflocDataset(outputs)
