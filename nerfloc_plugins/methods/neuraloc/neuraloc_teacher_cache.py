"""On-disk cache of 2D teacher outputs, one file per image.

Files live in ``$NERFLOC_CACHE_DIR`` (default ``~/.cache/nerfloc``) under ``teachers/``, named
by a hash of the teacher configuration and the image file's path, size and modification time,
so an edited image or another teacher gets new files.  Writes are atomic; a file that cannot be
read is recomputed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import torch
from rich.progress import Progress

from nerfloc_plugins.methods.neuraloc.neuraloc_teachers import NeuraLocTeacherConfig, NeuraLocTeachers, TeacherOutput
from nerfloc_plugins.utils.atomic import atomic_path


def cache_dir() -> Path:
    return Path(os.environ.get("NERFLOC_CACHE_DIR", Path.home() / ".cache" / "nerfloc")) / "teachers"


def cache_key(image_path: Path, config: NeuraLocTeacherConfig, width: int, height: int) -> str:
    stat = Path(image_path).stat()
    fields = {k: str(v) for k, v in asdict(config).items()}
    text = repr(
        (sorted(fields.items()), str(Path(image_path).resolve()), stat.st_size, stat.st_mtime_ns, width, height)
    )
    return hashlib.sha1(text.encode()).hexdigest()


def _save(out: TeacherOutput, path: Path) -> None:
    data = {
        "keypoints": out.keypoints.cpu(),
        "keypoint_descriptors": out.keypoint_descriptors.half().cpu(),
        "descriptor_map": out.descriptor_map.half().cpu(),
        "context_map": out.context_map.half().cpu(),
        "image_size": torch.tensor(out.image_size),
    }
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def _load(path: Path) -> TeacherOutput:
    data = torch.load(path, map_location="cpu", weights_only=True)
    return TeacherOutput(
        data["keypoints"].float(),
        data["keypoint_descriptors"].float(),
        data["descriptor_map"].float(),
        data["context_map"].float(),
        tuple(int(v) for v in data["image_size"]),  # type: ignore[arg-type]
    )


def teacher_outputs_for_dataset(dataset, config: NeuraLocTeacherConfig, device) -> Iterator[TeacherOutput]:
    """Teacher outputs of every image of a Nerfstudio dataset, in order, one at a time (cached on
    disk; CPU tensors): the caller keeps what it needs without holding every image's maps twice."""
    teachers = None
    with Progress(transient=True) as progress:
        task = progress.add_task("NeuraLoc teachers", total=len(dataset))
        for i, image_path in enumerate(dataset.image_filenames):
            w, h = int(dataset.cameras.width[i]), int(dataset.cameras.height[i])
            path = cache_dir() / f"{cache_key(image_path, config, w, h)}.pt"
            out = None
            if path.is_file():
                try:
                    out = _load(path)
                except Exception:  # a truncated or foreign file: recompute it
                    out = None
            if out is None:
                if teachers is None:
                    teachers = NeuraLocTeachers(config, device)
                out = teachers(dataset.get_image_float32(i))
                _save(out, path)
                out = _load(path)  # the same (float16-rounded) values whether computed or cached
            yield out
            progress.advance(task)
