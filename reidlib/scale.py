"""Run scales: how big an experiment is, chosen once per notebook or command.

Every chapter runs at one of three scales, and each chapter maps a scale to one config object:

- ``"smoke"``: seconds per run; proves the code path (CI, ``make book SCALE=smoke``).
- ``"cpu"``: the scale the committed book is executed at, minutes per chapter on a laptop CPU.
- ``"full"``: the paper's setting on the real dataset, for a GPU.

The environment variable ``REIDLIB_SCALE`` overrides whatever a notebook or command asks for, so CI can
force ``smoke`` without editing notebooks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

SCALES: tuple[str, ...] = ("smoke", "cpu", "full")
SCALE_ENV = "REIDLIB_SCALE"

T = TypeVar("T")


def _check(value: str, source: str) -> str:
    scale = value.strip().lower()
    if scale not in SCALES:
        raise ValueError(f"unknown scale {value!r} ({source}); expected one of {', '.join(SCALES)}")
    return scale


def resolve_scale(requested: str | None = None) -> str:
    """The scale to run at: ``$REIDLIB_SCALE`` if set (non-empty), else ``requested``, else ``"cpu"``.

    Raises:
        ValueError: the chosen value is not one of :data:`SCALES` (the message names its source).
    """
    env = os.environ.get(SCALE_ENV, "").strip()
    if env:
        return _check(env, f"from ${SCALE_ENV}")
    if requested is None:
        return "cpu"
    return _check(str(requested), "requested")


def reported_scales(scale: str) -> tuple[str, ...]:
    """The scales a cross-scale book page (results overview, claims ledger) reports when built at ``scale``.

    Every scale but ``smoke``, unless the book itself is built at ``smoke``: smoke numbers are meaningless,
    and ``make test`` leaves its smoke results files on disk, where a later ``cpu`` build that writes the
    committed pages would otherwise count them.

    Raises:
        ValueError: ``scale`` is unknown.
    """
    scale = _check(str(scale), "argument")
    return SCALES if scale == "smoke" else tuple(s for s in SCALES if s != "smoke")


def select(scale: str, options: Mapping[str, T]) -> T:
    """Pick the entry of ``options`` (keyed by scale name) for ``scale``.

    A chapter writes ``cfg = select(scale, {"smoke": SMOKE, "cpu": CPU, "full": FULL})``.

    Raises:
        ValueError: ``scale`` is unknown, or ``options`` has no entry for it or has unknown keys.
    """
    scale = _check(str(scale), "argument")
    unknown = sorted(set(options) - set(SCALES))
    if unknown:
        raise ValueError(f"options have unknown scale keys {unknown}; expected a subset of {list(SCALES)}")
    if scale not in options:
        raise ValueError(f"no option for scale {scale!r}; options cover {sorted(options)}")
    return options[scale]
