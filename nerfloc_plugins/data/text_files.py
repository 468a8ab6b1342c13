"""The one reader of the text files of datasets and results (split files, pose files, pose lists,
pairs, query lists, calibration files): UTF-8 (or ASCII) text, with or without a byte-order mark.

Every failure is a :class:`~nerfloc_plugins.data.errors.DatasetFormatError` naming the file and
what was expected: a missing or unreadable file, a folder, UTF-16 / UTF-32 text (Windows
editors' "Unicode"), bytes that are not UTF-8 (with their offset), NUL bytes (a binary file).
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import List

from nerfloc_plugins.data.errors import format_error

_WIDE_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}


def read_text(path: Path, what: str) -> str:
    """The text of ``path`` (a ``what``, e.g. "split file"); a UTF-8 byte-order mark is dropped."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise format_error(path, f"is a folder; expected a {what}") from None
    except OSError as err:
        raise format_error(path, f"cannot read {what} ({err.strerror or err})") from None
    for bom, encoding in _WIDE_BOMS.items():
        if data.startswith(bom):
            raise format_error(path, f"{what} is {encoding} text; expected UTF-8 (save it as UTF-8)")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise format_error(
            path, f"{what} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})"
        ) from None
    if "\x00" in text:
        raise format_error(path, f"{what} holds NUL bytes (a binary file?); expected text")
    return text


def read_lines(path: Path, what: str) -> List[str]:
    """The lines of ``path`` (see :func:`read_text`), without line endings."""
    return read_text(path, what).splitlines()
