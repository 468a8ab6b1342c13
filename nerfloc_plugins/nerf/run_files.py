"""Reading trained runs: the one parser of run files (``config.yml`` of ``ns-train``, and other
methods' run files such as D2S's ``d2s_run.yml``) and checkpoint loading without a pipeline.

Run files are YAML dumps naming Python classes by module path; runs trained before nerfloc's
current layout name old paths, which :mod:`nerfloc_plugins.legacy_modules` keeps importable.
"""

from __future__ import annotations

import copy
import os
import re
import zipfile
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
import yaml
from nerfstudio.engine.trainer import TrainerConfig

from nerfloc_plugins.data.errors import format_error
from nerfloc_plugins.data.text_files import read_text
from nerfloc_plugins.utils.devices import resolve_device

CHECKPOINT_NAME = re.compile(r"^step-(\d+)\.ckpt$")
"""Nerfstudio's checkpoint file name; other files in ``nerfstudio_models/`` are ignored."""


_READ: Dict[Tuple[str, int, int], Any] = {}
"""Run files parsed in this process, by (resolved path, size, modification time): a command reads
each once however many of its parts ask (the dataset check, the spec, the localizer, the report)."""


def read_run_file(path: Path) -> Any:
    """The object in a run file (no checkpoint is read); a fresh copy of what was parsed the first
    time the file (unchanged since) was read in this process."""
    path = Path(path)
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _READ:
        return copy.deepcopy(_READ[key])
    parsed = parse_run_file(path)
    if key is not None:
        _READ[key] = parsed
    return copy.deepcopy(parsed)


def parse_run_file(path: Path) -> Any:
    """The object in a run file, parsed from its YAML (one-line errors for missing or foreign files)."""
    if path.is_dir() and (path / "config.yml").is_file():
        raise FileNotFoundError(f"{path}: a run folder; pass its config.yml ({path / 'config.yml'})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found (expected ns-train's config.yml)")
    text = read_text(path, "run file (ns-train's config.yml)")
    try:
        return yaml.load(text, Loader=yaml.Loader)
    except yaml.YAMLError as err:
        raise format_error(path, f"not a readable run file (YAML: {str(err).splitlines()[0]})") from None
    except (ImportError, AttributeError, TypeError, ValueError) as err:
        raise format_error(path, f"not a readable run file ({type(err).__name__}: {str(err)[:160]})") from None


def read_run_config(load_config: Path) -> TrainerConfig:
    """The object in a run's ``config.yml`` (no checkpoint is read), with its paths relocated to
    where the file is now (see :func:`relocate`)."""
    config = read_run_file(load_config)
    if not isinstance(config, TrainerConfig):
        raise format_error(load_config, "not an ns-train config.yml (expected a TrainerConfig)")
    return relocate(config, Path(load_config))


def checkpoints_in(folder: Path) -> list[Tuple[int, Path]]:
    """``(step, path)`` of every ``step-N.ckpt`` in ``folder``, oldest first (other files ignored)."""
    return sorted((int(m.group(1)), folder / m.group(0)) for m in map(CHECKPOINT_NAME.match, os.listdir(folder)) if m)


def checkpoint_dir(load_config: Path, config: TrainerConfig) -> Path:
    """The run's ``nerfstudio_models/``, beside its ``config.yml`` wherever the run folder is now."""
    relative = Path(config.relative_model_dir)
    return relative if relative.is_absolute() else Path(load_config).parent / relative


def latest_checkpoint(load_config: Path, config: TrainerConfig) -> Tuple[int, Path]:
    """``(step, path)`` of the newest ``step-N.ckpt`` of the run (other files, such as the
    temporary file of a killed save, are ignored); the file is checked to be a complete
    checkpoint (its zip directory opens), so a truncated one fails here in one line."""
    folder = checkpoint_dir(load_config, config)
    if not folder.is_dir():
        raise format_error(load_config, f"no checkpoint folder {folder} (did training save one?)")
    found = checkpoints_in(folder)
    if not found:
        others = ", ".join(sorted(os.listdir(folder))[:5]) or "nothing"
        raise format_error(folder, f"no step-N.ckpt checkpoint (found {others}; did training save one?)")
    step, path = found[-1]
    check_checkpoint_file(path)
    return step, path


