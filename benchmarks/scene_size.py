"""Benchmark: cost of the steps that grow with the scene, at 100 / 300 / 1000 mapping frames of
640x480 (7-Scenes size), each size in its own process (its peak host memory is its own).

Per size (synthetic cameras wandering in a 6 x 6 x 3 m room; values that do not change the cost
are zeros or random):

* ``covisibility``: NeRFMatch's covisible training pairs from 80 x 60 rendered points per frame
  (:class:`~nerfloc_plugins.data.covisibility.CovisibilityIndex`, top-20, overlap >= 0.3); the
  all-pairs reference (every frame against every frame) up to ``--all-pairs-up-to`` frames;
* ``teachers``: NeuraLoc's teacher maps (128 x 120 x 160 descriptors + 192 x 60 x 80 context per
  frame, float16) stacked, and one 4096-ray batch read from them
  (:class:`~nerfloc_plugins.methods.neuraloc.neuraloc_teachers.StackedMaps`) against the
  image-by-image reads the pipeline did before;
* ``direct_index``: the direct-matching map of 500 descriptors per frame: inverted-file build and
  one query of 2000 descriptors.

Once (it depends on the image size, not the scene): a CrossFire query (19200 x 19200 descriptors)
matched block by block vs the whole similarity matrix, and NeuraLoc's Hungarian matching
(1024 x 19200) on the useful columns vs all columns.

Writes ``OUT/scene_size.json`` and ``OUT/scene_size.md``::

    python benchmarks/scene_size.py --output-dir benchmarks/results/scene_size
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import tyro

WIDTH, HEIGHT = 640, 480


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeats: int = 1) -> Tuple[float, object]:
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats, out


def room_cameras(n: int, seed: int = 0):
    """``n`` 640x480 cameras in a 6 x 6 x 3 m box and the wall points of an 80 x 60 ray grid each."""
    from nerfloc_plugins.data.frames import Intrinsics
    from nerfloc_plugins.data.synthetic_scene import wandering_room_cameras

    intrinsics = Intrinsics(fx=525.0, fy=525.0, cx=WIDTH / 2, cy=HEIGHT / 2, width=WIDTH, height=HEIGHT)
    return wandering_room_cameras(n, intrinsics, seed=seed)


def covisibility(n: int, all_pairs_up_to: int) -> Dict:
    from nerfloc_plugins.data.covisibility import CovisibilityIndex

    frames, points = room_cameras(n)
    seconds, pairs = timed(lambda: CovisibilityIndex(frames, points).pairs(top_k=20, min_overlap=0.3))
    out = {"covisibility_s": seconds, "pairs": len(pairs)}
    if n <= all_pairs_up_to:
        out["covisibility_all_pairs_s"] = timed(
            lambda: CovisibilityIndex(frames, points, candidates=n).pairs(top_k=20, min_overlap=0.3)
        )[0]
    return out


def teachers(n: int) -> Dict:
    from nerfloc_plugins.methods.neuraloc.neuraloc_teachers import StackedMaps, sample_map

    descriptor = [torch.zeros(128, HEIGHT // 4, WIDTH // 4, dtype=torch.float16) for _ in range(n)]
    context = [torch.zeros(192, HEIGHT // 8, WIDTH // 8, dtype=torch.float16) for _ in range(n)]

    def stack() -> Tuple[StackedMaps, StackedMaps]:
        d, c = StackedMaps("cpu", torch.float16), StackedMaps("cpu", torch.float16)
        for dm, cm in zip(descriptor, context):
            d.add(dm, (WIDTH, HEIGHT))
            c.add(cm, (WIDTH, HEIGHT))
        return d.finish(), c.finish()

    stack_s, (d, c) = timed(stack)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(n, (4096,), generator=gen)
    uv = torch.rand(4096, 2, generator=gen) * torch.tensor([WIDTH, HEIGHT])
    stacked_s = timed(lambda: (d.sample(images, uv, "cpu"), c.sample(images, uv, "cpu")), repeats=5)[0]

    def per_image() -> None:  # what the pipeline did before: one read per image touched by the batch
        for image in torch.unique(images).tolist():
            rows = images == image
            sample_map(descriptor[image], uv[rows], (WIDTH, HEIGHT))
            sample_map(context[image], uv[rows], (WIDTH, HEIGHT))

    return {
        "teacher_stack_s": stack_s,
        "teacher_mib": (d.nbytes() + c.nbytes()) / 2**20,
        "teacher_batch_s": stacked_s,
        "teacher_batch_per_image_s": timed(per_image, repeats=2)[0],
    }


def direct_index(n: int) -> Dict:
    from nerfloc_plugins.localize.localizers.direct_matching import InvertedFile

    gen = torch.Generator().manual_seed(0)
    database = torch.nn.functional.normalize(torch.randn(n * 500, 128, generator=gen), dim=-1)
    build_s, index = timed(lambda: InvertedFile(database, num_words=256))
    query = torch.nn.functional.normalize(torch.randn(2000, 128, generator=gen), dim=-1)
    return {"direct_index_build_s": build_s, "direct_query_s": timed(lambda: index.search(query, 20, 16))[0]}


def matching_per_query() -> Dict:
    from nerfloc_plugins.features import matching

    gen = torch.Generator().manual_seed(0)
    cells = (WIDTH // 4) * (HEIGHT // 4)
    a = torch.nn.functional.normalize(torch.randn(cells, 32, generator=gen), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(cells, 32, generator=gen), dim=-1)
    blockwise_s = timed(lambda: matching.mutual_nearest_descriptors(a, b, 0.8))[0]
    whole_s = timed(lambda: matching.mutual_nearest_neighbors(matching.cosine_similarity(a, b), 0.8))[0]
    keypoints = torch.nn.functional.normalize(torch.randn(1024, 32, generator=gen), dim=-1)
    planted = keypoints[torch.randint(1024, (cells,), generator=gen)] + 0.4 * torch.randn(cells, 32, generator=gen)
    scores = matching.cosine_similarity(keypoints, planted)

    def all_columns() -> None:
        from scipy.optimize import linear_sum_assignment

        s = scores.numpy()
        linear_sum_assignment(np.where(s < 0.6, -1e6, s), maximize=True)

    return {
        "crossfire_match_blockwise_s": blockwise_s,
        "crossfire_match_block_mib": matching.ROWS_PER_BLOCK * cells * 4 / 2**20,
        "crossfire_match_whole_s": whole_s,
        "crossfire_match_whole_mib": cells * cells * 4 / 2**20,
        "hungarian_useful_columns_s": timed(lambda: matching.hungarian_matches(scores, 0.6))[0],
        "hungarian_all_columns_s": timed(all_columns)[0],
    }


@dataclass
class SceneSize:
    output_dir: Path = Path("benchmarks/results/scene_size")
    frames: Tuple[int, ...] = (100, 300, 1000)
    all_pairs_up_to: int = 300
    """Time the all-pairs covisibility reference only up to this many frames (it is quadratic)."""
    only: Optional[int] = None
    """Internal: measure one size in this process and print its JSON."""

    def main(self) -> None:
        torch.set_num_threads(max(1, torch.get_num_threads()))
        if self.only is not None:
            n = self.only
            row = {"frames": n, **covisibility(n, self.all_pairs_up_to), **direct_index(n), **teachers(n)}
            row["peak_host_mib"] = peak_rss_mib()
            print(json.dumps(row))
            return
        from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically

        rows: List[Dict] = []
        for n in self.frames:
            cmd = [sys.executable, __file__, "--only", str(n), "--all-pairs-up-to", str(self.all_pairs_up_to)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"scene_size: {n} frames failed:\n{out.stderr[-2000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
        report = {"image_size": [WIDTH, HEIGHT], "torch_threads": torch.get_num_threads(), "sizes": rows}
        report["per_query"] = matching_per_query()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomically(report, self.output_dir / "scene_size.json")
        write_text_atomically(markdown(report), self.output_dir / "scene_size.md")
        print(markdown(report))


def markdown(report: Dict) -> str:
    cols = [
        ("frames", "mapping frames", "{:d}"),
        ("covisibility_s", "covisible pairs (s)", "{:.2f}"),
        ("covisibility_all_pairs_s", "all pairs (s)", "{:.2f}"),
        ("teacher_mib", "teacher maps (MiB)", "{:.0f}"),
        ("teacher_batch_s", "teacher batch (ms)", "ms"),
        ("teacher_batch_per_image_s", "per-image reads (ms)", "ms"),
        ("direct_index_build_s", "direct index build (s)", "{:.2f}"),
        ("direct_query_s", "direct query (ms)", "ms"),
        ("peak_host_mib", "peak host (MiB)", "{:.0f}"),
    ]

    def cell(row: Dict, key: str, fmt: str) -> str:
        if key not in row:
            return "-"
        return f"{row[key] * 1000:.1f}" if fmt == "ms" else fmt.format(row[key])

    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r, k, f) for k, _, f in cols) + " |" for r in report["sizes"]]
    q = report["per_query"]
    lines += [
        "",
        f"Per query at {report['image_size'][0]}x{report['image_size'][1]}: CrossFire matching "
        f"{q['crossfire_match_blockwise_s']:.2f} s block by block ({q['crossfire_match_block_mib']:.0f} MiB block) vs "
        f"{q['crossfire_match_whole_s']:.2f} s whole ({q['crossfire_match_whole_mib']:.0f} MiB matrix); NeuraLoc "
        f"Hungarian {q['hungarian_useful_columns_s']:.2f} s on useful columns vs {q['hungarian_all_columns_s']:.2f} s on all.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    tyro.cli(SceneSize).main()
