"""``nerfloc-make-scene``: render the example room (or another room, a smaller variant, hard queries) in 7-Scenes layout."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tyro
from rich.progress import Progress

from nerfloc_plugins.data.synthetic_scene import write_sevenscenes_scene
from nerfloc_plugins.utils.atomic import atomic_directory


@dataclass
class MakeScene:
    """Render the synthetic room with RGB, depth (mm) and poses; written atomically."""

    output_dir: Path = Path("examples/demo_room")
    """Scene directory to create (replaced only once the new one is complete)."""
    width: int = 160
    height: int = 120
    frames_per_train_seq: int = 50
    """Frames in each of the two training sequences (seq-01, seq-02)."""
    frames_test: int = 20
    """Frames in the query sequence (seq-03)."""
    supersample: int = 2
    """Anti-aliasing rays per pixel side."""
    room: Literal["demo", "office", "gallery", "photo-a", "photo-b", "photo-c"] = "demo"
    """``demo``: the example room; ``office``: another room (keep it for judging settings);
    ``gallery``: the same pictures hung twice, brick on every wall, a nearly symmetric layout;
    ``photo-a|b|c``: painted walls, a white ceiling, photographs at their natural scale (two murals,
    framed pictures, one hung twice), furniture along the walls (tune on a and b, judge on c)."""
    lighting: Literal["flat", "lit"] = "flat"
    """``flat``: view-independent shading (the example room); ``lit``: a point lamp with hard
    shadows and view-dependent highlights on the floor, furniture tops and posters."""
    hard_queries: int = 0
    """Also render this many queries (``seq-04``) with no mapping view within 0.5 m looking within
    90 deg of them; their names go to ``hard_queries.txt``."""
    repeated_queries: int = 0
    """Also render this many queries facing a picture the room hangs twice (gallery, photo rooms),
    appended to ``seq-04`` and listed in ``hard_queries.txt``."""
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Frames rendered at once (threads; the files do not depend on it)."""

    def main(self) -> None:
        with atomic_directory(self.output_dir) as tmp, Progress() as progress:
            task = progress.add_task("rendering", total=None)
            counts = write_sevenscenes_scene(
                tmp,
                self.width,
                self.height,
                self.frames_per_train_seq,
                self.frames_test,
                self.supersample,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                room=self.room,
                hard_queries=self.hard_queries,
                lighting=self.lighting,
                repeated_queries=self.repeated_queries,
                workers=self.workers,
            )
        print(f"wrote {self.output_dir}: {counts['train']} train frames, {counts['test']} query frames")


def entrypoint() -> None:
    tyro.cli(MakeScene).main()


if __name__ == "__main__":
    entrypoint()
