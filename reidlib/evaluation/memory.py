"""Memory bounds for the evaluation of large retrieval sets: parsing ``"6GB"``-style sizes and the error
raised, before any large allocation, when a bound cannot be met."""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


class MemoryBoundError(ValueError):
    """The work cannot be done within the given memory bound (the message names the sizes)."""


def parse_memory(value: int | float | str, name: str = "max_memory") -> int:
    """Bytes of a memory size: an integer number of bytes, or a string such as ``"6GB"`` (10**9 bytes per
    GB), ``"6GiB"`` (2**30), ``"512 MB"`` or ``"1.5G"``.

    Raises:
        ValueError: not a positive size; the message names ``name`` and the value.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a number of bytes or a size such as '6GB', got {value!r}")
    if isinstance(value, (int, float)):
        size = float(value)
    else:
        m = _SIZE_RE.match(str(value))
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(f"{name}: expected a number of bytes or a size such as '6GB' or '512MiB', "
                             f"got {value!r}")
        size = float(m.group(1)) * _UNITS[unit]
    if not size >= 1:
        raise ValueError(f"{name}: expected a positive size, got {value!r}")
    return int(size)


def format_bytes(n: float) -> str:
    """``n`` bytes in GB or MB (powers of ten), e.g. ``"3.83 GB"``."""
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"
