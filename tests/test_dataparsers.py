"""Dataparsers on small fixture files written by the tests."""

from pathlib import Path

import numpy as np
import pytest
from conftest import circle_poses, write_image
from PIL import Image

from nerfloc_plugins.data.cambridge import CambridgeDataParserConfig
from nerfloc_plugins.data.frames import DatasetFormatError
from nerfloc_plugins.data.nerfloc_dataset import NerflocDataset
from nerfloc_plugins.data.replica import ReplicaDataParserConfig
from nerfloc_plugins.data.sevenscenes import SevenScenesDataParserConfig
from nerfloc_plugins.data.twelvescenes import TwelveScenesDataParserConfig
from nerfloc_plugins.geometry.poses import DataparserTransform, invert_rigid, rotmat_to_qvec


def dataset_frame_poses(outputs) -> np.ndarray:
    transform = DataparserTransform(outputs.dataparser_transform.double().numpy(), outputs.dataparser_scale)
    return transform.c2w_to_dataset(outputs.cameras.camera_to_worlds.double().numpy())


def test_sevenscenes_splits_names_intrinsics_and_round_trip(sevenscenes_dir: Path):
    parser = SevenScenesDataParserConfig(data=sevenscenes_dir).setup()
    train = parser.get_dataparser_outputs("train")
    test = parser.get_dataparser_outputs("test")
    assert len(train.image_filenames) == 6 and len(test.image_filenames) == 2
    assert test.metadata["frame_names"] == ["seq-03/frame-000000.color.png", "seq-03/frame-000001.color.png"]
    # f = 525 px at 640x480, rescaled to 64x48
    assert float(train.cameras.fx[0]) == pytest.approx(52.5)
    assert float(train.cameras.cx[0]) == pytest.approx(32.0)
    # the normalisation comes from the train frames and is shared by the query split
    np.testing.assert_allclose(test.dataparser_transform, train.dataparser_transform)
    assert test.dataparser_scale == train.dataparser_scale
    # poses go back to the dataset frame exactly
    expected = np.stack(circle_poses(2, phase=0.25))
    np.testing.assert_allclose(dataset_frame_poses(test), expected, atol=1e-5)
    # with depth maps the scene box holds the cameras and the surfaces they see
    centres = train.cameras.camera_to_worlds[:, :3, 3].numpy()
    assert np.abs(centres).max() < 1.0
    transform = DataparserTransform(train.dataparser_transform.double().numpy(), train.dataparser_scale)
    surface = transform.points_to_nerfstudio(parser.depth_points(parser.frames("train")))
    assert np.percentile(np.abs(surface), 98) <= 1.0 and np.abs(surface).max() > 0.5


def test_camera_only_bounds_scale_centres_into_unit_box(sevenscenes_dir: Path):
    parser = SevenScenesDataParserConfig(data=sevenscenes_dir, scene_bounds="cameras").setup()
    train = parser.get_dataparser_outputs("train")
    assert float(train.cameras.camera_to_worlds[:, :3, 3].abs().max()) == pytest.approx(1.0, abs=1e-5)


def test_sevenscenes_depth_is_metric_scaled_and_invalid_is_zero(sevenscenes_dir: Path):
    outputs = SevenScenesDataParserConfig(data=sevenscenes_dir).setup().get_dataparser_outputs("train")
    depth = NerflocDataset(outputs)[0]["depth_image"]
    assert depth.shape == (48, 64, 1)
    assert float(depth[0, 0, 0]) == 0.0 and float(depth[0, 1, 0]) == 0.0  # 65535 and 0: no reading
    assert float(depth[10, 10, 0]) == pytest.approx(1.5 * outputs.dataparser_scale, rel=1e-5)


def test_sevenscenes_stride_and_cap(sevenscenes_dir: Path):
    parser = SevenScenesDataParserConfig(data=sevenscenes_dir, train_stride=2, max_train_frames=2).setup()
    outputs = parser.get_dataparser_outputs("train")
    assert outputs.metadata["frame_names"] == ["seq-01/frame-000000.color.png", "seq-01/frame-000002.color.png"]


