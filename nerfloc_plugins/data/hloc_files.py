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
from nerfloc_plugins.geometry.poses import qvec_tvec_from_w2c, w2c_from_qvec_tvec
from nerfloc_plugins.utils.atomic import write_text_atomically


def write_poses(poses_w2c: Mapping[str, np.ndarray], path: Path) -> None:
    """Write ``name -> 4x4 w2c`` as ``name qw qx qy qz tx ty tz`` lines (atomically)."""
    lines = []
    for name, w2c in poses_w2c.items():
        q, t = qvec_tvec_from_w2c(w2c)
        lines.append(" ".join([name, *(f"{v:.10f}" for v in q), *(f"{v:.10f}" for v in t)]))
    write_text_atomically("\n".join(lines) + ("\n" if lines else ""), path)


def read_poses(path: Path) -> Dict[str, np.ndarray]:
    """Read an hloc poses file into ``name -> 4x4 w2c``."""
    out: Dict[str, np.ndarray] = {}
    for line_no, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 8:
            raise format_error(path, f"expected 'name qw qx qy qz tx ty tz', got {line.strip()!r}", line_no)
        try:
            values = np.array([float(v) for v in parts[1:]])
            out[parts[0]] = w2c_from_qvec_tvec(values[:4], values[4:])
        except ValueError as err:
            raise format_error(path, f"expected 7 numbers and a non-zero quaternion ({err})", line_no) from err
    return out


def read_pairs(path: Path) -> "OrderedDict[str, List[str]]":
    """Read a retrieval pairs file into ``query -> [db names in rank order]``."""
    pairs: "OrderedDict[str, List[str]]" = OrderedDict()
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise format_error(path, f"cannot read pairs file ({err.strerror}); expected 'query db' lines") from err
    for line_no, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise format_error(path, f"expected 'query_name db_name', got {line.strip()!r}", line_no)
        pairs.setdefault(parts[0], []).append(parts[1])
    return pairs
