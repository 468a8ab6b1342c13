"""Trained runs that moved, were copied, lost a save or hold stray files; ns-train's dataset errors
and Ctrl-C (issue 17, items 3-5)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nerfloc_plugins.data.frames import DatasetFormatError
from nerfloc_plugins.nerf.field_renderer import FieldRenderer
from nerfloc_plugins.nerf.run_files import dataset_override, read_run_config

ROOT = Path(__file__).resolve().parents[1]


def copy_run(config: Path, target: Path) -> Path:
    """Copy a run folder (config.yml, dataparser_transforms.json, nerfstudio_models/) to ``target``."""
    shutil.copytree(config.parent, target)
    return target / "config.yml"


def rewrite_config(config_path: Path, **paths) -> None:
    """Rewrite stored paths of a run's config.yml (what a run trained elsewhere holds)."""
    config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    for key, value in paths.items():
        if key == "data":  # where ns-train stored it: the datamanager's data or the dataparser's
            if config.pipeline.datamanager.data is not None:
                config.pipeline.datamanager.data = value
            config.pipeline.datamanager.dataparser.data = value
        else:
            setattr(config, key, value)
    config_path.write_text(yaml.dump(config))


@pytest.mark.slow
def test_moved_and_copied_runs_load_their_own_files(tiny_run: Path, tmp_path: Path):
    original = FieldRenderer(tiny_run)
    scene = Path(read_run_config(tiny_run).pipeline.datamanager.dataparser.data)

    # a run and its dataset moved together (another machine): both found from the run's new place
    bundle = tmp_path / "bundle"
    shutil.copytree(scene, bundle / "scene")
    moved = copy_run(tiny_run, bundle / "out" / "tiny" / "nerfloc-nerfacto-cpu" / "t")
    rewrite_config(moved, output_dir=Path("/gone/out"), data=Path("/gone/scene"))
    renderer = FieldRenderer(moved)
    assert renderer.checkpoint.is_relative_to(moved.parent)  # its own weights, not the original's
    assert renderer.parser.config.data == (bundle / "scene").resolve()
    frame = renderer.frames("test")[0]
    assert abs(float(renderer.render(frame.c2w, frame.intrinsics)["rgb"].mean()) - float(
        original.render(frame.c2w, frame.intrinsics)["rgb"].mean())) < 1e-6  # fmt: skip

    # stray files beside the checkpoints (a killed save's temporary file, notes) are ignored
    models = moved.parent / "nerfstudio_models"
    (models / ".step-000000099.tmp.ckpt").write_bytes(b"partial")
    (models / "notes.txt").write_text("keep")
    assert FieldRenderer(moved).step == original.step
    # a newer checkpoint cut short is named in one line, never loaded silently
    newest = sorted(models.glob("step-*.ckpt"))[-1]
    (models / "step-000000999.ckpt").write_bytes(newest.read_bytes()[:1000])
    with pytest.raises(DatasetFormatError, match=r"step-000000999.ckpt: not a complete torch checkpoint"):
        FieldRenderer(moved)
    for path in models.glob("step-*.ckpt"):
        path.unlink()
    with pytest.raises(DatasetFormatError, match=r"nerfstudio_models: no step-N.ckpt checkpoint"):
        FieldRenderer(moved)

    # a run whose dataset moved elsewhere: ns-localize --data
    copied = copy_run(tiny_run, tmp_path / "copied")
    rewrite_config(copied, data=Path("/gone/scene"))
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(scene, elsewhere)
    token = dataset_override.set(elsewhere)
    try:
        assert FieldRenderer(copied).parser.config.data == elsewhere
    finally:
        dataset_override.reset(token)
    out = tmp_path / "localize"
    cmd = [sys.executable, "-m", "nerfloc_plugins.scripts.localize", "--load-config", str(copied), "--data",
           str(elsewhere), "--output-dir", str(out), "--max-queries", "1"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len((out / "poses.txt").read_text().splitlines()) == 1


def train_command(scene: Path, out: Path, iterations: int, *extra: str) -> list:
    return [
        sys.executable, "-m", "nerfstudio.scripts.train", "nerfloc-nerfacto-cpu", "--max-num-iterations",
        str(iterations), "--steps-per-save", "100000", "--output-dir", str(out), "--experiment-name", "e",
        "--timestamp", "t", "--viewer.quit-on-train-completion", "True", "--vis", "tensorboard",
        "--pipeline.datamanager.train-num-rays-per-batch", "256", *extra, "sevenscenes-data", "--data", str(scene),
    ]  # fmt: skip


@pytest.mark.slow
def test_ns_train_dataset_errors_ctrl_c_and_resume_after_a_killed_save(tmp_path: Path):
    from nerfloc_plugins.data.synthetic_scene import write_sevenscenes_scene

    scene = tmp_path / "scene"
    write_sevenscenes_scene(scene, width=40, height=30, frames_per_train_seq=4, frames_test=2, supersample=1)
    bad = sorted(scene.glob("seq-01/*.color.png"))[1]
    good = bad.read_bytes()
    bad.write_bytes(good[:100])
    result = subprocess.run(train_command(scene, tmp_path / "out", 5), capture_output=True, text=True, timeout=600)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    assert last.startswith("error: ") and bad.name in last and "PNG file is truncated" in last
    bad.write_bytes(good)

    # Ctrl-C in the training loop: the step reached is saved, exit status 130
    run_dir = tmp_path / "out" / "e" / "nerfloc-nerfacto-cpu" / "t"
    # output to files, not pipes: nothing reads a pipe before the Ctrl-C, and a writer blocked on a
    # full pipe (Rich's refresh thread holds the console) would keep the trainer from saving
    log_out, log_err = (tmp_path / "train.out").open("w"), (tmp_path / "train.err").open("w")
    process = subprocess.Popen(train_command(scene, tmp_path / "out", 100000), stdout=log_out, stderr=log_err,
                               text=True)  # fmt: skip
    deadline = time.time() + 300
    while not (run_dir / "dataparser_transforms.json").exists() and time.time() < deadline:
        assert process.poll() is None, (tmp_path / "train.err").read_text()[-3000:]
        time.sleep(0.5)
    time.sleep(8)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        # seen in CI: still running after one Ctrl-C while the output went to pipes nobody read; a
        # user presses it again, in the loop this time
        process.send_signal(signal.SIGINT)
        process.wait(timeout=300)
    log_out.close(), log_err.close()
    stderr = (tmp_path / "train.err").read_text()
    assert process.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("interrupted: checkpoint of step")
    saved = sorted((run_dir / "nerfstudio_models").glob("step-*.ckpt"))
    assert len(saved) == 1
    step = int(saved[0].stem.split("-")[1])

    # a killed save's temporary file and a stray file do not stop --load-dir resuming from it
    (run_dir / "nerfstudio_models" / f".step-{step + 50:09d}.tmp.ckpt").write_bytes(b"partial")
    (run_dir / "nerfstudio_models" / "README").write_text("mine")
    (run_dir / f".step-{step + 60:09d}.ckpt.tmp").write_bytes(b"partial")
    cmd = train_command(scene, tmp_path / "out", 3, "--load-dir", str(run_dir / "nerfstudio_models"))
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    steps = sorted(int(p.stem.split("-")[1]) for p in (run_dir / "nerfstudio_models").glob("step-*.ckpt"))
    assert steps[-1] == step + 3, steps  # resumed from the saved step, not from 0
    assert not (run_dir / f".step-{step + 60:09d}.ckpt.tmp").exists()  # cleaned at start


def test_ns_localize_reads_each_run_file_once(tiny_run: Path, tmp_path: Path, monkeypatch):
    """``ns-localize`` of a run verified by the same run's map: the dataset check, the spec, the
    localizer, the verifier and the report all ask for the run, its file is parsed once."""
    from nerfloc_plugins.localize.stages.verification import VerifyConfig
    from nerfloc_plugins.nerf import run_files
    from nerfloc_plugins.scripts.localize import Localize

    parsed = []
    original = run_files.parse_run_file
    monkeypatch.setattr(run_files, "_READ", {})
    monkeypatch.setattr(run_files, "parse_run_file", lambda path: parsed.append(Path(path)) or original(path))
    command = Localize(tiny_run, output_dir=tmp_path / "out", max_queries=1)
    command.pipeline.verify = VerifyConfig(map=tiny_run)
    metrics = command.main()
    assert metrics["num_queries"] == 1 and "verified by nerfloc-nerfacto-cpu map" in metrics["method"]
    assert parsed == [tiny_run], parsed
    # an edited file is read again
    tiny_copy = tmp_path / "config.yml"
    tiny_copy.write_text(tiny_run.read_text())
    run_files.read_run_file(tiny_copy)
    tiny_copy.write_text(tiny_run.read_text() + "\n# edited\n")
    run_files.read_run_file(tiny_copy)
    assert parsed[1:] == [tiny_copy, tiny_copy]


def test_a_map_trained_with_tiny_cuda_nn_is_refused_in_one_line_without_it(tiny_run: Path, tmp_path: Path):
    """A checkpoint whose hash grid is tiny-cuda-nn's (``tcnn_encoding.params``) on a machine that
    builds the torch grid: one line naming the checkpoint and what to install, not a key listing."""
    import torch

    from nerfloc_plugins.nerf.run_files import latest_checkpoint, read_run_config

    config = copy_run(tiny_run, tmp_path / "tcnn_run")
    _, path = latest_checkpoint(config, read_run_config(config))
    state = torch.load(path, map_location="cpu", weights_only=True)
    grid = state["pipeline"].pop("_model.field.mlp_base_grid.hash_table")
    state["pipeline"]["_model.field.mlp_base_grid.tcnn_encoding.params"] = grid.flatten().half()
    torch.save(state, path)
    with pytest.raises(DatasetFormatError, match=r"step-\d+\.ckpt: trained with tiny-cuda-nn .* install tinycudann"):
        FieldRenderer(config)
