"""``colmap-data``: a COLMAP sparse model of the example scene (written in COLMAP's text format, read
and re-written as binary by pycolmap) as the map of the baseline, with SfM depth from its tracks,
undistortion of other camera models, and one-line errors."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from nerfloc_plugins.data.colmap_model import ColmapDataParserConfig
from nerfloc_plugins.data.frames import DatasetFormatError, load_depth_meters
from nerfloc_plugins.data.hloc_files import read_poses
from nerfloc_plugins.data.sevenscenes import SevenScenesDataParserConfig
from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.geometry.poses import invert_rigid

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "demo_room"


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return np.array([w, x, y, z])


def write_colmap_scene(root: Path, k1: float = 0.0, queries_in_model: bool = True) -> dict:
    """The example scene as a COLMAP project under ``root`` (images/ + sparse/0 binary): every
    mapping frame (and query frame) registered with its true pose, 3D points at each mapping
    image's SIFT keypoints lifted with its depth map (track length 1).  ``k1`` != 0 writes a
    SIMPLE_RADIAL camera and images distorted by it.  Returns the true w2c per image name."""
    import pycolmap

    parser = SevenScenesDataParserConfig(data=EXAMPLE).setup()
    train, test = parser.frames("train"), parser.frames("test")
    intr = train[0].intrinsics
    K = intr.matrix()
    text = root / "text"
    text.mkdir(parents=True)
    (root / "images").mkdir()
    model = "SIMPLE_RADIAL" if k1 else "PINHOLE"
    params = f"{intr.fx} {intr.cx} {intr.cy} {k1}" if k1 else f"{intr.fx} {intr.fy} {intr.cx} {intr.cy}"
    (text / "cameras.txt").write_text(f"1 {model} {intr.width} {intr.height} {params}\n")
    sift = cv2.SIFT_create(nfeatures=400)
    images_lines, points_lines, truth = [], [], {}
    point_id = 1
    frames = train + (test if queries_in_model else [])
    for image_id, frame in enumerate(frames, 1):
        rgb = np.asarray(Image.open(frame.image_path))
        if k1:
            from test_pose_free_queries import distorted

            rgb = distorted(rgb, K, k1)
        (root / "images" / frame.name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / "images" / frame.name)
        w2c = invert_rigid(frame.c2w)
        truth[frame.name] = w2c
        q, t = rotation_to_quaternion(w2c[:3, :3]), w2c[:3, 3]
        images_lines.append(f"{image_id} {' '.join(map(str, q))} {' '.join(map(str, t))} 1 {frame.name}")
        observations = []
        if frame in train:
            depth = load_depth_meters(frame.depth_path, 1e-3, (0, 65535))
            keypoints = sift.detect(cv2.cvtColor(np.asarray(Image.open(frame.image_path)), cv2.COLOR_RGB2GRAY))
            for kp in keypoints:
                u, v = kp.pt
                z = depth[int(v), int(u)]
                if z <= 0:
                    continue
                xyz = frame.c2w[:3, :3] @ (z * np.linalg.inv(K) @ [u + 0.5, v + 0.5, 1.0]) + frame.c2w[:3, 3]
                if k1:  # the keypoint where the distorted image shows it
                    rvec = cv2.Rodrigues(w2c[:3, :3])[0]
                    projected, _ = cv2.projectPoints(xyz[None], rvec, w2c[:3, 3], K, np.array([k1, 0.0, 0.0, 0.0]))
                    u, v = projected[0, 0] - 0.5
                observations.append(f"{u + 0.5} {v + 0.5} {point_id}")
                points_lines.append(
                    f"{point_id} {xyz[0]} {xyz[1]} {xyz[2]} 128 128 128 0.5 {image_id} {len(observations) - 1}"
                )
                point_id += 1
        images_lines.append(" ".join(observations))
    (text / "images.txt").write_text("\n".join(images_lines) + "\n")
    (text / "points3D.txt").write_text("\n".join(points_lines) + "\n")
    binary = root / "sparse" / "0"
    binary.mkdir(parents=True)
    pycolmap.Reconstruction(str(text)).write_binary(str(binary))
    return truth


@pytest.fixture(scope="module")
def colmap_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("colmap") / "project"
    return root, write_colmap_scene(root)


def test_poses_scale_queries_and_sfm_depth(colmap_scene):
    root, truth = colmap_scene
    parser = ColmapDataParserConfig(data=root, query_prefix="seq-03/").setup()
    train, test = parser.frames("train"), parser.frames("test")
    assert len(train) == 100 and len(test) == 20 and all(f.name.startswith("seq-03/") for f in test)
    for frame in train[:5] + test[:5]:
        assert pose_error(invert_rigid(frame.c2w), truth[frame.name])[0] < 1e-6
    assert train[0].intrinsics.fx == pytest.approx(131.25) and train[0].intrinsics.width == 160
    # SfM depth: the observed points' z-depth, where the true depth map has it
    frame = train[3]
    sfm = load_depth_meters(frame.depth_path, parser.depth_unit_scale_factor, parser.depth_invalid_values)
    true = load_depth_meters(EXAMPLE / frame.name.replace("color.png", "depth.png"), 1e-3, (0, 65535))
    known = sfm > 0
    assert 0.02 < known.mean() < 0.5  # sparse: 3x3 squares at the keypoints
    assert np.median(np.abs(sfm[known] - true[known])) < 0.01
    # --scale: metres per model unit
    scaled = ColmapDataParserConfig(data=root, query_prefix="seq-03/", scale=2.0).setup().frames("train")
    assert np.allclose(scaled[0].c2w[:3, 3], 2 * train[0].c2w[:3, 3])
    # every n-th image, and a query list
    assert len(ColmapDataParserConfig(data=root, test_every=10).setup().frames("test")) == 12
    (root / "q.txt").write_text("seq-01/frame-000004.color.png\nseq-03/frame-000000.color.png\n")
    listed = ColmapDataParserConfig(data=root, queries_list=Path("q.txt")).setup().frames("test")
    assert [f.name for f in listed] == ["seq-01/frame-000004.color.png", "seq-03/frame-000000.color.png"]


def test_baseline_on_a_colmap_model_localizes_pose_free_queries(colmap_scene, tmp_path):
    """``ns-localize-baseline --data PROJECT --queries photos/ colmap-data``: the SfM depth lifts the
    mapping features; the queries' poses are within 2 cm of the truth kept aside."""
    import tyro

    from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline

    root, truth = colmap_scene
    photos = tmp_path / "photos"
    photos.mkdir()
    names = [f"seq-03/frame-{i:06d}.color.png" for i in range(0, 20, 2)]
    for name in names:
        shutil.copy(EXAMPLE / name, photos / Path(name).name)
    out = tmp_path / "out"
    args = [
        "--data",
        str(root),
        "--output-dir",
        str(out),
        "--queries",
        str(photos),
        "colmap-data",
        "--query-prefix",
        "seq-03/",
    ]
    metrics = tyro.cli(LocalizeBaseline, args=args).main()
    assert metrics["num_localized"] == len(names)
    poses = read_poses(out / "poses.txt")
    errors = [pose_error(poses[Path(n).name], truth[n])[0] * 100 for n in names]
    assert np.median(errors) < 2.0 and max(errors) < 10.0, errors


