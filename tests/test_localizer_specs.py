"""Localizer registration (entry points), the three localizer kinds in the shared pipeline, and
runs whose run files name nerfloc's old module paths."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
import tyro
import yaml

from nerfloc_plugins.data.frames import Intrinsics, PosedFrame
from nerfloc_plugins.data.synthetic_scene import look_at_c2w
from nerfloc_plugins.geometry.pose_errors import pose_error
from nerfloc_plugins.geometry.poses import invert_rigid
from nerfloc_plugins.legacy_modules import MOVED_MODULES
from nerfloc_plugins.localize.interface import specs as specs_module
from nerfloc_plugins.localize.interface.localizer import (
    LocalizerKind,
    PoseRegressionLocalizer,
    QueryDescription,
    SceneCoordinateLocalizer,
)
from nerfloc_plugins.localize.interface.specs import LocalizerSpec, discover_specs, spec_for_run
from nerfloc_plugins.localize.map_sources import run_localizer
from nerfloc_plugins.localize.pipeline import run_localization
from nerfloc_plugins.localize.pipeline_config import PipelineConfig
from nerfloc_plugins.scripts.localize import Localize, localize_command

INTRINSICS = Intrinsics(fx=100.0, fy=100.0, cx=64.0, cy=48.0, width=128, height=96)


def frame(name: str, eye) -> PosedFrame:
    return PosedFrame(name, Path(f"{name}.png"), look_at_c2w(np.asarray(eye, float), np.zeros(3)), INTRINSICS)


# ------------------------------------------------------------------------------- registration
def test_every_method_registers_one_spec_and_the_most_derived_wins():
    from nerfloc_plugins.methods.crossfire.crossfire_model import CrossFireModelConfig
    from nerfloc_plugins.methods.d2s.d2s_run import D2SRun
    from nerfloc_plugins.methods.posemap.posemap_aprnet import APRConfig
    from nerfloc_plugins.nerf.nerfloc_nerfacto_model import NerflocNerfactoModelConfig

    specs = discover_specs()
    assert [s.name for s in specs] == ["crossfire", "d2s", "nerfmatch", "neuraloc", "posemap", "rendered-features"]

    class Run:  # an ns-train run: the spec is chosen on its model config
        def __init__(self, model):
            self.pipeline = type("Pipeline", (), {"model": model})()

    f = Path("config.yml")
    assert spec_for_run(Run(CrossFireModelConfig()), specs, f).name == "crossfire"  # also a nerfacto config
    assert spec_for_run(Run(NerflocNerfactoModelConfig()), specs, f).name == "rendered-features"
    assert spec_for_run(Run(APRConfig()), specs, f).name == "posemap"
    assert spec_for_run(D2SRun(Path("n.yml"), Path("c.pt")), specs, f).name == "d2s"  # not an ns-train run
    assert [s.name for s in specs if s.pose_prior is not None] == ["posemap"]
    with pytest.raises(ValueError, match="config.yml: no nerfloc localizer for int"):
        spec_for_run(3, specs, f)


@dataclass
class ToyOptions:
    alpha: float = 1.0


class ToyModelConfig:
    pass


def test_a_third_party_entry_point_adds_a_localizer_and_its_options(monkeypatch):
    toy = LocalizerSpec(
        name="toy-method", serves=ToyModelConfig, build=lambda path, options: options, options=ToyOptions
    )
    module = type("Module", (), {"TOY": toy})
    entry = EntryPoint(name="toy-method", value="toy_plugin:TOY", group=specs_module.ENTRY_POINT_GROUP)
    monkeypatch.setattr(EntryPoint, "load", lambda self: getattr(module, self.attr))
    monkeypatch.setattr(specs_module, "entry_points", lambda group: [entry] if group == entry.group else [])
    (found,) = discover_specs()
    assert found is toy

    command = localize_command(discover_specs())
    assert "toy_method" in {f.name for f in dataclasses.fields(command)}
    parsed = tyro.cli(command, args=["--load-config", "run.yml", "--toy-method.alpha", "3", "--retrieval.top-k", "2"])
    assert parsed.toy_method == ToyOptions(alpha=3.0) and parsed.pipeline.retrieval.top_k == 2
    assert parsed.options_of(found) == ToyOptions(alpha=3.0)


def test_ns_localize_and_the_pipeline_share_one_set_of_defaults():
    command = Localize(Path("config.yml"))
    assert command.pipeline == PipelineConfig()
    assert command.pipeline.refine.iterations == 2  # what ns-localize has always used
    names = {f.name for f in dataclasses.fields(Localize)}
    assert {"crossfire", "nerfmatch", "neuraloc", "d2s", "rendered_features"} <= names
    assert not {"retrieval", "pnp", "refine", "pairs"} & names  # flat, from PipelineConfig


# ------------------------------------------------------------------------------------ kinds
class ToyFrames:
    """Ground truth: four queries around the origin, two mapping frames."""

    def map_frames(self):
        return [frame("map/0", [2, 0, 1]), frame("map/1", [0, 2, 1])]

    def query_frames(self, split):
        return [
            frame(f"query/{i}", [2 * np.cos(a), 2 * np.sin(a), 0.5 + 0.1 * i]) for i, a in enumerate((0.3, 1, 2, 4))
        ]

    def describe_query(self, query_frame):
        return QueryDescription(np.zeros((0, 2)), None, query_frame.intrinsics, image=None)


class ToyPoseRegressor(ToyFrames, PoseRegressionLocalizer):
    """Answers the true pose (looked up by the query's name)."""

    def describe_query(self, query_frame):
        self.current = query_frame
        return super().describe_query(query_frame)

    def regress_pose(self, query):
        return self.current.c2w


class ToyCoordinateRegressor(ToyFrames, SceneCoordinateLocalizer):
    """Predicts the exact scene coordinates of 60 pixels of the query."""

    def describe_query(self, query_frame):
        self.current = query_frame
        return super().describe_query(query_frame)

    def regress_correspondences(self, query):
        rng = np.random.default_rng(0)
        uv = rng.uniform([5, 5], [123, 91], size=(60, 2))
        depth = rng.uniform(1.0, 3.0, size=60)
        rays = np.linalg.solve(INTRINSICS.matrix(), np.c_[uv, np.ones(60)].T).T * depth[:, None]
        c2w = self.current.c2w
        return uv, rays @ c2w[:3, :3].T + c2w[:3, 3]


@pytest.mark.parametrize("localizer", [ToyPoseRegressor(), ToyCoordinateRegressor()])
def test_each_kind_runs_its_own_path_of_the_pipeline(localizer):
    results, _ = run_localization(localizer, PipelineConfig())
    assert len(results) == 4
    for res in results:
        dt, dr = pose_error(res.w2c, invert_rigid(res.frame.c2w))
        assert dt < 1e-6 and dr < 1e-3, (localizer.kind, dt, dr)
    if localizer.kind is LocalizerKind.REGRESSES_POSE:
        assert all(r.timings["regress"] > 0 and r.timings["pnp"] == 0 for r in results)
    else:
        assert all(r.num_inliers == 60 and r.timings["prior"] == 0 for r in results)
    with pytest.raises(ValueError, match="--pose-prior: localizer does not match map views"):
        run_localization(localizer, PipelineConfig(), pose_prior=object())


# --------------------------------------------------------------------------- old module paths
def to_old_paths(text: str) -> str:
    """A run file as nerfloc wrote it before the one-package-per-method layout."""
    for old, new in sorted(MOVED_MODULES.items(), key=lambda kv: -len(kv[1])):
        text = text.replace(f"{new}.", f"{old}.")
    return text


def test_run_files_naming_old_module_paths_load_as_the_new_classes(tmp_path):
    from nerfloc_plugins.methods.d2s.d2s_run import D2SRun, load_run
    from nerfloc_plugins.methods.neuraloc.neuraloc_model import NeuraLocModelConfig
    from nerfloc_plugins.nerf.run_files import read_run_config

    old_d2s = tmp_path / "d2s_run.yml"
    old_d2s.write_text(
        "!!python/object:nerfloc_plugins.localize.d2s_localizer.D2SRun\n"
        "checkpoint: d2s.pt\nfeatures: aliked\nmax_keypoints: 512\nnerf_config: nerf/config.yml\n"
        "superpoint_weights: null\nsynthetic: true\n"
    )
    run = load_run(old_d2s)
    assert type(run) is D2SRun and run.max_keypoints == 512

    # a whole ns-train config.yml (what nerfstudio's trainer writes: yaml.dump of the TrainerConfig)
    from nerfloc_plugins.method_configs.neuraloc_config import neuraloc_cpu

    text = to_old_paths(yaml.dump(neuraloc_cpu.config))
    assert "nerfloc_plugins.models.neuraloc.NeuraLocModelConfig" in text and "methods." not in text
    assert "nerfloc_plugins.engine.trainer.NerflocTrainer" in text
    old_config = tmp_path / "config.yml"
    old_config.write_text(text)
    config = read_run_config(old_config)
    assert type(config.pipeline.model) is NeuraLocModelConfig
    assert config.pipeline.model.teachers == neuraloc_cpu.config.pipeline.model.teachers
    assert spec_for_run(config, discover_specs(), old_config).name == "neuraloc"


def test_old_module_paths_import_the_moved_modules():
    import importlib

    for old, new in MOVED_MODULES.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
    old = importlib.import_module("nerfloc_plugins.models.crossfire")
    assert old.__spec__.name == "nerfloc_plugins.methods.crossfire.crossfire_model"  # the module keeps its own spec
    assert (
        yaml.load("!!python/name:nerfloc_plugins.models.neuraloc.NeuraLocModelConfig ''", Loader=yaml.Loader).__module__
        == "nerfloc_plugins.methods.neuraloc.neuraloc_model"
    )


@pytest.mark.slow
def test_a_run_trained_with_old_module_paths_loads_and_renders_the_same(tiny_run):
    """A run's config.yml rewritten to the old paths: ns-localize picks its localizer and the
    field renders exactly what the same run renders from its own config.yml."""
    from nerfloc_plugins.localize.localizers.rendered_features import RenderedFeaturesLocalizer
    from nerfloc_plugins.nerf.field_renderer import FieldRenderer

    text = to_old_paths(tiny_run.read_text())
    assert "nerfloc_plugins.models.nerfloc_nerfacto.NerflocNerfactoModelConfig" in text
    old_config = tiny_run.parent / "config_old_paths.yml"  # beside it: the run's paths stay valid
    old_config.write_text(text)

    localizer = run_localizer(old_config)
    assert isinstance(localizer, RenderedFeaturesLocalizer)
    query = localizer.query_frames("test")[0]
    old = localizer.renderer.render(query.c2w, query.intrinsics)
    new = FieldRenderer(tiny_run).render(query.c2w, query.intrinsics)
    assert old["rgb"].shape == (36, 48, 3)
    np.testing.assert_array_equal(old["rgb"], new["rgb"])
    np.testing.assert_array_equal(old["depth"], new["depth"])


# ----------------------------------------------------------------------------------- cascade
class NoisyCoordinateRegressor(ToyCoordinateRegressor):
    """Fails queries 0 and 1 (no points), answers the others with ``good`` exact points."""

    name = "noisy"

    def __init__(self, good: int = 60):
        self.good = good

    def regress_correspondences(self, query):
        uv, xyz = super().regress_correspondences(query)
        if self.current.name in ("query/0", "query/1"):
            return uv[:0], xyz[:0]
        return uv[: self.good], xyz[: self.good]


class ExactCoordinateRegressor(ToyCoordinateRegressor):
    name = "exact"


def test_the_cascade_takes_its_fallback_where_the_first_stage_fails(tmp_path):
    import csv

    from nerfloc_plugins.localize.outputs.metrics import build_metrics
    from nerfloc_plugins.localize.outputs.per_query_csv import write_per_query_csv
    from nerfloc_plugins.localize.stages.cascade import AcceptConfig, CascadeConfig

    config = PipelineConfig(cascade=CascadeConfig(accept=AcceptConfig(min_inliers=30)))
    results, _ = run_localization(NoisyCoordinateRegressor(), config, fallbacks=[ExactCoordinateRegressor()])
    assert [r.stage for r in results] == ["exact", "exact", "noisy", "noisy"]
    for res in results:
        dt, _ = pose_error(res.w2c, invert_rigid(res.frame.c2w))
        assert dt < 1e-6 and res.inlier_ratio == 1.0
    # the fallback's time is added to the failed queries' stages
    assert results[0].timings["pnp"] > 0 and results[0].timings["match"] > 0

    # a first-stage pose with too few inliers (20 < 30) goes to the fallback; accepted at 20
    weak = NoisyCoordinateRegressor(good=20)
    results, _ = run_localization(weak, config, fallbacks=[ExactCoordinateRegressor()])
    assert [r.stage for r in results] == ["exact"] * 4
    lenient = PipelineConfig(cascade=CascadeConfig(accept=AcceptConfig(min_inliers=20)))
    results, _ = run_localization(weak, lenient, fallbacks=[ExactCoordinateRegressor()])
    assert [r.stage for r in results] == ["exact", "exact", "noisy", "noisy"]

    _, errors = build_metrics(results, "noisy -> exact", "toy", 0, 0.0)
    write_per_query_csv(results, errors, tmp_path / "per_query.csv")
    rows = list(csv.DictReader((tmp_path / "per_query.csv").open()))
    assert [r["stage"] for r in rows] == ["exact", "exact", "noisy", "noisy"]
    assert [r["inlier_ratio"] for r in rows] == ["1.000"] * 4


def test_the_cascade_fallback_must_localize_the_same_queries():
    class OtherDataset(ExactCoordinateRegressor):
        name = "other"

        def query_frames(self, split):
            return [frame("elsewhere/0", [1, 1, 1])]

    with pytest.raises(ValueError, match="other has no query 'query/0' of noisy's dataset"):
        run_localization(NoisyCoordinateRegressor(), PipelineConfig(), fallbacks=[OtherDataset()])
