"""Paired seed differences and the verdict their interval gives (the book's verdict protocol).

A claim compares two arms (a method and its baseline) on one metric. Both arms are trained with the same
seeds, and seed ``s`` of both shares the data order, augmentation stream and initialisation of their
common parts, so the per-seed differences ``d_s = better_s - worse_s`` cancel what the seeds have in
common. Their mean and a Student-t interval over seeds,

    mean(d) +- t_{(1 + c) / 2, n - 1} * sd(d) / sqrt(n)          (c = 0.95 by default)

decide the verdict: **reproduced** when the whole interval lies above the claim's margin, **contradicted**
when it lies entirely below zero (the other direction; below the margin itself for a negative margin, a
claim of closeness), **inconclusive** when it straddles, or when fewer
than ``min_seeds`` paired seeds exist (no claim is decided by one or two seeds), and **not yet run** when an
arm has no result at all.

:func:`reidlib.results.claims.judge` applies it to every claim of the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["CONTRADICTED", "INCONCLUSIVE", "INTERVAL_VERDICTS", "NOT_YET_RUN", "REPRODUCED",
           "PairedDifference", "interval_verdict", "paired_difference"]

REPRODUCED = "reproduced"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_YET_RUN = "not yet run"
INTERVAL_VERDICTS = (REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_YET_RUN)


@dataclass(frozen=True)
class PairedDifference:
    """``better - worse`` over the seeds both arms share.

    Attributes:
        seeds: the paired seeds, sorted.
        mean: mean of the per-seed differences (the metric's units, e.g. fractions of mAP).
        low, high: the ``confidence`` t-interval of the mean (NaN with fewer than two seeds).
        confidence: e.g. 0.95.
        unpaired: seeds that only one arm has (left out of the difference).
    """

    seeds: tuple[int, ...]
    mean: float
    low: float
    high: float
    confidence: float
    unpaired: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        return len(self.seeds)


def paired_difference(better: Mapping[int, float], worse: Mapping[int, float], confidence: float = 0.95
                      ) -> PairedDifference | None:
    """The paired difference of two arms given as ``{seed: metric}``; ``None`` when they share no seed.

    Raises:
        ValueError: ``confidence`` outside (0, 1), or a non-finite metric.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    seeds = tuple(sorted(set(better) & set(worse)))
    unpaired = tuple(sorted(set(better) ^ set(worse)))
    if not seeds:
        return None
    diffs = np.array([float(better[s]) - float(worse[s]) for s in seeds])
    if not np.isfinite(diffs).all():
        raise ValueError(f"non-finite metric among the paired seeds {seeds}: differences {diffs.tolist()}")
    mean = float(diffs.mean())
    if len(diffs) < 2:
        return PairedDifference(seeds, mean, math.nan, math.nan, confidence, unpaired)
    t = stats.t.ppf((1 + confidence) / 2, len(diffs) - 1)
    half = float(t * diffs.std(ddof=1) / math.sqrt(len(diffs)))
    return PairedDifference(seeds, mean, mean - half, mean + half, confidence, unpaired)


def interval_verdict(diff: PairedDifference | None, margin: float = 0.0, min_seeds: int = 3) -> str:
    """The verdict of a claim "better beats worse by more than ``margin``" from its paired difference.

    ``None`` (an arm never ran) is *not yet run*; fewer than ``min_seeds`` paired seeds is *inconclusive*;
    otherwise *reproduced* when ``low > margin``, *contradicted* when ``high < min(0, margin)``, else
    *inconclusive*. A negative ``margin`` states a non-inferiority claim ("better is at most ``-margin``
    below worse", e.g. "scores close to the baseline"): it is contradicted only when the whole interval
    lies below ``margin``.
    """
    if min_seeds < 2:
        raise ValueError(f"min_seeds must be >= 2 (an interval needs two seeds), got {min_seeds}")
    if diff is None:
        return NOT_YET_RUN
    if diff.n < min_seeds:
        return INCONCLUSIVE
    if diff.low > margin:
        return REPRODUCED
    if diff.high < min(0.0, margin):
        return CONTRADICTED
    return INCONCLUSIVE
