"""Views the map renders at synthesised poses, joining the retrieval database and the baseline's map."""

import time
from pathlib import Path

import numpy as np
import pytest

from nerfloc_plugins.data.sevenscenes import SevenScenesDataParserConfig
from nerfloc_plugins.localize.stages.synthesized_views import SYNTHESIZED_PREFIX, synthesized_poses, up_direction

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "demo_room"


def test_synthesized_poses_turn_each_frame_about_the_vertical():
    frames = SevenScenesDataParserConfig(data=EXAMPLE).setup().frames("train")
    poses = synthesized_poses(frames, headings=3, stride=10)
    assert len(poses) == 3 * len(frames[::10])
    up = up_direction(frames)
    assert up[2] > 0.95  # the example room's z is up
    for k, c2w in enumerate(poses):
        source = frames[::10][k // 3]
        assert np.allclose(c2w[:3, 3], source.c2w[:3, 3])  # same position
        assert np.allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-9)
        axis, original = c2w[:3, 2], source.c2w[:3, 2]
        assert np.isclose(axis @ up, original @ up)  # same pitch
        flat = [v - (v @ up) * up for v in (original, axis)]
        cos = flat[0] @ flat[1] / (np.linalg.norm(flat[0]) * np.linalg.norm(flat[1]))
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))) == pytest.approx([90, 180, 90][k % 3], abs=1e-6)
    assert synthesized_poses(frames, headings=0, stride=10) == []


@pytest.mark.slow
def test_synthesized_views_join_the_baseline_map_and_are_cached(small_nerf_run):
    """Rendered at new headings by a small trained run: depth close to the true room's, features
    lifted into the baseline's map, retrievable, and read back from the run's cache."""
    from nerfloc_plugins.data.synthetic_scene import ROOMS, render_view
    from nerfloc_plugins.features.local_features import SiftConfig
    from nerfloc_plugins.localize.localizers.classical import ClassicalLocalizer
    from nerfloc_plugins.localize.pipeline_config import PipelineConfig
    from nerfloc_plugins.localize.stages.priors import PriorSource
    from nerfloc_plugins.localize.stages.retrieval import RetrievalConfig
    from nerfloc_plugins.localize.stages.synthesized_views import SynthesizedViewsConfig
    from nerfloc_plugins.nerf.run_files import read_run_config

    data = read_run_config(small_nerf_run).pipeline.datamanager.dataparser.data
    # 64x48 renderings of a 300-iteration run are blurry: a low contrast threshold finds 14-38 keypoints in each
    sift = SiftConfig(contrast_threshold=0.005)
    localizer = ClassicalLocalizer(SevenScenesDataParserConfig(data=data).setup(), sift=sift)
    synth = SynthesizedViewsConfig(map=small_nerf_run, headings=2, stride=8)
    config = PipelineConfig(retrieval=RetrievalConfig(synthesize=synth))
    priors = PriorSource(localizer, config)
    num_map = len(localizer.map_frames())
    added = [f for f in priors.frames if f.name.startswith(SYNTHESIZED_PREFIX)]
    assert len(priors.frames) == num_map + len(added) and len(added) == 2 * len(localizer.map_frames()[::8])
    views = priors.synthesized_views()  # from the cache now
    errors = []
    for view in views:
        _, true_depth = render_view(ROOMS["demo"](), view.frame.c2w, view.frame.intrinsics, 1)
        ok = np.isfinite(true_depth)
        errors.append(np.median(np.abs(view.depth[ok] - true_depth[ok])))
    assert np.median(errors) < 0.25, errors
    # each view answers map_view with its features lifted by the rendered depth
    lifted = [localizer.map_view(view.frame.c2w, view.frame) for view in views]
    assert all(len(v.keypoints) >= 5 for v in lifted), [len(v.keypoints) for v in lifted]
    assert all(np.isfinite(v.points3d).all() and len(v.points3d) == len(v.keypoints) for v in lifted)
    cache = list((small_nerf_run.parent / "synthesized_views").glob("*.npz"))
    assert len(cache) == 1
    start = time.perf_counter()
    again = PriorSource(ClassicalLocalizer(SevenScenesDataParserConfig(data=data).setup(), sift=sift), config)
    assert time.perf_counter() - start < 30 and len(again.frames) == len(priors.frames)
    # a query retrieves among real and synthesised frames alike
    query = localizer.query_frames("test")[0]
    from nerfloc_plugins.data.images import load_rgb

    assert len(priors(query, load_rgb(query.image_path))) == 1
