import math

import pytest

from reidlib.results.intervals import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_YET_RUN,
    REPRODUCED,
    interval_verdict,
    paired_difference,
)


def test_paired_t_interval_by_hand():
    # differences 0.02, 0.04, 0.06: mean 0.04, sd 0.02, t(0.975, 2) = 4.302653 -> half 0.049683
    d = paired_difference({0: 0.52, 1: 0.54, 2: 0.56}, {0: 0.50, 1: 0.50, 2: 0.50})
    assert d.seeds == (0, 1, 2) and d.n == 3
    assert d.mean == pytest.approx(0.04)
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert (d.low, d.high) == (pytest.approx(0.04 - half, abs=1e-6), pytest.approx(0.04 + half, abs=1e-6))


def test_only_shared_seeds_are_paired():
    d = paired_difference({0: 1.0, 1: 2.0, 5: 9.0}, {0: 0.5, 1: 1.0, 7: 0.0})
    assert d.seeds == (0, 1) and d.unpaired == (5, 7) and d.mean == pytest.approx(0.75)
    assert paired_difference({0: 1.0}, {1: 1.0}) is None
    single = paired_difference({0: 1.0}, {0: 0.5})
    assert single.n == 1 and math.isnan(single.low)


def test_the_four_verdicts():
    above = paired_difference({s: 0.60 + 0.01 * s for s in range(4)}, {s: 0.50 for s in range(4)})
    straddles = paired_difference({0: 0.52, 1: 0.47, 2: 0.51}, {0: 0.50, 1: 0.50, 2: 0.50})
    below = paired_difference({s: 0.40 - 0.01 * s for s in range(3)}, {s: 0.50 for s in range(3)})
    two_seeds = paired_difference({0: 0.9, 1: 0.91}, {0: 0.1, 1: 0.1})
    assert interval_verdict(above) == REPRODUCED
    assert interval_verdict(above, margin=0.2) == INCONCLUSIVE  # the interval does not clear the margin
    assert interval_verdict(straddles) == INCONCLUSIVE
    assert interval_verdict(below) == CONTRADICTED
    assert interval_verdict(None) == NOT_YET_RUN  # an arm never ran
    assert interval_verdict(two_seeds) == INCONCLUSIVE  # a huge gap on two seeds decides nothing


def test_a_negative_margin_is_a_non_inferiority_claim():
    # "better is at most 3 points below worse": 2 points below, tightly, is reproduced; 5 points below,
    # tightly, is contradicted; an interval across -0.03 decides nothing
    close = paired_difference({0: 0.48, 1: 0.481, 2: 0.479}, {0: 0.50, 1: 0.50, 2: 0.50})
    far = paired_difference({0: 0.45, 1: 0.451, 2: 0.449}, {0: 0.50, 1: 0.50, 2: 0.50})
    across = paired_difference({0: 0.46, 1: 0.49, 2: 0.47}, {0: 0.50, 1: 0.50, 2: 0.50})
    assert interval_verdict(close, margin=-0.03) == REPRODUCED
    assert interval_verdict(close) == CONTRADICTED  # as a superiority claim it fails
    assert interval_verdict(far, margin=-0.03) == CONTRADICTED
    assert interval_verdict(across, margin=-0.03) == INCONCLUSIVE


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="confidence"):
        paired_difference({0: 1.0}, {0: 1.0}, confidence=1.5)
    with pytest.raises(ValueError, match="non-finite"):
        paired_difference({0: float("nan"), 1: 1.0}, {0: 1.0, 1: 1.0})
    with pytest.raises(ValueError, match="min_seeds"):
        interval_verdict(None, min_seeds=1)
