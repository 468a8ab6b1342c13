"""hloc-style result files.

* poses: one line per query, ``name qw qx qy qz tx ty tz`` - **world-to-camera**, COLMAP
  convention, in the dataset's own metric frame; ``name`` relative to the dataset root.
* pairs (read only): one line per retrieved image, ``query_name db_name`` (top-k lines per query, in
  rank order), as published by hloc / PixLoc for 7-Scenes and Cambridge.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Mapping

import numpy as np

from nerfloc_plugins.data.frames import format_error
from nerfloc_plugins.data.text_files import read_lines
from nerfloc_plugins.geometry.poses import qvec_tvec_from_w2c, w2c_from_qvec_tvec
from nerfloc_plugins.utils.atomic import write_text_atomically


def write_poses(poses_w2c: Mapping[str, np.ndarray], path: Path) -> None:
    """Write ``name -> 4x4 w2c`` as ``name qw qx qy qz tx ty tz`` lines (atomically).  A name may
    hold spaces (:func:`read_poses` takes the last 7 fields as the numbers); not line breaks."""
    lines = []
    for name, w2c in poses_w2c.items():
        if not name.strip() or "\n" in name or "\r" in name:
            raise ValueError(f"{path}: image name {name!r} cannot be written on one poses line")
        q, t = qvec_tvec_from_w2c(w2c)
        lines.append(" ".join([name, *(f"{v:.10f}" for v in q), *(f"{v:.10f}" for v in t)]))
    write_text_atomically("\n".join(lines) + ("\n" if lines else ""), path)


def read_poses(path: Path) -> Dict[str, np.ndarray]:
    """Read an hloc poses file into ``name -> 4x4 w2c`` (the name is everything before the last
    7 fields, so names with spaces read back)."""
    out: Dict[str, np.ndarray] = {}
    for line_no, line in enumerate(read_lines(path, "poses file ('name qw qx qy qz tx ty tz' lines)"), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.strip().rsplit(maxsplit=7)
        if len(parts) != 8:
            raise format_error(path, f"expected 'name qw qx qy qz tx ty tz', got {line.strip()[:80]!r}", line_no)
        try:
            values = np.array([float(v) for v in parts[1:]])
        except ValueError:
            raise format_error(path, f"expected 7 numbers after the name, got {line.strip()[:80]!r}", line_no) from None
        if not np.all(np.isfinite(values)) or np.linalg.norm(values[:4]) < 1e-12:
            raise format_error(path, "expected finite numbers and a non-zero quaternion", line_no)
        if parts[0] in out:
            raise format_error(path, f"{parts[0]!r} has a second pose line", line_no)
        out[parts[0]] = w2c_from_qvec_tvec(values[:4], values[4:])
    return out


def read_pairs(path: Path) -> "OrderedDict[str, List[str]]":
    """Read a retrieval pairs file into ``query -> [db names in rank order]``."""
    pairs: "OrderedDict[str, List[str]]" = OrderedDict()
    for line_no, line in enumerate(read_lines(path, "pairs file ('query db' lines)"), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise format_error(path, f"expected 'query_name db_name', got {line.strip()[:80]!r}", line_no)
        pairs.setdefault(parts[0], []).append(parts[1])
    return pairs


def check_pairs_cover(pairs: Mapping[str, List[str]], query_names: List[str], path: Path) -> int:
    """How many of ``query_names`` have pairs; none of them is an error (a pairs file of another
    dataset, or names relative to another root), naming an example of each side."""
    covered = sum(name in pairs for name in query_names)
    if query_names and pairs and covered == 0:
        raise format_error(
            path,
            f"names none of the {len(query_names)} queries (pairs start with {next(iter(pairs))!r}, "
            f"queries are named like {query_names[0]!r}; names are relative to the dataset root)",
        )
    return covered
