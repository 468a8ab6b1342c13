"""SfM pseudo ground truth (``--pgt DIR``, visloc_pseudo_gt_limitations files): frames take its
poses and focal lengths, maps and errors live in its frame, results come out in its estimate format
and in the Map-free format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from nerfloc_plugins.data.errors import DatasetFormatError
from nerfloc_plugins.data.hloc_files import read_poses
from nerfloc_plugins.data.pseudo_gt import read_pgt_file
from nerfloc_plugins.data.sevenscenes import SevenScenesDataParserConfig
from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.geometry.poses import invert_rigid, qvec_tvec_from_w2c

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "demo_room"
SFM_FRAME = np.eye(4)
SFM_FRAME[:3, :3] = Rotation.from_euler("zx", [30, -10], degrees=True).as_matrix()
SFM_FRAME[:3, 3] = [1.0, -2.0, 0.5]
"""The pGT's world frame relative to the dataset's (what an SfM model's registration leaves)."""


def write_pgt(folder: Path, leave_out: dict) -> dict:
    """pGT files of the example scene in :data:`SFM_FRAME`, without ``leave_out[split]`` frames;
    returns ``split -> {name: c2w}``."""
    folder.mkdir(parents=True, exist_ok=True)
    parser = SevenScenesDataParserConfig(data=EXAMPLE).setup()
    written = {}
    for split in ("train", "test"):
        frames = parser.read_frames(split)
        lines, poses = [], {}
        for frame in frames[leave_out[split] :]:
            c2w = SFM_FRAME @ frame.c2w
            q, t = qvec_tvec_from_w2c(invert_rigid(c2w))
            lines.append(" ".join([frame.name, *(f"{v:.9f}" for v in (*q, *t)), "525.0"]))
            poses[frame.name] = c2w
        (folder / f"demo_room_{split}.txt").write_text("\n".join(lines) + "\n")
        written[split] = poses
    return written


def test_frames_take_the_pseudo_gt_poses_and_leave_out_unregistered_ones(tmp_path):
    written = write_pgt(tmp_path / "pgt", {"train": 3, "test": 1})
    parser = SevenScenesDataParserConfig(data=EXAMPLE, pgt=tmp_path / "pgt").setup()
    plain = SevenScenesDataParserConfig(data=EXAMPLE).setup()
    for split in ("train", "test"):
        frames = parser.frames(split)
        assert len(frames) == len(plain.frames(split)) - (3 if split == "train" else 1)
        for frame in frames:
            assert np.allclose(frame.c2w, written[split][frame.name], atol=1e-6)
    assert parser.frames("test")[0].intrinsics.fx == pytest.approx(
        525.0 * parser.frames("test")[0].intrinsics.width / 640
    )


def test_bad_pseudo_gt_is_a_one_line_error(tmp_path):
    folder = tmp_path / "pgt"
    write_pgt(folder, {"train": 0, "test": 0})
    lines = (folder / "demo_room_test.txt").read_text().splitlines()
    (folder / "demo_room_test.txt").write_text("\n".join([lines[0], lines[1].rsplit(" ", 1)[0]]) + "\n")
    with pytest.raises(DatasetFormatError, match=r"demo_room_test.txt:2: expected 'rgb_file qw qx qy qz tx ty tz f'"):
        read_pgt_file(folder / "demo_room_test.txt")
    (folder / "demo_room_train.txt").unlink()
    parser = SevenScenesDataParserConfig(data=EXAMPLE, pgt=folder).setup()
    with pytest.raises(
        DatasetFormatError, match="no pseudo ground truth for demo_room .looked for demo_room_train.txt"
    ):
        parser.frames("train")


@pytest.mark.slow
def test_baseline_localizes_in_the_pseudo_gt_frame_and_writes_both_estimate_formats(tmp_path):
    import tyro

    from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline

    written = write_pgt(tmp_path / "pgt", {"train": 0, "test": 1})
    out = tmp_path / "out"
    args = ["--data", str(EXAMPLE), "--output-dir", str(out), "--max-queries", "6",
            "sevenscenes-data", "--pgt", str(tmp_path / "pgt")]  # fmt: skip
    metrics = tyro.cli(LocalizeBaseline, args=args).main()
    assert metrics["num_queries"] == 6 and metrics["median_translation_cm"] < 2.0
    poses = read_poses(out / "poses.txt")  # the estimate format of visloc_pseudo_gt_limitations
    assert len(poses) == 6 and set(poses) <= set(written["test"])
    errors = [pose_error(w2c, invert_rigid(written["test"][name]))[0] * 100 for name, w2c in poses.items()]
    assert np.median(errors) < 2.0, errors
    mapfree = [line.split() for line in (out / "poses_mapfree.txt").read_text().splitlines()]
    assert [row[0] for row in mapfree] == list(poses) and all(len(row) == 9 for row in mapfree)
    assert all(float(row[8]) >= 10 for row in mapfree)  # confidence: PnP inliers of localized queries
    q, t = qvec_tvec_from_w2c(poses[mapfree[0][0]])
    assert np.allclose([float(v) for v in mapfree[0][1:8]], [*q, *t], atol=1e-6)
