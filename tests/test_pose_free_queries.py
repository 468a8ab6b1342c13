"""Pose-free query images (``--queries`` folder / video / hloc list, ``--camera``), the Python API,
and the dataparser as a subcommand of ``ns-localize-baseline``: poses compared with the ground
truth the test keeps aside."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from nerfloc_plugins.data.frames import DatasetFormatError, Intrinsics
from nerfloc_plugins.data.hloc_files import read_poses
from nerfloc_plugins.data.query_images import QueryImagesConfig, load_query_frames
from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.geometry.poses import invert_rigid

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "demo_room"
QUERIES = [EXAMPLE / "seq-03" / f"frame-{i:06d}.color.png" for i in range(0, 20, 3)]
CAMERA = Intrinsics(525.0, 525.0, 320.0, 240.0, 640, 480).scaled_to(160, 120)  # the example scene's


def ground_truth(image: Path) -> np.ndarray:
    """World-to-camera pose of an example query image (kept aside from what is localized)."""
    return invert_rigid(np.loadtxt(str(image).replace(".color.png", ".pose.txt")))


def errors_cm(poses: dict, truth: dict) -> list:
    return [pose_error(poses[name], truth[name])[0] * 100 for name in truth]


def localize_baseline(output: Path, *args: str):
    import tyro

    from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline

    return tyro.cli(LocalizeBaseline, args=["--data", str(EXAMPLE), "--output-dir", str(output), *args]).main()


def test_folder_of_images_without_poses(tmp_path):
    """Images only (one in a sub-folder with a space in its name, one blank): every image gets a
    line in poses.txt, the real ones within 1 cm of the truth, the blank one flagged failed with its
    best prior's pose; the report has no ground-truth metrics."""
    folder = tmp_path / "photos"
    (folder / "trip 2").mkdir(parents=True)
    truth = {}
    for k, image in enumerate(QUERIES):
        target = folder / ("trip 2" if k == 0 else "") / (f"img {k}.png" if k == 0 else f"img{k}.png")
        shutil.copy(image, target)
        truth[target.relative_to(folder).as_posix().replace(" ", "_")] = ground_truth(image)
    Image.fromarray(np.zeros((120, 160, 3), np.uint8)).save(folder / "blank.png")
    out = tmp_path / "out"
    metrics = localize_baseline(out, "--queries", str(folder))
    assert metrics["ground_truth"] is False and metrics["num_queries"] == len(QUERIES) + 1
    assert metrics["num_localized"] == len(QUERIES) and metrics["num_failed"] == 1
    poses = read_poses(out / "poses.txt")
    assert set(poses) == set(truth) | {"blank.png"}  # every query has a line (names without spaces)
    errors = errors_cm(poses, truth)
    assert np.median(errors) < 1.0 and max(errors) < 5.0, errors
    rows = {r["name"]: r for r in csv.DictReader((out / "per_query.csv").open())}
    assert rows["blank.png"]["status"] == "failed" and rows["blank.png"]["translation_cm"] == ""
    assert all(rows[n]["status"] == "localized" and float(rows[n]["reprojection_px"]) < 2.0 for n in truth)
    report = (out / "report.md").read_text()
    assert "localized" in report and "error_cdf" not in report and (out / "plots" / "trajectory.png").is_file()
    assert json.loads((out / "metrics.json").read_text())["num_localized"] == len(QUERIES)


def test_video_file_sampled_at_a_rate(tmp_path):
    """A video of the query sequence at 10 fps, sampled at 5 fps: every second frame, localized
    within 2 cm of its truth (MJPG compression)."""
    video = tmp_path / "walk.avi"
    frames = [EXAMPLE / "seq-03" / f"frame-{i:06d}.color.png" for i in range(10)]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for image in frames:
        writer.write(cv2.imread(str(image)))
    writer.release()
    out = tmp_path / "out"
    localize_baseline(
        out,
        "--queries",
        str(video),
        "--query-fps",
        "5",
        "--camera",
        *map(str, CAMERA.matrix()[[0, 1, 0, 1], [0, 1, 2, 2]]),
    )
    poses = read_poses(out / "poses.txt")
    truth = {f"walk/frame-{i:06d}.png": ground_truth(frames[i]) for i in range(0, 10, 2)}
    assert set(poses) == set(truth)
    errors = errors_cm(poses, truth)
    assert np.median(errors) < 2.0, errors
    assert not (out / "queries").exists()  # the frames stay in memory: decoded once, never written