def test_sevenscenes_bad_files_name_file_and_line(sevenscenes_dir: Path):
    (sevenscenes_dir / "TestSplit.txt").write_text("sequence3\nseq three\n")
    with pytest.raises(DatasetFormatError, match=r"TestSplit.txt:2: expected a line 'sequenceN'"):
        SevenScenesDataParserConfig(data=sevenscenes_dir).setup().get_dataparser_outputs("test")
    (sevenscenes_dir / "TestSplit.txt").write_text("sequence3\n")
    pose = sevenscenes_dir / "seq-03" / "frame-000001.pose.txt"
    pose.write_text("1 0 0 0\n0 1 0 0\n0 0 x 0\n0 0 0 1\n")
    with pytest.raises(DatasetFormatError, match=r"frame-000001.pose.txt:3: expected 4 numbers"):
        SevenScenesDataParserConfig(data=sevenscenes_dir).setup().get_dataparser_outputs("test")
    with pytest.raises(DatasetFormatError, match="does not exist"):
        SevenScenesDataParserConfig(data=sevenscenes_dir / "nope").setup().get_dataparser_outputs("train")


def write_cambridge(root: Path) -> list[np.ndarray]:
    poses = circle_poses(4, radius=5.0, height=2.0)
    lines = ["Visual Landmark Dataset V1", "ImageFile, Camera Position [X Y Z W P Q R]", ""]
    nvm = ["NVM_V3", "", str(len(poses))]
    for i, c2w in enumerate(poses):
        name = f"seq1/frame{i + 1:05d}.png"
        write_image(root / name, 96, 54, seed=i)
        q = rotmat_to_qvec(invert_rigid(c2w)[:3, :3])
        lines.append(f"{name} {' '.join(map(str, c2w[:3, 3]))} {' '.join(map(str, q))}")
        nvm.append(f"seq1/frame{i + 1:05d}.jpg 1600.0 1 0 0 0 0 0 0 0 0")
    lines.append("seq1/frame00099.png 0 0 0 0 0 0 0")  # broken entry (GreatCourt-style)
    (root / "dataset_train.txt").write_text("\n".join(lines[:3] + lines[3:5] + lines[-1:]) + "\n")
    (root / "dataset_test.txt").write_text("\n".join(lines[:3] + lines[5:7]) + "\n")
    (root / "reconstruction.nvm").write_text("\n".join(nvm) + "\n")
    return poses


def test_cambridge_poses_focal_and_broken_entries(tmp_path: Path):
    poses = write_cambridge(tmp_path)
    parser = CambridgeDataParserConfig(data=tmp_path).setup()
    train = parser.get_dataparser_outputs("train")
    test = parser.get_dataparser_outputs("test")
    assert len(train.image_filenames) == 2  # the all-zero entry was skipped
    assert float(train.cameras.fx[0]) == pytest.approx(1600.0 * 96 / 1920)
    assert float(train.cameras.cy[0]) == pytest.approx(27.0)
    np.testing.assert_allclose(dataset_frame_poses(test), np.stack(poses[2:4]), atol=1e-5)
    assert "depth_filenames" not in train.metadata


def test_cambridge_malformed_line(tmp_path: Path):
    write_cambridge(tmp_path)
    (tmp_path / "dataset_test.txt").write_text("h\nh\n\nseq1/frame00001.png 1 2 3\n")
    with pytest.raises(DatasetFormatError, match=r"dataset_test.txt:4: expected 'name X Y Z W P Q R'"):
        CambridgeDataParserConfig(data=tmp_path).setup().get_dataparser_outputs("test")


def write_twelvescenes(root: Path) -> list[np.ndarray]:
    poses = circle_poses(6)
    data = root / "data"
    for i, c2w in enumerate(poses):
        write_image(data / f"frame-{i:06d}.color.jpg", 80, 60, seed=i, suffix_format="JPEG")
        Image.fromarray(np.full((30, 40), 2000, dtype=np.uint16)).save(data / f"frame-{i:06d}.depth.png")
        text = "INF INF INF INF\n" * 4 if i == 4 else "\n".join(" ".join(map(str, r)) for r in c2w)
        (data / f"frame-{i:06d}.pose.txt").write_text(text)
    k = "1170.0 0 647.5 0 0 1170.0 483.5 0 0 0 1 0 0 0 0 1"
    (root / "info.txt").write_text(
        f"m_colorWidth = 1296\nm_colorHeight = 968\nm_depthShift = 1000\nm_calibrationColorIntrinsic = {k}\n"
    )
    (root / "split.txt").write_text(
        "sequence0 [frames=2]  [start=0 ; end=1]\nsequence1 [frames=4]  [start=2 ; end=5]\n"
    )
    return poses


