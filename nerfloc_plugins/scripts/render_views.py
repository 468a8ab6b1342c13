"""``nerfloc-render-views``: render a few held-out views of a trained model and score them.

Writes, for each selected view, a panel ``ground truth | rendered RGB | rendered depth |
ground-truth depth`` as PNG, and ``metrics.json`` with per-view PSNR and the median
absolute depth error **in metres** (dataset frame), which is what matters when a map's
depth is used for 2D-3D matching.  Renders through :class:`FieldRenderer` (Nerfstudio's ``eval_setup``, the same loading path as
``ns-eval`` / ``ns-render`` / ``ns-viewer``), so poses, depth and errors are in the dataset's metres.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from nerfstudio.utils import colormaps

from nerfloc_plugins.data.frames import load_depth_meters
from nerfloc_plugins.data.images import load_rgb
from nerfloc_plugins.nerf.field_renderer import FieldRenderer
from nerfloc_plugins.utils.atomic import save_png_atomically, write_json_atomically


@dataclass
class RenderViews:
    """Render held-out views of a trained nerfloc model and report PSNR / depth error."""

    load_config: Path
    """``config.yml`` written by ``ns-train``."""
    output_dir: Path = Path("renders")
    split: Literal["test", "train"] = "test"
    """Which frames to render: the query ('test') or the mapping ('train') frames."""
    num_views: int = 3
    """How many views, evenly spread over the split."""

    def main(self) -> None:
        if not self.load_config.is_file():
            raise SystemExit(f"error: {self.load_config}: config file not found (expected ns-train's config.yml)")
        renderer = FieldRenderer(self.load_config)
        parser = renderer.parser
        frames = renderer.frames(self.split)
        indices = np.unique(np.linspace(0, len(frames) - 1, self.num_views).round().astype(int))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        views = []
        for frame in (frames[int(i)] for i in indices):
            intr = frame.intrinsics
            rendered = renderer.render(frame.c2w, intr)  # RGB, z-depth in metres
            gt = load_rgb(frame.image_path)
            view = {"name": frame.name, "psnr": float(-10 * np.log10(np.mean((rendered["rgb"] - gt) ** 2)))}
            depth = torch.from_numpy(rendered["depth"]).float()[..., None]
            panels = [torch.from_numpy(gt), torch.from_numpy(rendered["rgb"]), colormaps.apply_depth_colormap(depth)]
            if frame.depth_path is not None:
                gt_depth = load_depth_meters(
                    frame.depth_path,
                    parser.depth_unit_scale_factor,
                    parser.depth_invalid_values,
                    (intr.width, intr.height),
                )
                valid = gt_depth > 0
                err = np.abs(rendered["depth"][valid] - gt_depth[valid])
                view["median_depth_error_m"] = float(np.median(err)) if valid.any() else None
                panels.append(colormaps.apply_depth_colormap(torch.from_numpy(gt_depth)[..., None]))
            views.append(view)
            panel_path = self.output_dir / (frame.name.replace("/", "__").rsplit(".", 1)[0] + ".png")
            save_png_atomically(torch.cat(panels, dim=1).numpy(), panel_path)
            depth_msg = (
                f", median depth error {view['median_depth_error_m'] * 1000:.1f} mm"
                if view.get("median_depth_error_m") is not None
                else ""
            )
            print(f"{frame.name}: PSNR {view['psnr']:.2f} dB{depth_msg} -> {panel_path}")
        summary = {
            "checkpoint": str(renderer.checkpoint),
            "step": renderer.step,
            "split": self.split,
            "mean_psnr": float(np.mean([v["psnr"] for v in views])),
            "views": views,
        }
        depth_errors = [v["median_depth_error_m"] for v in views if v.get("median_depth_error_m") is not None]
        if depth_errors:
            summary["median_depth_error_m"] = float(np.median(depth_errors))
        write_json_atomically(summary, self.output_dir / "metrics.json")
        print(f"mean PSNR {summary['mean_psnr']:.2f} dB over {len(views)} {self.split} views -> {self.output_dir}")


def entrypoint() -> None:
    tyro.cli(RenderViews).main()


if __name__ == "__main__":
    entrypoint()