def test_other_camera_models_are_undistorted(tmp_path):
    """A SIMPLE_RADIAL model with distorted images: undistorted once into the cache (PINHOLE), and
    the baseline on it localizes the model's own query images within 2 cm."""
    import tyro

    from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline

    root = tmp_path / "radial"
    truth = write_colmap_scene(root, k1=0.12)
    parser = ColmapDataParserConfig(data=root, query_prefix="seq-03/").setup()
    frames = parser.frames("train")
    assert "nerfloc_cache" in str(frames[0].image_path) and abs(frames[0].intrinsics.width - 160) < 20
    out = tmp_path / "out"
    args = [
        "--data",
        str(root),
        "--output-dir",
        str(out),
        "--max-queries",
        "8",
        "colmap-data",
        "--query-prefix",
        "seq-03/",
    ]
    metrics = tyro.cli(LocalizeBaseline, args=args).main()
    assert metrics["median_translation_cm"] < 2.0, metrics["median_translation_cm"]
    assert len(read_poses(out / "poses.txt")) == 8 and len(truth) == 120


def test_a_distortion_model_with_zero_parameters_is_a_pinhole_camera(colmap_scene, tmp_path):
    """A SIMPLE_RADIAL camera with k = 0 (a camera fixed to known intrinsics keeps its model) is a
    pinhole camera: read as it is (no undistortion, no error) and localized within 2 cm."""
    import shutil

    import pycolmap
    import tyro

    from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline

    root, truth = colmap_scene
    fixed = tmp_path / "fixed"
    shutil.copytree(root / "images", fixed / "images")
    shutil.copytree(root / "text", fixed / "text")
    _, model, width, height, fx, fy, cx, cy = (fixed / "text" / "cameras.txt").read_text().split()
    assert model == "PINHOLE" and float(fx) == float(fy)
    (fixed / "text" / "cameras.txt").write_text(f"1 SIMPLE_RADIAL {width} {height} {fx} {cx} {cy} 0\n")
    (fixed / "sparse" / "0").mkdir(parents=True)
    pycolmap.Reconstruction(str(fixed / "text")).write_binary(str(fixed / "sparse" / "0"))
    parser = ColmapDataParserConfig(data=fixed, query_prefix="seq-03/").setup()
    frame = parser.frames("train")[0]
    assert frame.image_path.parent.parent == fixed / "images" and frame.intrinsics.fx == pytest.approx(float(fx))
    out = tmp_path / "out"
    args = ["--data", str(fixed), "--output-dir", str(out), "--max-queries", "6", "colmap-data", "--query-prefix", "seq-03/"]
    metrics = tyro.cli(LocalizeBaseline, args=args).main()
    assert metrics["median_translation_cm"] < 2.0, metrics["median_translation_cm"]
    assert not (fixed / "nerfloc_cache" / "undistorted").exists()
    # a camera with real distortion still is not one
    from nerfloc_plugins.data.colmap_model import is_pinhole

    radial = pycolmap.Camera(model="SIMPLE_RADIAL", width=160, height=120, params=[131.25, 80, 60, 0.1])
    fisheye = pycolmap.Camera(model="SIMPLE_RADIAL_FISHEYE", width=160, height=120, params=[131.25, 80, 60, 0.0])
    assert not is_pinhole(radial) and not is_pinhole(fisheye) and len(truth) == 120


