"""The package's layering (docs/architecture.md), checked on the source's imports.

* the core folders are ordered ``utils`` < ``geometry`` < ``data`` < ``features`` < ``nerf`` <
  ``localize``: each imports only the ones before it (and itself);
* the core never imports ``methods``;
* nothing imports ``scripts`` (the commands) but the commands themselves: the Python ``api`` and the
  ``benchmark`` run the library, as the commands do;
* a method never imports another method;
* ``localize`` (the shared pipeline) is imported only by the entry points (``scripts``, the Python
  ``api``, the ``benchmark`` orchestration), ``methods`` and itself, and
  inside ``methods`` only by a method's localizer modules (``*_localizer.py``): training code
  builds on ``nerf``, ``features``, ``geometry`` and ``data``, not on the localization pipeline.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, Tuple

import nerfloc_plugins

PACKAGE = Path(nerfloc_plugins.__file__).parent
CORE = ("utils", "geometry", "data", "features", "nerf", "localize")
"""The core folders, lowest first: each may import only the ones before it."""


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imported_modules(path: Path) -> Iterator[Tuple[int, str]]:
    """``(line, module)`` for every import in the file (also inside functions), absolute."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            yield node.lineno, base
            for alias in node.names:  # ``from nerfloc_plugins.methods import crossfire``
                yield node.lineno, f"{base}.{alias.name}"


def layer_of(module: str) -> Tuple[str, ...]:
    """``("methods", "crossfire")``, ``("localize",)``, ... for a module of the package."""
    parts = module.split(".")[1:]
    if not parts:
        return ()
    return tuple(parts[:2]) if parts[0] == "methods" and len(parts) > 1 else (parts[0],)


def violations() -> list:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "legacy_modules.py":
            continue  # names old paths as strings only
        source = module_name(path)
        src_layer = layer_of(source)
        if not src_layer:
            continue
        for line, target in imported_modules(path):
            if not target.startswith("nerfloc_plugins."):
                continue
            dst_layer = layer_of(target)
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
            if src_layer[0] in CORE and dst_layer[:1] == ("methods",):
                found.append(f"core -> method: {where}")
            if src_layer[0] in CORE and dst_layer[:1] and dst_layer[0] in CORE:
                if CORE.index(dst_layer[0]) > CORE.index(src_layer[0]):
                    found.append(f"core {src_layer[0]} -> later core {dst_layer[0]}: {where}")
            if dst_layer[:1] == ("scripts",) and src_layer[0] != "scripts":
                found.append(f"{src_layer[0]} -> scripts: {where}")
            if src_layer[0] == "methods" and dst_layer[:1] == ("methods",) and len(dst_layer) > 1:
                if dst_layer != src_layer:
                    found.append(f"method -> other method: {where}")
            if dst_layer == ("localize",) and src_layer[0] not in ("localize", "scripts", "api", "benchmark", "methods"):
                found.append(f"{src_layer[0]} -> localize: {where}")
            if dst_layer == ("localize",) and src_layer[0] == "methods" and not path.stem.endswith("_localizer"):
                found.append(f"method training code -> localize: {where}")
    return found


def test_layering_holds():
    assert violations() == []


def test_layering_check_can_fail(tmp_path, monkeypatch):
    """The walker sees a planted core -> method import (inside a function) and a method -> method one."""
    fake = tmp_path / "nerfloc_plugins"
    for sub in ("geometry", "methods/crossfire", "methods/neuraloc", "utils"):
        (fake / sub).mkdir(parents=True)
    (fake / "geometry" / "bad.py").write_text(
        "def f():\n    from nerfloc_plugins.methods.crossfire.crossfire_model import CrossFireModel\n"
    )
    (fake / "methods" / "neuraloc" / "neuraloc_model.py").write_text(
        "from nerfloc_plugins.methods.crossfire import crossfire_losses\n"
    )
    (fake / "utils" / "cli.py").write_text("from nerfloc_plugins.data.frames import DatasetFormatError\n")
    (fake / "api.py").write_text("from nerfloc_plugins.scripts.localize_baseline import LocalizeBaseline\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    found = violations()
    assert any(v.startswith("core -> method: nerfloc_plugins/geometry/bad.py:2") for v in found), found
    assert any(
        v.startswith("method -> other method: nerfloc_plugins/methods/neuraloc/neuraloc_model.py:1") for v in found
    )
    # the one import that ran back up the core order before it was fixed, and the API on a command
    assert any(v.startswith("core utils -> later core data: nerfloc_plugins/utils/cli.py:1") for v in found), found
    assert any(v.startswith("api -> scripts: nerfloc_plugins/api.py:1") for v in found), found
