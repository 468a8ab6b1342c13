"""Depth-guided coarse-to-fine rendering: bands from the coarse depth, and renders that match the run's."""

import time

import numpy as np
import pytest

from nerfloc_plugins.data.frames import Intrinsics
from nerfloc_plugins.nerf.render_sampling import RenderSampling, coarse_intrinsics, depth_bands


def test_bands_cover_both_sides_of_an_occlusion_edge():
    coarse = np.full((3, 4), 2.0)
    coarse[:, 2:] = 4.0  # a 2 m surface in front of a 4 m wall, edge between coarse columns 1 and 2
    coarse[0, 0] = np.nan  # no depth rendered there
    sampling = RenderSampling(band_samples=(8, 8, 8), margin=0.1, margin_m=0.05)
    near, far = depth_bands(coarse, (16, 12), sampling)
    assert near.shape == far.shape == (12, 16)
    # far from the edge: the surface's own depth, widened by 10 % + 5 cm
    assert near[6, 0] == pytest.approx(2.0 * 0.9 - 0.05) and far[6, 0] == pytest.approx(2.0 * 1.1 + 0.05)
    assert near[6, 15] == pytest.approx(4.0 * 0.9 - 0.05) and far[6, 15] == pytest.approx(4.0 * 1.1 + 0.05)
    # next to the edge (coarse columns 1 and 2): one band holds both surfaces
    for column in (4, 11):
        assert near[6, column] == pytest.approx(2.0 * 0.9 - 0.05) and far[6, column] == pytest.approx(4.0 * 1.1 + 0.05)
    # the pixel without coarse depth takes its neighbours' band
    assert np.isfinite(near).all() and np.isfinite(far).all() and (far > near).all()
    with pytest.raises(ValueError, match="no depth"):
        depth_bands(np.full((3, 4), np.nan), (16, 12), sampling)


def test_coarse_camera_and_settings():
    intr = Intrinsics(100.0, 100.0, 80.0, 60.0, 160, 120)
    coarse = coarse_intrinsics(intr, 4)
    assert (coarse.width, coarse.height) == (40, 30) and coarse.fx == pytest.approx(25.0)
    assert (coarse_intrinsics(Intrinsics(10.0, 10.0, 5.0, 3.5, 10, 7), 4).height) == 2  # rounded up
    assert RenderSampling().describe() == "run" and not RenderSampling().depth_guided
    assert RenderSampling(band_samples=(8, 8, 8)).describe() == "band 8,8,8 (coarse 1/4: run)"
    for bad in (RenderSampling(coarse_factor=0), RenderSampling(band_samples=(8, 0, 8)), RenderSampling(margin=-1)):
        with pytest.raises(ValueError):
            bad.validate()


@pytest.mark.slow
def test_depth_guided_render_matches_the_runs_schedule_faster(small_nerf_run):
    """On a trained map the band render reproduces the run's own render (colour and depth) while
    evaluating far fewer samples; a wrong number of sample levels is refused in one line."""
    from nerfloc_plugins.nerf.field_renderer import FieldRenderer

    renderer = FieldRenderer(small_nerf_run)
    frame = renderer.frames("test")[0]
    intr = frame.intrinsics.scaled_to(128, 96)  # 2x the training resolution: enough pixels to time
    band = RenderSampling(band_samples=(8, 8, 8))

    def best_time(sampling: RenderSampling):
        times, out = [], None
        for _ in range(2):
            start = time.perf_counter()
            out = renderer.render(frame.c2w, intr, sampling=sampling)
            times.append(time.perf_counter() - start)
        return min(times), out

    run_s, run = best_time(RenderSampling())
    band_s, fast = best_time(band)
    mse = np.mean((fast["rgb"] - run["rgb"]) ** 2)
    assert -10 * np.log10(mse) > 30.0, mse  # the same image (38 dB measured)
    assert np.median(np.abs(fast["depth"] - run["depth"])) < 0.005  # 1.1 mm measured, on a ~3 m room
    assert band_s < 0.5 * run_s, (band_s, run_s)  # 5x measured: 8+8+8 samples vs 64+32+32, plus a 1/16 coarse pass
    with pytest.raises(ValueError, match="3 numbers"):
        renderer.render(frame.c2w, intr, sampling=RenderSampling(band_samples=(8, 8)))
