"""On ``PYTHONPATH`` with ``NERFLOC_RECORD_IMPORTS=FILE``: every Python process appends, at exit, the
top-level modules it imported to FILE (one per line), and the weight files it opened from installed
packages as ``weights:<file name>`` - how the GPU check's dry run learns what its steps need, so the
wheel kit (``kit.py``) can be checked against it."""

import atexit
import builtins
import os
import sys

_opened = set()


def _record() -> None:
    names = sorted({name.split(".")[0] for name in list(sys.modules)} | {f"weights:{n}" for n in _opened})
    with builtins.open(os.environ["NERFLOC_RECORD_IMPORTS"], "a") as handle:
        handle.write("\n".join(names) + "\n")


if os.environ.get("NERFLOC_RECORD_IMPORTS"):
    _open = builtins.open

    def _recording_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and str(file).endswith((".pth", ".pt", ".ckpt")):
            _opened.add(os.path.basename(str(file)))
        return _open(file, *args, **kwargs)

    builtins.open = _recording_open
    atexit.register(_record)
