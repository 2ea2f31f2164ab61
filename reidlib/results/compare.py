"""Compare two trees of results files (``make reproduce``: a fresh run against the committed one).

Provenance and timings are expected to differ and are ignored (the top-level ``provenance`` and
``wall_time_s``, and at any depth the timing fields in :data:`TIMING_KEYS`, e.g. the per-epoch ``time_s``
of a training history); everything else (metrics, config, history, extra, seed, dataset) is compared value
by value, and every difference is reported.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reidlib.results.store import VOLATILE_KEYS

#: Field names holding measured durations or speeds, ignored wherever they appear.
TIMING_KEYS = frozenset({"time_s", "wall_time_s", "images_per_s", "seconds", "elapsed_s", "timestamp_utc"})


def _diff(a: Any, b: Any, where: str, rtol: float, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted((set(a) | set(b)) - TIMING_KEYS, key=str):
            name = f"{where}.{key}" if where else str(key)
            if key not in b:
                out.append(f"{name}: only in reference ({_short(a[key])})")
            elif key not in a:
                out.append(f"{name}: only in new run ({_short(b[key])})")
            else:
                _diff(a[key], b[key], name, rtol, out)
        return
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: length {len(a)} -> {len(b)}")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):  # length mismatch reported above
            _diff(x, y, f"{where}[{i}]", rtol, out)
        return
    numeric = (int, float)
    if (
        isinstance(a, numeric)
        and isinstance(b, numeric)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        if a == b or (rtol > 0 and math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)):
            return
        out.append(f"{where}: {a!r} -> {b!r} (diff {b - a:+.3g})")
        return
    if a != b:
        out.append(f"{where}: {_short(a)} -> {_short(b)}")


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def compare_files(reference: str | os.PathLike, new: str | os.PathLike, rtol: float = 0.0) -> list[str]:
    """Differences between two results files (volatile keys ignored); empty when they agree."""
    a = {k: v for k, v in json.loads(Path(reference).read_text()).items() if k not in VOLATILE_KEYS}
    b = {k: v for k, v in json.loads(Path(new).read_text()).items() if k not in VOLATILE_KEYS}
    out: list[str] = []
    _diff(a, b, "", rtol, out)
    return out


def compare_trees(
    reference_root: str | os.PathLike,
    new_root: str | os.PathLike,
    scale: str = "cpu",
    chapters: Iterable[str] | None = None,
    rtol: float = 0.0,
) -> list[str]:
    """Every difference between ``<reference_root>/<chapter>/<scale>/*.json`` and the same under ``new_root``.

    Each line starts with ``<chapter>/<scale>/<run>.json``. Files present on one side only are reported.
    ``chapters`` restricts the comparison (default: every chapter found on either side).
    """
    ref, new = Path(reference_root), Path(new_root)
    wanted = set(chapters) if chapters is not None else set()

    def runs(root: Path) -> set[str]:
        found = set()
        for path in root.glob(f"*/{scale}/*.json"):
            chapter = path.parent.parent.name
            if chapters is None or chapter in wanted:
                found.add(path.relative_to(root).as_posix())
        return found

    left, right = runs(ref), runs(new)
    out: list[str] = []
    for rel in sorted(left | right):
        if rel not in right:
            out.append(f"{rel}: not produced by the new run")
        elif rel not in left:
            out.append(f"{rel}: new (no committed reference)")
        else:
            out.extend(f"{rel}: {line}" for line in compare_files(ref / rel, new / rel, rtol))
    return out