def test_bad_colmap_inputs_give_one_line(colmap_scene, tmp_path):
    root, _ = colmap_scene
    broken = tmp_path / "broken"
    shutil.copytree(root / "sparse", broken / "sparse")
    (broken / "images").mkdir()
    with pytest.raises(
        DatasetFormatError, match=r"broken/images: image 'seq-01/frame-00000.\.color.png' of the model not found"
    ):
        ColmapDataParserConfig(data=broken).setup().frames("train")
    (broken / "sparse" / "0" / "points3D.bin").unlink()
    with pytest.raises(DatasetFormatError, match=r"sparse/0: no points3D.bin or points3D.txt"):
        ColmapDataParserConfig(data=broken).setup().frames("train")
    (root / "bad.txt").write_text("not/in/the/model.png\n")
    with pytest.raises(
        DatasetFormatError, match=r"bad.txt: query 'not/in/the/model.png' is not an image of the dataset"
    ):
        ColmapDataParserConfig(data=root, queries_list=Path("bad.txt")).setup().frames("test")
    with pytest.raises(DatasetFormatError, match="COLMAP model folder not found"):
        ColmapDataParserConfig(data=root, model=Path("sparse/9")).setup().frames("train")


def test_api_reads_a_colmap_project_without_being_told(colmap_scene):
    """``load_localizer(PROJECT)`` recognises the COLMAP layout (sparse/0) and localizes with SfM depth."""
    import nerfloc_plugins
    from nerfloc_plugins.data.dataparser_specs import detect_layout

    root, truth = colmap_scene
    assert detect_layout(root) == "colmap-data" and detect_layout(EXAMPLE) == "sevenscenes-data"
    loc = nerfloc_plugins.load_localizer(root)
    names = [f"seq-03/frame-{i:06d}.color.png" for i in (2, 9, 15)]
    errors = [pose_error(loc.localize(EXAMPLE / n).w2c, truth[n])[0] * 100 for n in names]
    assert max(errors) < 3.0, errors


@pytest.mark.slow
def test_nerf_map_trained_on_a_colmap_model(colmap_scene, tmp_path):
    """``ns-train nerfloc-nerfacto-cpu colmap-data`` (SfM depth only, 200 iterations): the run maps
    back to the COLMAP frame (its frames are the model's poses), it renders the room's depth at a
    mapping pose, and ``ns-localize --queries`` writes a pose for every image."""
    import subprocess
    import sys

    import tyro

    from nerfloc_plugins.nerf.field_renderer import FieldRenderer
    from nerfloc_plugins.scripts.localize import Localize

    root, truth = colmap_scene
    cmd = [
        sys.executable, "-m", "nerfstudio.scripts.train", "nerfloc-nerfacto-cpu", "--max-num-iterations", "200",
        "--steps-per-save", "199", "--output-dir", str(tmp_path / "runs"), "--experiment-name", "colmap",
        "--timestamp", "t", "--viewer.quit-on-train-completion", "True",
        "--pipeline.datamanager.train-num-rays-per-batch", "512",
        "colmap-data", "--data", str(root), "--query-prefix", "seq-03/",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "colmap" / "nerfloc-nerfacto-cpu" / "t" / "config.yml"
    renderer = FieldRenderer(run)
    frames = renderer.frames("train")
    assert max(pose_error(invert_rigid(f.c2w), truth[f.name])[0] for f in frames) < 1e-6
    frame = frames[10]
    rendered = renderer.render(frame.c2w, frame.intrinsics)["depth"]
    true = load_depth_meters(EXAMPLE / frame.name.replace("color.png", "depth.png"), 1e-3, (0, 65535))
    assert np.median(np.abs(rendered - true)[true > 0]) < 0.3  # metres: the room's geometry, not the unit cube
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in (0, 7, 14):
        shutil.copy(EXAMPLE / f"seq-03/frame-{i:06d}.color.png", photos / f"q{i}.png")
    out = tmp_path / "out"
    tyro.cli(Localize, args=["--load-config", str(run), "--output-dir", str(out), "--queries", str(photos)]).main()
    assert sorted(read_poses(out / "poses.txt")) == ["q0.png", "q14.png", "q7.png"]
