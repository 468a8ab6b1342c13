"""Descriptor agreement at the true pose (the diagnosis of a localizer's own matching)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from nerfloc_plugins.data.frames import Intrinsics, PosedFrame
from nerfloc_plugins.features.matching import mutual_nearest_descriptors
from nerfloc_plugins.geometry.projection import backproject
from nerfloc_plugins.localize.descriptor_agreement import AgreementConfig, descriptor_agreement, partners
from nerfloc_plugins.localize.interface.localizer import MapView, MapViewLocalizer, QueryDescription

CAMERA = Intrinsics(100.0, 100.0, 40.0, 30.0, 80, 60)


class PlaneLocalizer(MapViewLocalizer):
    """A map of 192 points (a 4.5 px grid) on a plane 2 m in front of the query, each with a random unit
    descriptor; the query sees 120 of them at their true pixels (+-0.5 px) with the same
    descriptors plus ``noise`` (``shuffled``: the query's descriptors belong to other points)."""

    renders_at_any_pose = True

    def __init__(self, noise: float, shuffled: bool = False) -> None:
        rng = np.random.default_rng(0)
        self.frame = PosedFrame("q", Path("q.png"), np.eye(4), CAMERA)
        self.uv = np.stack(np.meshgrid(np.arange(16) * 4.5 + 4, np.arange(12) * 4.5 + 4), -1).reshape(-1, 2)
        self.points = backproject(self.uv, np.full(192, 2.0), CAMERA.matrix(), np.eye(4))
        self.desc = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(192, 32))).float(), dim=-1)
        seen = rng.choice(192, 120, replace=False)
        descriptors = self.desc[seen] + noise * torch.from_numpy(rng.normal(size=(120, 32))).float()
        if shuffled:
            descriptors = descriptors[torch.from_numpy(rng.permutation(120))]
        self.query = QueryDescription(self.uv[seen] + rng.uniform(-0.5, 0.5, (120, 2)), descriptors, CAMERA)
        self.seen = seen

    def map_frames(self):
        return [self.frame]

    def query_frames(self, split: str):
        return [self.frame]

    def describe_query(self, frame: PosedFrame) -> QueryDescription:
        return self.query

    def map_view(self, c2w, reference=None) -> MapView:
        assert np.allclose(c2w, self.frame.c2w)  # asked at the true pose
        return MapView(c2w, self.uv, self.desc, self.points, CAMERA)

    def match(self, query: QueryDescription, view: MapView) -> np.ndarray:
        pairs, _ = mutual_nearest_descriptors(query.descriptors, view.descriptors)
        return pairs.cpu().numpy()


def test_partners_are_the_map_points_projecting_onto_each_query_keypoint():
    loc = PlaneLocalizer(noise=0.0)
    view = loc.map_view(np.eye(4))
    found = partners(loc.query, view, np.eye(4), max_px=3.0)
    assert np.array_equal(found, loc.seen)
    moved = np.eye(4)
    moved[0, 3] = 0.5  # a 0.5 m wrong pose: 25 px off, no partner within 3 px for most
    assert np.mean(partners(loc.query, view, moved, max_px=3.0) == loc.seen) < 0.2


@pytest.mark.parametrize(
    ("noise", "shuffled", "top1", "precision"),
    [
        (0.05, False, (0.99, 1.0), (0.99, 1.0)),
        (0.3, False, (0.5, 0.85), (0.6, 0.9)),
        (0.0, True, (0.0, 0.02), (0.0, 0.02)),
    ],
)
def test_agreement_measures_how_often_the_partner_scores_best(noise, shuffled, top1, precision):
    """Agreeing descriptors: the partner ranks first and the localizer's matches land on it; noisier
    ones: less often; another point's descriptors: chance (1 in 192)."""
    loc = PlaneLocalizer(noise, shuffled)
    summary = descriptor_agreement(loc, loc.query_frames("test"), AgreementConfig(max_reprojection_px=3.0))["summary"]
    assert summary["queries"] == 1 and summary["partners_per_query"] == 120
    assert top1[0] <= summary["top1"] <= top1[1] and summary["top5"] >= summary["top1"]
    assert precision[0] <= summary["match_precision"] <= precision[1]
    assert (summary["median_rank"] > 40) == shuffled
    # chunked scoring ranks as the whole matrix does
    chunked = descriptor_agreement(loc, loc.query_frames("test"), AgreementConfig(chunk_rows=7))["summary"]
    assert chunked == summary


@pytest.mark.slow
def test_agreement_command_on_a_trained_map(small_nerf_run, tmp_path):
    """``ns-nerfloc-agreement`` on a Nerfacto map (SIFT on its renderings at the true poses): files,
    the summary's figures, and a one-line error for a run that matches no map views."""
    import json

    from nerfloc_plugins.scripts.agreement import Agreement

    result = Agreement(load_config=small_nerf_run, output_dir=tmp_path / "out", max_queries=2).main()
    saved = json.loads((tmp_path / "out" / "agreement.json").read_text())
    summary = saved["summary"]
    assert saved["localizer"] == result["localizer"] and summary["queries"] == 2 and len(saved["queries"]) == 2
    assert summary["partners_per_query"] > 0
    assert 0.0 <= summary["top1"] <= summary["top5"] <= 1.0 and summary["median_rank"] >= 1
    assert "| top-1 |" in (tmp_path / "out" / "agreement.md").read_text()


def test_real_images_agree_where_the_map_is_sharp():
    """The classical localizer's map views are the mapping images themselves (the nearest one to
    each query): SIFT on two real images of the example room agrees for most partners."""
    from nerfloc_plugins.data.sevenscenes import SevenScenesDataParserConfig
    from nerfloc_plugins.localize.localizers.classical import ClassicalLocalizer

    example = Path(__file__).resolve().parents[1] / "examples" / "demo_room"
    localizer = ClassicalLocalizer(SevenScenesDataParserConfig(data=example).setup())
    summary = descriptor_agreement(localizer, localizer.query_frames("test")[:6])["summary"]
    assert summary["partners_per_query"] > 40
    assert summary["top1"] > 0.55 and summary["match_precision"] > 0.75 and summary["median_rank"] == 1
