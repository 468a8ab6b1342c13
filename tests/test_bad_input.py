"""Issue 17's hostile-user cases: each bad input gives one clear line naming the file (and line), or
a documented, reported skip; nothing is silently dropped, resized or re-scaled."""

import codecs
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image
from PIL import Image
from test_dataparsers import write_cambridge

from nerfloc_plugins.data.cambridge import CambridgeDataParserConfig
from nerfloc_plugins.data.frames import DatasetFormatError
from nerfloc_plugins.data.hloc_files import check_pairs_cover, read_pairs, read_poses, write_poses
from nerfloc_plugins.data.sevenscenes import SevenScenesDataParserConfig
from nerfloc_plugins.geometry.poses import invert_rigid


def frames(root: Path, split: str = "train", **options):
    return SevenScenesDataParserConfig(data=root, **options).setup().frames(split)


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


def test_bad_poses_are_errors_or_reported_skips(sevenscenes_dir: Path, capsys):
    pose = sevenscenes_dir / "seq-01" / "frame-000001.pose.txt"
    for text, expected in [
        ("nan 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n", "pose is not finite"),
        ("1 0 0 1e30\n0 1 0 0\n0 0 1 0\n0 0 0 1\n", "beyond 100000 units"),
        ("2 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n", "not orthonormal"),
        ("1 0 0 0\n0 1 0\n0 0 1 0\n0 0 0 1\n", "frame-000001.pose.txt:2: expected 4 numbers per line, got 3"),
    ]:
        pose.write_text(text)
        with pytest.raises(DatasetFormatError) as err:
            frames(sevenscenes_dir)
        assert "frame-000001.pose.txt" in one_line(err) and expected in str(err.value)
    pose.write_text("nan 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    kept = frames(sevenscenes_dir, bad_frames="skip")
    assert len(kept) == 5 and "seq-01/frame-000001.color.png" not in {f.name for f in kept}
    assert "skipped 1 of 6 frames" in capsys.readouterr().out


def test_depth_is_never_silently_switched_resized_or_rescaled(sevenscenes_dir: Path):
    depth = sevenscenes_dir / "seq-02" / "frame-000000.depth.png"
    depth.unlink()  # one missing depth map: an error, not a map without depth (and another scale)
    with pytest.raises(DatasetFormatError) as err:
        frames(sevenscenes_dir)
    assert "frame-000000.depth.png" in one_line(err) and "no depth map" in str(err.value)
    kept = frames(sevenscenes_dir, bad_frames="skip")
    assert len(kept) == 5 and all(f.depth_path is not None for f in kept)  # depth stays on

    Image.fromarray(np.full((24, 40), 1500, dtype=np.uint16)).save(depth)  # another aspect ratio
    with pytest.raises(DatasetFormatError, match="not the aspect ratio"):
        frames(sevenscenes_dir)
    Image.fromarray(np.full((48, 64), 150, dtype=np.uint8)).save(depth)  # 8-bit
    with pytest.raises(DatasetFormatError, match="expected a single-channel 16-bit PNG"):
        frames(sevenscenes_dir)
    for path in sevenscenes_dir.glob("seq-0[12]/*.depth.png"):  # metres stored where mm are expected
        Image.fromarray(np.full((48, 64), 2, dtype=np.uint16)).save(path)
    with pytest.raises(DatasetFormatError, match=r"median depth 0.002 m .* another unit"):
        frames(sevenscenes_dir)
    for path in sevenscenes_dir.glob("seq-0[12]/*.depth.png"):  # no depth at all: fine, depth off
        path.unlink()
    assert all(f.depth_path is None for f in frames(sevenscenes_dir))


@pytest.mark.parametrize("damage", ["truncated", "empty", "not an image", "wrong size", "missing"])
def test_bad_colour_images_are_found_before_any_map_is_built(sevenscenes_dir: Path, damage: str):
    image = sevenscenes_dir / "seq-02" / "frame-000002.color.png"
    data = image.read_bytes()
    if damage == "truncated":
        image.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        image.write_bytes(b"")
    elif damage == "not an image":
        image.write_text("hello")
    elif damage == "wrong size":
        write_image(image, 32, 24)
    else:
        image.with_suffix(".moved").write_bytes(data)
        image.unlink()
        (sevenscenes_dir / "seq-02" / "frame-000002.pose.txt").unlink()
        (sevenscenes_dir / "seq-02" / "frame-000002.depth.png").unlink()
        Image.open(sevenscenes_dir / "seq-02" / "frame-000001.color.png").save(image.with_name("frame-000009.color.png"))
        image = image.with_name("frame-000009.pose.txt")  # an image without its pose file
    with pytest.raises(DatasetFormatError) as err:
        frames(sevenscenes_dir)
    assert image.name in one_line(err)


def test_two_bad_frames_are_listed_together(sevenscenes_dir: Path):
    (sevenscenes_dir / "seq-01" / "frame-000000.color.png").write_bytes(b"")
    (sevenscenes_dir / "seq-02" / "frame-000001.pose.txt").write_text("inf 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    with pytest.raises(DatasetFormatError) as err:
        frames(sevenscenes_dir)
    lines = str(err.value).splitlines()
    assert "2 of 6 frames are unusable" in lines[0] and "--bad-frames skip" in lines[0]
    assert any("seq-01/frame-000000.color.png: image file is empty" in line for line in lines[1:])
    assert any("seq-02/frame-000001.pose.txt: pose is not finite" in line for line in lines[1:])


def test_split_files_duplicates_empty_and_encodings(sevenscenes_dir: Path):
    split = sevenscenes_dir / "TrainSplit.txt"
    split.write_text("sequence1\nsequence2\nsequence1\n")
    with pytest.raises(DatasetFormatError, match=r"TrainSplit.txt:3: 'sequence1' is listed twice \(first at line 1\)"):
        frames(sevenscenes_dir)
    split.write_text("\n")
    with pytest.raises(DatasetFormatError, match="TrainSplit.txt: lists no sequence"):
        frames(sevenscenes_dir)
    split.write_bytes(codecs.BOM_UTF16_LE + "sequence1\n".encode("utf-16-le"))
    with pytest.raises(DatasetFormatError, match="TrainSplit.txt: split file .* is UTF-16 text; expected UTF-8"):
        frames(sevenscenes_dir)
    split.write_bytes(b"sequence1\n\xff\xfe")
    with pytest.raises(DatasetFormatError, match=r"not UTF-8 text \(byte 0xff at offset 10\)"):
        frames(sevenscenes_dir)
    split.write_bytes(codecs.BOM_UTF8 + b"sequence1\r\nsequence2\r\n")  # Windows Notepad: fine
    assert len(frames(sevenscenes_dir)) == 6


def test_cambridge_without_header_lines_keeps_every_row_and_names_focal_flag(tmp_path: Path):
    write_cambridge(tmp_path)
    parser = CambridgeDataParserConfig(data=tmp_path).setup()
    with_header = [f.name for f in parser.frames("test")]
    listing = tmp_path / "dataset_test.txt"
    listing.write_text("\n".join(listing.read_text().splitlines()[3:]) + "\n")
    assert [f.name for f in CambridgeDataParserConfig(data=tmp_path).setup().frames("test")] == with_header
    (tmp_path / "reconstruction.nvm").unlink()
    with pytest.raises(DatasetFormatError, match="pass cambridge-data --focal F"):
        CambridgeDataParserConfig(data=tmp_path).setup().frames("test")
    assert len(CambridgeDataParserConfig(data=tmp_path, focal=1600.0).setup().frames("test")) == 2
    # the flag the message names is one ns-localize-baseline takes
    import tyro

    from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline

    command = tyro.cli(LocalizeBaseline, args=["--data", str(tmp_path), "cambridge-data", "--focal", "1600"])
    assert command.dataparser.focal == 1600.0


def test_hloc_files_names_with_spaces_duplicates_and_pairs_naming_no_query(tmp_path: Path):
    c2w = np.eye(4)
    c2w[:3, 3] = [1.0, 2.0, 3.0]
    path = tmp_path / "poses.txt"
    write_poses({"my photos/IMG 1.jpg": invert_rigid(c2w)}, path)
    back = read_poses(path)
    np.testing.assert_allclose(back["my photos/IMG 1.jpg"], invert_rigid(c2w), atol=1e-9)
    path.write_text(path.read_text() * 2)
    with pytest.raises(DatasetFormatError, match="poses.txt:2: 'my photos/IMG 1.jpg' has a second pose line"):
        read_poses(path)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("other/q1.png db/1.png\nother/q2.png db/2.png\n")
    with pytest.raises(DatasetFormatError, match="pairs.txt: names none of the 2 queries"):
        check_pairs_cover(read_pairs(pairs), ["seq-03/frame-000000.color.png", "seq-03/frame-000001.color.png"], pairs)
    assert check_pairs_cover(read_pairs(pairs), ["other/q1.png", "x"], pairs) == 1


def run_baseline(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nerfloc_plugins.scripts.localize_baseline", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd)


def test_cli_gives_one_line_for_ranges_bad_frames_and_foreign_run_files(sevenscenes_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    for args, expected in [
        (["--max-queries", "-1"], "error: --max-queries -1: expected a number >= 1"),
        (["--max-queries", "0"], "error: --max-queries 0: expected a number >= 1"),
        (["--retrieval.top-k", "0"], "error: --retrieval.top-k 0: expected a number >= 1"),
        (["--pnp.threshold-px", "nan"], "error: --pnp.threshold-px nan: expected a number > 0"),
    ]:
        result = run_baseline("--data", str(sevenscenes_dir), "--output-dir", str(out), *args, cwd=tmp_path)
        assert result.returncode != 0 and result.stderr.strip().splitlines()[-1] == expected, result.stderr[-800:]
        assert "Traceback" not in result.stderr
    (sevenscenes_dir / "seq-03" / "frame-000001.color.png").write_bytes(b"\x89PNG\r\n")
    result = run_baseline("--data", str(sevenscenes_dir), "--output-dir", str(out), cwd=tmp_path)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert last.startswith("error: ") and "seq-03/frame-000001.color.png" in last
    assert not (out / "poses.txt").exists()  # found before the map was built and any query run
    (sevenscenes_dir / "seq-03" / "frame-000001.color.png").unlink()

    # run files that are not YAML, or cut short, name the file in one line
    from nerfloc_plugins.scripts.localize import Localize

    for text in ["a: [1, 2\n", "!!python/object:nerfstudio.engine.trainer.TrainerConfig\nmethod_name: x\n  bad: indent\n", ""]:
        config = tmp_path / "run" / "config.yml"
        config.parent.mkdir(exist_ok=True)
        config.write_text(text)
        with pytest.raises((DatasetFormatError, FileNotFoundError, ValueError)) as err:
            Localize(load_config=config, output_dir=out).main()
        assert str(config) in one_line(err)
