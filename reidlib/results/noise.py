"""Seed-to-seed spread of a metric: a chapter trains one setting with several seeds, and the range of a
metric over them is how far two single-seed runs of that setting can land apart. (Claims are decided by
paired-seed intervals, :mod:`reidlib.results.intervals`.)"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def spread(values: Iterable[float]) -> dict[str, float]:
    """``{"n", "mean", "std", "range", "min", "max"}`` of the finite ``values`` (NaN entries are dropped;
    ``std`` needs two values, the rest one, otherwise NaN)."""
    v = np.asarray(list(values), dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return {"n": 0, **dict.fromkeys(("mean", "std", "range", "min", "max"), math.nan)}
    return {"n": len(v), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
            "range": float(v.max() - v.min()), "min": float(v.min()), "max": float(v.max())}
