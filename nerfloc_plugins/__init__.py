"""nerfloc: Nerfstudio plugins for NeRF-based visual localization (see docs/architecture.md).

``load_localizer``, ``MapLocalizer`` and ``Localization`` (the Python API, :mod:`nerfloc_plugins.api`)
are imported on first use, so that Nerfstudio's plugin discovery stays light.
"""

from typing import TYPE_CHECKING

from nerfloc_plugins import legacy_modules

legacy_modules.install()

if TYPE_CHECKING:
    from nerfloc_plugins.api import Localization, MapLocalizer, load_localizer

__all__ = ["load_localizer", "MapLocalizer", "Localization"]


def __getattr__(name: str):
    if name in __all__:
        from nerfloc_plugins import api

        return getattr(api, name)
    raise AttributeError(f"module 'nerfloc_plugins' has no attribute {name!r}")
