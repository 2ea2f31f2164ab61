"""Seed-to-seed spread of a metric and which claim verdicts fall inside it.

A chapter trains one setting with several seeds; the range of a metric over them is how far two
single-seed runs can land apart. A claim decided by less than that range could flip with another seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd


def spread(values: Iterable[float]) -> dict[str, float]:
    """``{"n", "mean", "std", "range", "min", "max"}`` of the finite ``values`` (NaN entries are dropped;
    ``std`` needs two values, the rest one, otherwise NaN)."""
    v = np.asarray(list(values), dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return {"n": 0, **dict.fromkeys(("mean", "std", "range", "min", "max"), math.nan)}
    return {"n": len(v), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
            "range": float(v.max() - v.min()), "min": float(v.min()), "max": float(v.max())}


def within_noise(claims: pd.DataFrame, spreads: Mapping[str, float]) -> pd.Series:
    """Per claim (rows with ``metric`` and ``margin`` as fractions): True when ``|margin|`` in percentage
    points is below ``spreads[metric]`` (points), False when above, ``None`` when the metric has no
    measured spread or the claim no margin."""
    out = []
    margins = pd.to_numeric(claims["margin"], errors="coerce")
    for metric, margin in zip(claims["metric"], margins, strict=True):
        s = spreads.get(metric, math.nan)
        out.append(None if math.isnan(s) or math.isnan(margin) else bool(abs(100 * margin) < s))
    return pd.Series(out, index=claims.index, dtype=object)
