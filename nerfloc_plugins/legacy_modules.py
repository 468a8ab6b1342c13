"""Old module paths of nerfloc (before the one-package-per-method layout), still importable.

A trained run's ``config.yml`` (and ``d2s_run.yml``) is a YAML dump that names the Python
classes it was made of by module path, e.g. ``nerfloc_plugins.models.crossfire.CrossFireModelConfig``.
So that runs trained before the move keep loading in ``ns-localize``, ``ns-viewer``, ``ns-eval``
and ``ns-render``, :func:`install` puts a finder first on ``sys.meta_path`` that answers each old
path in :data:`MOVED_MODULES` with the module now at the new path (the same module object: the
classes are the new ones), and the old packages (``models``, ``fields``, ...) with empty
placeholder packages.  ``nerfloc_plugins/__init__.py`` installs it, so any import of an old path
finds it (a package's ``__init__`` always runs before its submodules are looked up).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Dict, Optional

_P = "nerfloc_plugins"

MOVED_MODULES: Dict[str, str] = {
    f"{_P}.{old}": f"{_P}.{new}"
    for old, new in {
        # shared NeRF base
        "fields.nerfloc_nerfacto_field": "nerf.nerfloc_nerfacto_field",
        "models.nerfloc_nerfacto": "nerf.nerfloc_nerfacto_model",
        "models.feature_pca": "nerf.feature_pca",
        "engine.trainer": "nerf.trainer",
        "pipelines.frozen_field_pipeline": "nerf.frozen_run_pipeline",
        "localize.field_renderer": "nerf.field_renderer",
        "localize.nerf_point_features": "nerf.point_features",
        # 2D features and matching
        "localize.features": "features.local_features",
        "localize.superpoint": "features.superpoint",
        "localize.matching": "features.matching",
        "localize.feature_matching": "features.feature_matcher",
        # files and CLI helpers
        "localize.io": "data.hloc_files",
        "scripts.cli": "utils.cli",
        # CrossFire
        "fields.crossfire_field": "methods.crossfire.crossfire_field",
        "models.crossfire": "methods.crossfire.crossfire_model",
        "models.crossfire_losses": "methods.crossfire.crossfire_losses",
        "encoders.crossfire_cnn": "methods.crossfire.crossfire_cnn",
        "localize.crossfire_localizer": "methods.crossfire.crossfire_localizer",
        # NeRFMatch
        "models.nerfmatch": "methods.nerfmatch.nerfmatch_model",
        "models.nerfmatch_losses": "methods.nerfmatch.nerfmatch_losses",
        "models.nerfmatch_matcher": "methods.nerfmatch.nerfmatch_matcher",
        "encoders.nerfmatch_encoder": "methods.nerfmatch.nerfmatch_encoder",
        "pipelines.nerfmatch_pipeline": "methods.nerfmatch.nerfmatch_pipeline",
        "localize.nerfmatch_localizer": "methods.nerfmatch.nerfmatch_localizer",
        # NeuraLoc
        "fields.neuraloc_field": "methods.neuraloc.neuraloc_field",
        "models.neuraloc": "methods.neuraloc.neuraloc_model",
        "models.neuraloc_losses": "methods.neuraloc.neuraloc_losses",
        "encoders.neuraloc_teachers": "methods.neuraloc.neuraloc_teachers",
        "encoders.teacher_cache": "methods.neuraloc.neuraloc_teacher_cache",
        "pipelines.neuraloc_pipeline": "methods.neuraloc.neuraloc_pipeline",
        "localize.neuraloc_localizer": "methods.neuraloc.neuraloc_localizer",
        # PoseMap (NeRF-P, APRNet / PMNet)
        "models.posemap": "methods.posemap.posemap_nerfp",
        "models.apr": "methods.posemap.posemap_aprnet",
        "models.pmnet_losses": "methods.posemap.posemap_losses",
        "pipelines.posemap_nerf_pipeline": "methods.posemap.posemap_nerf_pipeline",
        "pipelines.posemap_apr_pipeline": "methods.posemap.posemap_apr_pipeline",
        "localize.apr_localizer": "methods.posemap.posemap_localizer",
        # D2S + descriptor synthesis
        "models.d2s": "methods.d2s.d2s_model",
        "engine.d2s_trainer": "methods.d2s.d2s_trainer",
        "localize.d2s_localizer": "methods.d2s.d2s_localizer",
        "synthesis.pose_synthesis": "methods.d2s.d2s_pose_synthesis",
        "synthesis.keypoint_views": "methods.d2s.d2s_keypoint_views",
        "synthesis.descriptor_synthesis": "methods.d2s.d2s_descriptor_synthesis",
        "synthesis.pose_export": "methods.d2s.d2s_pose_export",
        "scripts.synthesize": "methods.d2s.d2s_synthesize",
        "scripts.train_d2s": "methods.d2s.d2s_train",
        # localize/ before it was split by job (interface, localizers, stages, outputs)
        "localize.localizer": "localize.interface.localizer",
        "localize.specs": "localize.interface.specs",
        "localize.baseline": "localize.localizers.classical",
        "localize.direct_matching": "localize.localizers.direct_matching",
        "localize.field_localizer": "localize.localizers.field_localizer",
        "localize.rendered_features_localizer": "localize.localizers.rendered_features",
        "localize.retrieval": "localize.stages.retrieval",
        "localize.synthesized_views": "localize.stages.synthesized_views",
        "localize.pnp": "localize.stages.pnp",
        "localize.hypotheses": "localize.stages.hypotheses",
        "localize.refine": "localize.stages.refine",
        "localize.render_match": "localize.stages.render_match",
        "localize.verification": "localize.stages.verification",
        "localize.cascade": "localize.stages.cascade",
        "localize.query_journal": "localize.outputs.query_journal",
        "localize.report": "localize.outputs.report",
        "localize.report_plots": "localize.outputs.report_plots",
        "localize.verification_report": "localize.outputs.verification_report",
        "localize.metrics": "localize.outputs.metrics",
    }.items()
}
"""Old module path -> module path now."""

REMOVED_PACKAGES = tuple(
    f"{_P}.{name}" for name in ("models", "fields", "encoders", "engine", "pipelines", "synthesis")
)
"""Old packages with no module of their own left: answered with empty placeholder packages."""


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: Optional[str]) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        if self.target is None:
            package = types.ModuleType(spec.name, "placeholder for a package of nerfloc's old layout")
            package.__path__ = []
            return package
        module = importlib.import_module(self.target)
        self.target_spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run (the module at the new path is already executed); importlib has just
        set its ``__spec__`` to the old path's: give it back its own."""
        if self.target is not None:
            module.__spec__ = self.target_spec


class LegacyModuleFinder(importlib.abc.MetaPathFinder):
    """Finds :data:`MOVED_MODULES` and :data:`REMOVED_PACKAGES` (see the module docstring)."""

    def find_spec(self, fullname: str, path=None, target=None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname in MOVED_MODULES:
            return importlib.machinery.ModuleSpec(fullname, _AliasLoader(MOVED_MODULES[fullname]))
        if fullname in REMOVED_PACKAGES:
            return importlib.machinery.ModuleSpec(fullname, _AliasLoader(None), is_package=True)
        return None


def install() -> None:
    """Put :class:`LegacyModuleFinder` first on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, LegacyModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, LegacyModuleFinder())
