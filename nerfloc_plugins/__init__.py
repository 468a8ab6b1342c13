"""nerfloc: Nerfstudio plugins for NeRF-based visual localization (see docs/architecture.md)."""

from nerfloc_plugins import legacy_modules

legacy_modules.install()
