"""How a method makes its localizer known to ``ns-localize``: a :class:`LocalizerSpec`
registered under the entry-point group ``nerfloc.localizers``.

A spec sits next to its localizer (``methods/<method>/<method>_localizer.py``) and says which
trained runs it serves (the type of the run's model config, or of the run file itself for
runs that are not ``ns-train`` runs, e.g. D2S's ``d2s_run.yml``), the dataclass of its
``ns-localize`` options (``--<name>.*``) and how to build it.  A spec that can also act as the
pose prior of another localizer (``--pose-prior RUN``) says how to build that prior.

A third-party Nerfstudio plugin adds a localizer the same way, in its own ``pyproject.toml``::

    [project.entry-points."nerfloc.localizers"]
    mymethod = "my_plugin.my_localizer:MY_LOCALIZER_SPEC"

``ns-localize`` chooses, among the specs whose ``serves`` type the run's object is an
instance of, the most derived one (a ``crossfire`` run is also a ``nerfloc-nerfacto`` run:
the CrossFire spec wins), so no method needs a special case or a position in a list.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from nerfloc_plugins.localize.interface.localizer import Localizer, PosePrior
from nerfloc_plugins.nerf.run_files import read_run_file

ENTRY_POINT_GROUP = "nerfloc.localizers"


@dataclass(frozen=True)
class LocalizerSpec:
    name: str
    """Name of the localizer and of its option group (``--<name>.*`` on ``ns-localize``)."""
    serves: type
    """Runs it localizes in: the type of ``config.pipeline.model`` of an ``ns-train`` run, or the
    type of the object in another run file."""
    build: Callable[[Path, Any], Localizer]
    """``build(run_file, options) -> Localizer`` (``options`` is ``None`` without ``options``)."""
    options: Optional[type] = None
    """Dataclass of the localizer's ``ns-localize`` options (default-constructible), or None."""
    pose_prior: Optional[Callable[[Path, Any], PosePrior]] = None
    """``pose_prior(run_file, device) -> PosePrior`` when runs it serves can give the pose prior
    of another localizer (``ns-localize --pose-prior RUN``)."""
    help: str = ""
    """One line for ``ns-localize --help`` (the heading of its option group)."""


def served_object(run: Any) -> Any:
    """What specs are matched on: an ``ns-train`` run's model config, otherwise the run itself."""
    model = getattr(getattr(run, "pipeline", None), "model", None)
    return run if model is None else model


def discover_specs() -> List[LocalizerSpec]:
    """Every spec registered under :data:`ENTRY_POINT_GROUP`, sorted by name (names unique)."""
    specs: Dict[str, LocalizerSpec] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        spec = entry.load()
        if not isinstance(spec, LocalizerSpec):
            raise TypeError(f"entry point {entry.name} = {entry.value} is not a LocalizerSpec")
        if spec.name in specs:
            raise ValueError(f"two localizers are registered as {spec.name!r}")
        specs[spec.name] = spec
    return [specs[name] for name in sorted(specs)]


def spec_for_run(run: Any, specs: List[LocalizerSpec], run_file: Path) -> LocalizerSpec:
    """The most derived spec serving ``run`` (the object in ``run_file``)."""
    target = served_object(run)
    candidates = [s for s in specs if isinstance(target, s.serves)]
    if not candidates:
        known = ", ".join(f"{s.name} ({s.serves.__name__})" for s in specs)
        raise ValueError(f"{run_file}: no nerfloc localizer for {type(target).__name__} (known: {known})")
    return max(candidates, key=lambda s: len(s.serves.__mro__))


def default_options(spec: LocalizerSpec) -> Any:
    """``spec``'s options with their defaults (``None`` for a spec without options)."""
    return None if spec.options is None else spec.options()


def build_localizer(
    run_file: Path, specs: List[LocalizerSpec], options_of: Callable[[LocalizerSpec], Any] = default_options
) -> Localizer:
    """The localizer of the most derived spec serving the run in ``run_file``, with ``options_of(spec)``."""
    spec = spec_for_run(read_run_file(run_file), specs, run_file)
    return spec.build(run_file, options_of(spec))