def distorted(image: np.ndarray, K: np.ndarray, k1: float) -> np.ndarray:
    """The pinhole ``image`` as a SIMPLE_RADIAL camera with the same K and radial ``k1`` sees it."""
    h, w = image.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5), -1).reshape(-1, 1, 2)
    undistorted = cv2.undistortPoints(grid.astype(np.float64), K, np.array([k1, 0, 0, 0]), P=K).reshape(h, w, 2)
    maps = (undistorted - 0.5).astype(np.float32)
    return cv2.remap(image, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_hloc_query_list_with_cameras_undistorts(tmp_path):
    """An hloc query list (``name MODEL W H params``) whose images come from a lens with radial
    distortion: undistorted with the list's SIMPLE_RADIAL camera, they localize within 2 cm."""
    K = CAMERA.matrix()
    images = tmp_path / "images"
    images.mkdir()
    lines, truth = [], {}
    for k, image in enumerate(QUERIES[:4]):
        rgb = np.asarray(Image.open(image))
        Image.fromarray(distorted(rgb, K, 0.15)).save(images / f"q{k}.png")
        lines.append(f"q{k}.png SIMPLE_RADIAL 160 120 {K[0, 0]} {K[0, 2]} {K[1, 2]} 0.15")
        truth[f"q{k}.png"] = ground_truth(image)
    query_list = tmp_path / "queries_with_intrinsics.txt"
    query_list.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    localize_baseline(out, "--queries", str(query_list), "--query-images", str(images))
    errors = errors_cm(read_poses(out / "poses.txt"), truth)
    assert np.median(errors) < 2.0, errors
    frames = load_query_frames(QueryImagesConfig(queries=query_list, query_images=images), None)
    assert all(f.image_path.parent == images and f.pixels is not None for f in frames)  # undistorted in memory
    assert not (out / "queries").exists()  # nothing written: the query is decoded once, by the pipeline
    assert frames[0].intrinsics.fx == pytest.approx(K[0, 0]) and frames[0].c2w is None


def test_query_cameras_in_order_and_bad_inputs(tmp_path):
    """--camera beats the map's camera, which beats EXIF; the map's camera is rescaled to the
    image; every bad input is one line naming the file (and line)."""
    folder = tmp_path / "f"
    folder.mkdir()
    Image.fromarray(np.zeros((240, 320, 3), np.uint8)).save(folder / "a.png")
    cfg = QueryImagesConfig(queries=folder)
    assert load_query_frames(cfg, CAMERA)[0].intrinsics.fx == pytest.approx(2 * CAMERA.fx)
    cfg = QueryImagesConfig(queries=folder, camera=(100.0, 100.0, 80.0, 60.0, 160, 120))
    assert load_query_frames(cfg, CAMERA)[0].intrinsics.fx == pytest.approx(200.0)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 36  # 36 mm equivalent: f = the longest side
    Image.fromarray(np.zeros((300, 200, 3), np.uint8)).save(folder / "b.jpg", exif=exif)
    frames = load_query_frames(QueryImagesConfig(queries=folder), CAMERA)
    assert frames[1].name == "b.jpg" and frames[1].intrinsics.fx == pytest.approx(300.0)  # 4:3 map, 2:3 image
    with pytest.raises(DatasetFormatError, match="no camera for this query"):
        Image.fromarray(np.zeros((300, 200, 3), np.uint8)).save(folder / "c.png")
        load_query_frames(QueryImagesConfig(queries=folder), CAMERA)
    query_list = tmp_path / "list.txt"
    for text, message in [
        ("a.png FISHEYE_X 320 240 1 2 3", r"list.txt:1: camera model 'FISHEYE_X': expected one of"),
        ("a.png PINHOLE 320 240 100 100 160", r"list.txt:1: PINHOLE expects W H and 4 parameters"),
        ("missing.png PINHOLE 320 240 100 100 160 120", r"list.txt:1: image 'missing.png' not found"),
        ("a.png PINHOLE 640 480 100 100 320 240", r"a.png: image is 320x240, its camera is for 640x480"),
        ("# only a comment", r"list.txt: no query images listed"),
    ]:
        query_list.write_text(text + "\n")
        with pytest.raises(DatasetFormatError, match=message):
            load_query_frames(QueryImagesConfig(queries=query_list, query_images=folder), None)
    not_a_video = tmp_path / "clip.mp4"
    not_a_video.write_bytes(b"not a video")
    with pytest.raises(DatasetFormatError, match="clip.mp4: cannot open the video"):
        load_query_frames(QueryImagesConfig(queries=not_a_video), CAMERA)
    # through the command line: one line, no traceback
    query_list.write_text("a.png FISHEYE_X 320 240 1 2 3\n")
    cmd = [sys.executable, "-m", "nerfloc_plugins.scripts.localize_baseline", "--data", str(EXAMPLE),
           "--output-dir", str(tmp_path / "o"), "--queries", str(query_list), "--query-images", str(folder)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "FISHEYE_X" in result.stderr


def test_python_api_round_trip(tmp_path):
    """load_localizer once, localize paths and arrays: the same poses as the command line's
    poses.txt, within 1 cm of the truth; conventions c2w = inverse(w2c)."""
    import nerfloc_plugins

    loc = nerfloc_plugins.load_localizer(EXAMPLE)
    results = [loc.localize(image) for image in QUERIES]
    assert all(r.localized and r.status == "localized" for r in results)
    errors = [pose_error(r.w2c, ground_truth(image))[0] * 100 for r, image in zip(results, QUERIES)]
    assert np.median(errors) < 1.0, errors
    assert np.allclose(results[0].c2w @ results[0].w2c, np.eye(4), atol=1e-9)
    assert results[0].stage and results[0].num_inliers >= 30 and results[0].timings["pnp"] > 0
    from_array = loc.localize(np.asarray(Image.open(QUERIES[1])), camera=CAMERA)
    assert pose_error(from_array.w2c, results[1].w2c)[0] < 1e-6
    folder = tmp_path / "q"
    folder.mkdir()
    for image in QUERIES:
        shutil.copy(image, folder / image.name)
    localize_baseline(tmp_path / "out", "--queries", str(folder))
    cli = read_poses(tmp_path / "out" / "poses.txt")
    assert max(pose_error(cli[image.name], r.w2c)[0] for image, r in zip(QUERIES, results)) < 1e-6
    with pytest.raises(ValueError, match="cannot render at a given pose"):
        loc.localize(QUERIES[0], prior=np.eye(4))
    with pytest.raises(FileNotFoundError, match="query image not found"):
        loc.localize(tmp_path / "nope.png")


def test_one_unreadable_query_is_skipped_and_recorded_as_failed(tmp_path, capsys):
    """A folder of queries with a file that is not an image and one cut short: the others are
    localized (within 1 cm), each bad one is named in one line and recorded as failed;
    --strict-queries stops on the first."""
    folder = tmp_path / "photos"
    folder.mkdir()
    truth = {}
    for image in QUERIES[:3]:
        shutil.copy(image, folder / image.name)
        truth[image.name] = ground_truth(image)
    (folder / "broken.png").write_bytes(b"not a png at all")
    (folder / "cut.png").write_bytes(QUERIES[4].read_bytes()[:600])  # a copy cut short: header intact
    out = tmp_path / "out"
    metrics = localize_baseline(out, "--queries", str(folder))
    printed = capsys.readouterr().out
    assert "skipping query" in printed and "broken.png" in printed and "cut.png" in printed
    assert metrics["num_queries"] == 5 and metrics["num_localized"] == 3
    rows = {row["name"]: row for row in csv.DictReader(open(out / "per_query.csv"))}
    assert rows["broken.png"]["status"] == rows["cut.png"]["status"] == "failed"
    assert np.median(errors_cm(read_poses(out / "poses.txt"), truth)) < 1.0
    with pytest.raises(DatasetFormatError, match="broken.png: cannot read image"):
        localize_baseline(tmp_path / "strict", "--queries", str(folder), "--strict-queries")


def test_sixteen_bit_query_is_read_at_its_bit_depth(tmp_path):
    """A 16-bit PNG query (colour, and grey) is read at its bit depth: the colour one localizes as
    the 8-bit original does (within 1 cm), not as a blank image; the loader scales 65535 to 1."""
    from nerfloc_plugins.data.images import load_rgb

    rgb8 = np.asarray(Image.open(QUERIES[1]))
    cv2.imwrite(str(tmp_path / "q16.png"), cv2.cvtColor(rgb8.astype(np.uint16) * 257, cv2.COLOR_RGB2BGR))
    grey16 = (np.linspace(0, 65535, 160 * 120).reshape(120, 160)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), grey16)
    assert np.abs(load_rgb(tmp_path / "q16.png") - rgb8 / 255.0).max() < 1e-6
    grey = load_rgb(tmp_path / "g16.png")
    assert grey.shape == (120, 160, 3) and abs(grey.max() - 1.0) < 1e-6 and abs(grey.mean() - 0.5) < 0.01
    import nerfloc_plugins

    result = nerfloc_plugins.load_localizer(EXAMPLE).localize(tmp_path / "q16.png")
    assert result.localized and result.num_inliers >= 30
    assert pose_error(result.w2c, ground_truth(QUERIES[1]))[0] * 100 < 1.0


def test_arrays_are_checked_and_decoded_once(tmp_path, monkeypatch):
    """An array with NaN is refused in one line naming the problem; a query through a two-stage
    cascade (direct matching, then the views) is decoded and described once, an array never decoded."""
    import nerfloc_plugins
    from nerfloc_plugins.data import images as images_module
    from nerfloc_plugins.localize.pipeline_config import best_baseline_pipeline
    from nerfloc_plugins.localize.stages.cascade import AcceptConfig, CascadeConfig

    pipeline = best_baseline_pipeline()
    pipeline.cascade = CascadeConfig(accept=AcceptConfig(min_inliers=10**6))  # every query runs both stages
    loc = nerfloc_plugins.load_localizer(EXAMPLE, pipeline=pipeline)
    bad = np.asarray(Image.open(QUERIES[0])).astype(np.float32) / 255.0
    bad[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="1 pixels are NaN or infinite"):
        loc.localize(bad, camera=CAMERA)
    decoded, described = [], []
    original = images_module.load_rgb
    monkeypatch.setattr(images_module, "load_rgb", lambda path: decoded.append(path) or original(path))
    classical = loc.pipeline.stages[1][0]  # direct matching (first) describes with it too
    describe = classical.describe_query
    monkeypatch.setattr(classical, "describe_query", lambda frame: described.append(frame.name) or describe(frame))
    result = loc.localize(QUERIES[2])
    assert result.localized and decoded == [QUERIES[2]] and described == [QUERIES[2].name]
    assert set(result.timings) >= {"match", "verify"} and result.timings["verify"] > 0  # the views stage ran
    from_array = loc.localize(np.asarray(Image.open(QUERIES[2])), camera=CAMERA)
    assert decoded == [QUERIES[2]] and pose_error(from_array.w2c, result.w2c)[0] < 1e-6
    assert not list(tmp_path.iterdir())


def test_dataparser_subcommand_sets_the_map_camera(tmp_path):
    """``ns-localize-baseline ... sevenscenes-data --fx F --fy F``: the dataset's intrinsics reach the
    baseline (a wrong focal length localizes far worse than the right one)."""
    right = localize_baseline(
        tmp_path / "right", "--max-queries", "4", "sevenscenes-data", "--fx", "525", "--fy", "525"
    )
    wrong = localize_baseline(
        tmp_path / "wrong", "--max-queries", "4", "sevenscenes-data", "--fx", "640", "--fy", "640"
    )
    assert right["median_translation_cm"] < 1.0 < 5 * right["median_translation_cm"] < wrong["median_translation_cm"]


def test_readme_python_example_runs():
    """The README's API example is runnable as written (from the repository root)."""
    import os
    import re

    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(import numpy as np\nimport nerfloc_plugins\n.*?)```", text, re.S).group(1)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)


@pytest.mark.slow
def test_ns_localize_on_a_trained_run_writes_every_query(tiny_run, tmp_path):
    """``ns-localize --queries`` on a trained field map: one poses.txt line per image; a query the
    (barely trained) map fails on gets its best prior's pose, which is a mapping frame's."""
    import tyro

    from nerfloc_plugins.nerf.run_files import read_run_config
    from nerfloc_plugins.scripts.localize import Localize

    data = read_run_config(tiny_run).pipeline.datamanager.dataparser.data
    folder = tmp_path / "q"
    folder.mkdir()
    images = sorted((data / "seq-03").glob("*.color.png"))
    for image in images:
        shutil.copy(image, folder / image.name)
    out = tmp_path / "out"
    args = ["--load-config", str(tiny_run), "--output-dir", str(out), "--queries", str(folder)]
    metrics = tyro.cli(Localize, args=args).main()
    assert metrics["ground_truth"] is False and metrics["num_queries"] == len(images)
    poses = read_poses(out / "poses.txt")
    assert sorted(poses) == sorted(p.name for p in images)
    rows = {r["name"]: r for r in csv.DictReader((out / "per_query.csv").open())}
    from nerfloc_plugins.data.sevenscenes import SevenScenesDataParserConfig

    mapping = [invert_rigid(f.c2w) for f in SevenScenesDataParserConfig(data=data).setup().frames("train")]
    for name, row in rows.items():
        if row["status"] == "failed":
            assert min(pose_error(poses[name], m)[0] for m in mapping) < 1e-6