def test_twelvescenes_split_info_and_inf_poses(tmp_path: Path):
    poses = write_twelvescenes(tmp_path)
    parser = TwelveScenesDataParserConfig(data=tmp_path).setup()
    train = parser.get_dataparser_outputs("train")
    test = parser.get_dataparser_outputs("test")
    assert test.metadata["frame_names"] == ["data/frame-000000.color.jpg", "data/frame-000001.color.jpg"]
    assert train.metadata["frame_names"] == [f"data/frame-{i:06d}.color.jpg" for i in (2, 3, 5)]  # 4 is INF
    assert float(train.cameras.fx[0]) == pytest.approx(1170.0 * 80 / 1296)
    np.testing.assert_allclose(dataset_frame_poses(test), np.stack(poses[:2]), atol=1e-5)
    depth = NerflocDataset(train)[0]["depth_image"]
    assert depth.shape == (60, 80, 1)  # 40x30 depth resized to the colour size
    assert float(depth[5, 5, 0]) == pytest.approx(2.0 * train.dataparser_scale, rel=1e-5)


def test_twelvescenes_missing_intrinsics(tmp_path: Path):
    write_twelvescenes(tmp_path)
    (tmp_path / "info.txt").write_text("m_colorWidth = 1296\nm_colorHeight = 968\n")
    with pytest.raises(DatasetFormatError, match=r"info.txt: missing 'm_calibrationColorIntrinsic'"):
        TwelveScenesDataParserConfig(data=tmp_path).setup().get_dataparser_outputs("train")


def write_replica(root: Path, n: int = 10, phase: float = 0.0) -> list[np.ndarray]:
    poses = circle_poses(n, phase=phase)
    for i in range(n):
        write_image(root / "results" / f"frame{i:06d}.jpg", 120, 68, seed=i, suffix_format="JPEG")
        Image.fromarray(np.full((68, 120), 13107, dtype=np.uint16)).save(root / "results" / f"depth{i:06d}.png")
    (root / "traj.txt").write_text("\n".join(" ".join(map(str, p.reshape(-1))) for p in poses) + "\n")
    return poses


def test_replica_holdout_and_second_sequence(tmp_path: Path):
    poses = write_replica(tmp_path / "room0")
    parser = ReplicaDataParserConfig(data=tmp_path / "room0", holdout_every=5).setup()
    train, test = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("test")
    assert test.metadata["frame_names"] == ["results/frame000004.jpg", "results/frame000009.jpg"]
    assert len(train.image_filenames) == 8
    assert float(train.cameras.fx[0]) == pytest.approx(60.0)
    np.testing.assert_allclose(dataset_frame_poses(test), np.stack([poses[4], poses[9]]), atol=1e-5)
    depth = NerflocDataset(train)[0]["depth_image"]
    assert float(depth[3, 3, 0]) == pytest.approx(2.0 * train.dataparser_scale, rel=1e-4)

    query_poses = write_replica(tmp_path / "room0_b", n=3, phase=0.1)
    parser = ReplicaDataParserConfig(data=tmp_path / "room0", test_data=tmp_path / "room0_b").setup()
    test = parser.get_dataparser_outputs("test")
    assert test.metadata["frame_names"][0] == "room0_b/results/frame000000.jpg"
    np.testing.assert_allclose(dataset_frame_poses(test), np.stack(query_poses), atol=1e-5)


def test_replica_bad_trajectory_line(tmp_path: Path):
    write_replica(tmp_path)
    with open(tmp_path / "traj.txt", "a") as f:
        f.write("1 2 3\n")
    with pytest.raises(DatasetFormatError, match=r"traj.txt:11: expected 16 numbers"):
        ReplicaDataParserConfig(data=tmp_path).setup().get_dataparser_outputs("train")