def check_checkpoint_file(path: Path) -> None:
    """A torch checkpoint is a zip archive: a truncated or foreign file has no readable directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise format_error(
            path,
            f"not a complete torch checkpoint ({err}); a killed save or a copy cut short? delete it to load an older one",
        ) from None


dataset_override: ContextVar[Optional[Path]] = ContextVar("dataset_override", default=None)
"""The dataset folder ``ns-localize --data`` points the loaded run (and the runs it was trained
on) at; ``None``: the stored path, relocated."""


def relocate(config: TrainerConfig, load_config: Path, data: Optional[Path] = None) -> TrainerConfig:
    """Point a run's config at where its files are now.

    * checkpoints: ``nerfstudio_models/`` beside this ``config.yml`` (a moved or copied run loads
      its own weights, never the original's);
    * its dataset (``pipeline.datamanager.data``): ``data`` (default :data:`dataset_override`,
      set by ``ns-localize --data``) when given (a
      run trained on a frozen run keeps its reference and the frozen run gets ``data`` when loaded);
      else, when the stored path no longer exists, the same path relative to the run folder as at
      training time (a run and the dataset or frozen run it names, moved together)."""
    load_config = Path(load_config)
    data = data if data is not None else dataset_override.get()
    stored_base = Path(config.get_base_dir())
    config.relative_model_dir = checkpoint_dir(load_config, config).absolute()
    datamanager = config.pipeline.datamanager
    dataparser = getattr(datamanager, "dataparser", None)
    parser_has_data = dataparser is not None and hasattr(dataparser, "data")
    stored = getattr(datamanager, "data", None)
    if stored is None and parser_has_data:
        stored = dataparser.data  # ns-train METHOD sevenscenes-data --data DIR stores it here
    new = None
    names_a_run = stored is not None and Path(stored).suffix in (".yml", ".yaml")
    if data is not None and not names_a_run:
        new = Path(data)
        if not new.is_dir():
            raise format_error(new, "--data: dataset folder not found")
    elif stored is not None and not Path(stored).exists():
        candidate = load_config.parent / os.path.relpath(Path(stored).absolute(), stored_base.absolute())
        if candidate.exists():
            new = candidate.resolve()
    if new is not None and getattr(datamanager, "data", None) is not None:
        datamanager.data = new
    if new is not None and parser_has_data:
        dataparser.data = new
    elif parser_has_data and getattr(datamanager, "data", None) is not None and not names_a_run:
        dataparser.data = Path(datamanager.data)  # what Nerfstudio's datamanager does when set up
    return config


def enable_tf32() -> None:
    """TF32 tensor-core matmuls and convolutions on CUDA GPUs (Ampere and later: ~8x float32
    throughput, 10-bit mantissa inputs, float32 accumulation; what Nerfstudio's fields tolerate).
    Only CUDA flags: CPU arithmetic is unchanged."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def load_run(load_config: Path, test_mode: str = "inference", data: Optional[Path] = None):
    """Nerfstudio's ``eval_setup`` steps for a run (its file parsed once per command), relocated
    (:func:`relocate`), loading the newest complete ``step-N.ckpt`` (:func:`latest_checkpoint`)
    whatever else ``nerfstudio_models/`` holds; a checkpoint with tiny-cuda-nn parameters where the
    torch implementation was built is refused in one line (Nerfstudio would load it non-strictly,
    keeping a random hash grid).  Returns ``(config, pipeline, checkpoint path, step)``."""
    load_config = Path(load_config)
    config = read_run_file(load_config)  # parsed once per command; one-line errors for a bad file
    if not isinstance(config, TrainerConfig):
        raise format_error(load_config, "not an ns-train config.yml (expected a TrainerConfig)")
    # imported here: the registry imports the plugins' method configs (including ones that import
    # this module)
    from nerfstudio.configs.method_configs import all_methods

    if config.method_name in all_methods:  # the datamanager class of the installed method, as eval_setup does
        config.pipeline.datamanager._target = all_methods[config.method_name].pipeline.datamanager._target
    config = relocate(config, load_config, data)
    config.load_step, checkpoint = latest_checkpoint(load_config, config)
    config.load_dir = config.get_checkpoint_dir()
    device = resolve_device()
    enable_tf32()
    pipeline = config.pipeline.setup(device=device, test_mode=test_mode)
    pipeline.eval()
    loaded = torch.load(checkpoint, map_location="cpu")
    built = pipeline.state_dict().keys()
    foreign = sorted(k for k in loaded["pipeline"] if "tcnn" in k and k not in built)
    if foreign:  # Nerfstudio would fall back to a non-strict load and keep a random hash grid
        raise format_error(
            checkpoint,
            "trained with tiny-cuda-nn ('tcnn' hash grids / MLPs), which is not installed here: install "
            f"tinycudann to load this map (its parameters, e.g. {foreign[0]}, cannot be converted to the "
            "torch implementation)",
        )
    pipeline.load_pipeline(loaded["pipeline"], loaded["step"])
    return config, pipeline, checkpoint, config.load_step


def load_trained_state(load_config: Path) -> tuple[TrainerConfig, dict]:
    """A run's ``config.yml`` object and the pipeline state dict of its latest checkpoint
    (loaded weights-only, on the CPU), without setting the pipeline up."""
    load_config = Path(load_config)
    config = read_run_config(load_config)
    _, path = latest_checkpoint(load_config, config)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise format_error(path, f"cannot load checkpoint ({str(err).splitlines()[0][:160]})") from None
    return config, state["pipeline"]
