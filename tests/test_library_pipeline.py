"""The library is what the commands run: a cascade composed in Python from the map-source pieces
gives the poses ``ns-localize-baseline`` writes, and the API wraps the same object."""

from pathlib import Path

import numpy as np
import tyro

from nerfloc_plugins.api import MapLocalizer
from nerfloc_plugins.data.hloc_files import read_poses
from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.localize.map_sources import ClassicalMapConfig, classical_stages, dataset_parser
from nerfloc_plugins.localize.pipeline import LocalizationPipeline
from nerfloc_plugins.localize.pipeline_config import best_baseline_pipeline
from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "demo_room"


def test_a_cascade_composed_in_python_is_the_command(tmp_path):
    """Direct matching first, the verified views as its fallback, composed by hand: the same poses
    as the command's default, within 1 cm of the truth; wrapped by the API it localizes an array."""
    parser = dataset_parser(EXAMPLE)
    first, fallback = classical_stages(parser, ClassicalMapConfig(map_matching="direct+views"))
    assert first.name == "classical-sift-direct" and fallback.name == "classical-sift"
    pipeline = LocalizationPipeline(first, best_baseline_pipeline(), fallbacks=[fallback])
    assert pipeline.name == f"{first.name} -> {fallback.name}" and pipeline.map_bytes() > 0
    queries = pipeline.query_frames("test", max_queries=5)
    results = pipeline.localize_all(queries, progress=False)
    errors = [pose_error(r.w2c, invert_rigid(q.c2w))[0] * 100 for r, q in zip(results, queries)]
    assert len(results) == 5 and np.median(errors) < 1.0, errors
    assert all(r.frame.pixels is None for r in results)  # results keep no decoded image

    out = tmp_path / "cli"
    tyro.cli(LocalizeBaseline, args=["--data", str(EXAMPLE), "--output-dir", str(out), "--max-queries", "5"]).main()
    written = read_poses(out / "poses.txt")
    assert max(pose_error(written[r.frame.name], r.w2c)[0] for r in results) < 1e-9

    from PIL import Image

    loc = MapLocalizer(pipeline)
    image = np.asarray(Image.open(queries[0].image_path))
    from_array = loc.localize(image, camera=queries[0].intrinsics, name="first")
    assert from_array.name == "first" and pose_error(from_array.w2c, results[0].w2c)[0] < 1e-9
