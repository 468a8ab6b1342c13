"""``nerfloc-render-views``: render a few held-out views of a trained model and score them.

Writes, for each selected view, a panel ``ground truth | rendered RGB | rendered depth |
ground-truth depth`` as PNG, and ``metrics.json`` with per-view PSNR and the median
absolute depth error **in metres** (dataset frame), which is what matters when a map's
depth is used for 2D-3D matching.  Loads checkpoints through Nerfstudio's ``eval_setup``
(the same path as ``ns-eval`` / ``ns-render`` / ``ns-viewer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from nerfstudio.utils import colormaps
from nerfstudio.utils.eval_utils import eval_setup

from nerfloc_plugins.geometry.projection import ray_length_per_unit_z
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
        _, pipeline, ckpt, step = eval_setup(self.load_config, test_mode="test")
        datamanager = pipeline.datamanager
        dataset = datamanager.eval_dataset if self.split == "test" else datamanager.train_dataset
        scale = dataset._dataparser_outputs.dataparser_scale
        names = dataset.metadata["frame_names"]
        indices = np.unique(np.linspace(0, len(dataset) - 1, self.num_views).round().astype(int))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        views = []
        for idx in indices:
            data = dataset[int(idx)]
            camera = dataset.cameras[int(idx) : int(idx) + 1].to(pipeline.device)
            with torch.no_grad():
                outputs = pipeline.model.get_outputs_for_camera(camera)
            gt = data["image"][..., :3].float()
            rgb = outputs["rgb"].cpu()
            mse = torch.mean((rgb - gt) ** 2)
            view = {"name": names[idx], "psnr": float(-10 * torch.log10(mse))}
            # Nerfstudio renders distance along unit rays; datasets store z-depth
            intr = dataset.cameras[int(idx)]
            K = intr.get_intrinsics_matrices().numpy()
            ray_scale = ray_length_per_unit_z(int(intr.width), int(intr.height), K)
            depth = outputs["depth"].cpu() / torch.from_numpy(ray_scale).float()[..., None]
            panels = [gt, rgb, colormaps.apply_depth_colormap(depth).cpu()]
            if "depth_image" in data:
                gt_depth = data["depth_image"]
                valid = gt_depth[..., 0] > 0
                err = (depth[..., 0][valid] - gt_depth[..., 0][valid]).abs() / scale
                view["median_depth_error_m"] = float(err.median()) if valid.any() else None
                panels.append(colormaps.apply_depth_colormap(gt_depth).cpu())
            views.append(view)
            panel_path = self.output_dir / (names[idx].replace("/", "__").rsplit(".", 1)[0] + ".png")
            save_png_atomically(torch.cat(panels, dim=1).numpy(), panel_path)
            depth_msg = (
                f", median depth error {view['median_depth_error_m'] * 1000:.1f} mm"
                if view.get("median_depth_error_m") is not None
                else ""
            )
            print(f"{names[idx]}: PSNR {view['psnr']:.2f} dB{depth_msg} -> {panel_path}")
        summary = {
            "checkpoint": str(ckpt),
            "step": step,
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
