"""Ranges of numeric options, declared beside the field and checked before a command runs.

A config field annotated ``Annotated[int, AtLeast(1)]`` (tyro ignores the marker) is checked by
:func:`check_ranges`, which walks nested dataclass configs and names a bad value the way the
command line spells it: ``--retrieval.top-k 0: expected a number >= 1``.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Iterator, Optional, Tuple


@dataclass(frozen=True)
class AtLeast:
    """A finite number ``>= minimum`` (``exclusive``: ``> minimum``)."""

    minimum: float
    exclusive: bool = False

    def problem(self, value: float) -> Optional[str]:
        ok = value > self.minimum if self.exclusive else value >= self.minimum
        if not math.isfinite(value) or not ok:
            return f"expected a number {'>' if self.exclusive else '>='} {self.minimum:g}"
        return None


@dataclass(frozen=True)
class Between:
    """A number in ``[low, high]`` (``exclusive``: in ``(low, high)``)."""

    low: float
    high: float
    exclusive: bool = False

    def problem(self, value: float) -> Optional[str]:
        ok = self.low < value < self.high if self.exclusive else self.low <= value <= self.high
        if not math.isfinite(value) or not ok:
            brackets = "()" if self.exclusive else "[]"
            return f"expected a number in {brackets[0]}{self.low:g}, {self.high:g}{brackets[1]}"
        return None


POSITIVE = AtLeast(0, exclusive=True)
COUNT = AtLeast(1)
NON_NEGATIVE = AtLeast(0)


def ranges_of(config_type: type) -> Iterator[Tuple[str, Any]]:
    """``(field name, range marker)`` for the annotated fields of a dataclass type."""
    hints = typing.get_type_hints(config_type, include_extras=True)
    for item in fields(config_type):
        for marker in getattr(hints.get(item.name), "__metadata__", ()):
            if isinstance(marker, (AtLeast, Between)):
                yield item.name, marker


def check_ranges(config: Any, prefix: str = "--") -> None:
    """Raise ``ValueError`` naming the first option of ``config`` (a nested dataclass) outside its
    declared range; ``None`` values (unset options) are not checked."""
    if not is_dataclass(config) or isinstance(config, type):
        return
    markers = dict(ranges_of(type(config)))
    hints = typing.get_type_hints(type(config), include_extras=True)
    for item in fields(config):
        value = getattr(config, item.name)
        flag = prefix + item.name.replace("_", "-")
        marker = markers.get(item.name)
        if marker is not None and value is not None:
            values = value if isinstance(value, (list, tuple)) else [value]
            for v in values:
                problem = marker.problem(float(v))
                if problem is not None:
                    raise ValueError(f"{flag} {v}: {problem}")
        if is_dataclass(value):
            flat = any(getattr(m, "name", None) == "" for m in getattr(hints.get(item.name), "__metadata__", ()))
            check_ranges(value, prefix if flat else flag + ".")
