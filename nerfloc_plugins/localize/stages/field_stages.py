"""The stages that render a trained field, built from the options: render-and-match refinement
and render verification (a run both name is loaded once)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from nerfloc_plugins.localize.interface.localizer import (
    Localizer,
)
from nerfloc_plugins.localize.pipeline_config import PipelineConfig
from nerfloc_plugins.localize.stages.render_match import RenderMatchRefiner
from nerfloc_plugins.localize.stages.verification import RenderVerifier
from nerfloc_plugins.nerf.field_renderer import FieldRenderer


def field_to_render(
    run: Optional[Path], localizers: List[Localizer], option: str, loaded: Optional[Dict[Path, FieldRenderer]] = None
) -> FieldRenderer:
    """The trained run ``run`` (loaded once per path through ``loaded``), or else the field of the
    first of ``localizers`` that has one; one-line error naming ``option`` when there is none."""
    if run is not None:
        loaded = {} if loaded is None else loaded
        if Path(run) not in loaded:
            loaded[Path(run)] = FieldRenderer(run)
        return loaded[Path(run)]
    renderer = next((r for r in (loc.map_renderer() for loc in localizers) if r is not None), None)
    if renderer is None:
        names = " / ".join(loc.name for loc in localizers)
        raise ValueError(f"{option}: {names} has no field to render; pass a trained map with {option}.map RUN/config.yml")
    return renderer


def render_match_refiner(
    localizers: List[Localizer], config: PipelineConfig, loaded: Optional[Dict[Path, FieldRenderer]] = None
) -> Optional[RenderMatchRefiner]:
    """The render-and-match refiner of ``config`` (``None`` when off): it renders
    ``--render-match.map``, or else the field of the first of ``localizers`` that has one."""
    if config.render_match.iterations <= 0:
        return None
    renderer = field_to_render(config.render_match.map, localizers, "--render-match", loaded)
    return RenderMatchRefiner(renderer, config.render_match, config.pnp)


def render_verifier(
    localizers: List[Localizer], config: PipelineConfig, loaded: Optional[Dict[Path, FieldRenderer]] = None
) -> Optional[RenderVerifier]:
    """The render verifier of ``config.verify`` (``None`` when off): it renders ``--verify.map``,
    or else the field of the first of ``localizers`` that has one."""
    if not config.verify.on:
        return None
    renderer = field_to_render(config.verify.map, localizers, "--verify", loaded)
    if config.verify.sampling.samples is not None or config.verify.sampling.depth_guided:
        renderer.check_sampling(config.verify.sampling)
    return RenderVerifier(renderer, config.verify)
