"""Benchmark: the classical pipelines of ``ns-localize-baseline`` on several scenes.

Rows per scene: the plain baseline (top-1 VLAD retrieval), top-5 merged, top-5 of a 20-frame
shortlist verified by PnP inliers, direct 2D-3D matching against the whole map, and direct ->
verified views (the default).  Scenes: ``examples/demo_room`` and rooms ``nerfloc-make-scene``
renders into ``--scenes-dir`` when missing (``demo-hard``: the example room with 16 hard queries;
``office``: another room with 16 hard queries; ``office-320``: the office at 320x240 with 180
mapping frames, kept for judging; ``office-lit``, ``office-lit-320``: the office under a lamp with
shadows and view-dependent highlights, the latter with 50 queries of which 33 hard).  Reports median errors, recall, the hard-query subset,
retrieval recall (first prior within 0.5 m / 30 deg) and time per query.

Writes ``OUT/classical_pipelines.json`` and ``OUT/classical_pipelines.md``.

    python benchmarks/classical_pipelines.py --output-dir benchmarks/results/classical
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import tyro

from nerfloc_plugins.localize.pipeline import PipelineConfig
from nerfloc_plugins.localize.report import percent
from nerfloc_plugins.localize.retrieval import RetrievalConfig
from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline
from nerfloc_plugins.scripts.make_scene import MakeScene
from nerfloc_plugins.utils.atomic import write_json_atomically, write_text_atomically

GENERATED = {
    "demo-hard": dict(room="demo", hard_queries=16),
    "office": dict(room="office", hard_queries=16),
    "office-320": dict(room="office", hard_queries=16, width=320, height=240, frames_per_train_seq=90),
    "office-lit": dict(room="office", hard_queries=16, lighting="lit"),
    "office-lit-320": dict(
        room="office", lighting="lit", width=320, height=240, frames_per_train_seq=90, frames_test=17, hard_queries=33
    ),
}
VARIANTS: Dict[str, Tuple[str, RetrievalConfig]] = {
    "plain top-1": ("views", RetrievalConfig(top_k=1)),
    "top-5": ("views", RetrievalConfig(top_k=5)),
    "top-5 of 20 verified": ("views", RetrievalConfig(top_k=5, verify=20)),
    "direct": ("direct", RetrievalConfig()),
    "direct -> verified views (default)": ("direct+views", RetrievalConfig(top_k=5, verify=20)),
}


@dataclass
class ClassicalPipelinesBenchmark:
    output_dir: Path = Path("benchmarks/results/classical")
    scenes_dir: Path = Path("benchmarks/results/scenes")
    """Where generated scenes are written (and reused)."""
    scenes: Tuple[str, ...] = ("demo_room", "demo-hard", "office", "office-320")

    def scene_path(self, name: str) -> Path:
        if name == "demo_room":
            return Path("examples/demo_room")
        path = self.scenes_dir / name
        if not (path / "TestSplit.txt").is_file():
            MakeScene(output_dir=path, **GENERATED[name]).main()
        return path

    def main(self) -> List[dict]:
        rows = []
        for scene in self.scenes:
            data = self.scene_path(scene)
            for variant, (matching, retrieval) in VARIANTS.items():
                tag = f"{scene}/{variant.split(' (')[0].replace(' ', '_').replace('>', '')}"
                metrics = LocalizeBaseline(
                    fresh=True,
                    data=data,
                    output_dir=self.output_dir / tag,
                    map_matching=matching,
                    pipeline=PipelineConfig(retrieval=retrieval),
                ).main()
                rows.append({"scene": scene, "variant": variant, **metrics})
        write_json_atomically({"rows": rows}, self.output_dir / "classical_pipelines.json")
        write_text_atomically(markdown(rows), self.output_dir / "classical_pipelines.md")
        print(markdown(rows))
        return rows


def markdown(rows: List[dict]) -> str:
    lines = [
        "| scene | pipeline | median cm | median deg | recall 5cm_5deg | hard 5cm_5deg | other 5cm_5deg "
        "| failed | retrieval recall | ms/query |",
        "|" + " --- |" * 10,
    ]
    for r in rows:
        hard, other = r.get("hard_queries"), r.get("other_queries")
        lines.append(
            f"| {r['scene']} | {r['variant']} | {r['median_translation_cm']:.2f} | {r['median_rotation_deg']:.2f} | "
            f"{percent(r['recall']['5cm_5deg'])} | {percent(hard['recall']['5cm_5deg']) if hard else '-'} | "
            f"{percent(other['recall']['5cm_5deg']) if other else '-'} | {r['num_failed']}/{r['num_queries']} | "
            f"{percent(r.get('retrieval_recall'))} | {1000 * r['timings']['total']['mean_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    tyro.cli(ClassicalPipelinesBenchmark).main()
