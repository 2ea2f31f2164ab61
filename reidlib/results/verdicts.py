"""Summaries of the claims ledger (:func:`reidlib.results.claims.ledger`): verdicts counted per scale and
per chapter, and a sentence-ready list of counts.

The verdicts and their order come from :data:`reidlib.results.claims.VERDICTS`, so a verdict added there
is counted here without changes; a verdict found in a table but missing from ``VERDICTS`` is counted
too, after the known ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from reidlib.results.claims import VERDICTS, verdict_counts


def verdict_order(table: pd.DataFrame | None = None, scales: Iterable[str] = ()) -> list[str]:
    """:data:`~reidlib.results.claims.VERDICTS` in order, then any other verdict found in ``table``'s
    ``scales`` columns (sorted)."""
    order = list(VERDICTS)
    if table is not None:
        found = {v for s in scales if s in table for v in table[s].dropna().unique()}
        order += sorted(str(v) for v in found - set(order))
    return order


def verdicts_by_scale(table: pd.DataFrame, scales: Sequence[str]) -> pd.DataFrame:
    """How many claims got each verdict, per scale.

    Returns:
        Integer counts; rows: the verdicts of :func:`verdict_order` (index named ``verdict``), columns:
        ``scales`` in the given order.
    """
    counts = verdict_counts(table, scales)
    extra = [v for v in verdict_order(table, scales) if v not in counts.index]
    for verdict in extra:
        counts.loc[verdict] = [int((table[s] == verdict).sum()) if s in table else 0 for s in scales]
    counts.index.name = "verdict"
    return counts.astype(int)


def verdicts_per_chapter(table: pd.DataFrame, chapters: Sequence[str], scales: Sequence[str]) -> pd.DataFrame:
    """How many claims of each chapter got each verdict, per scale.

    Returns:
        Integer counts; rows: every ``(chapter, scale)`` pair of ``chapters`` x ``scales`` in that order
        (two-level index, zero rows counted as 0), columns: the verdicts of :func:`verdict_order`.
    """
    order = verdict_order(table, scales)
    index = pd.MultiIndex.from_product([list(chapters), list(scales)], names=["chapter", "scale"])
    if not len(table):
        return pd.DataFrame(0, index=index, columns=order)
    long = table.melt(id_vars=["chapter"], value_vars=list(scales), var_name="scale", value_name="verdict")
    counts = (long.groupby(["chapter", "scale", "verdict"]).size().unstack("verdict", fill_value=0)
              .reindex(columns=order, fill_value=0))
    return counts.reindex(index, fill_value=0).astype(int)


def count_phrase(counts: Mapping[str, int]) -> str:
    """``"2 reproduced, 0 contradicted, 20 inconclusive, 3 not yet run"``: each count followed by its label,
    in the mapping's order (e.g. one column of :func:`verdicts_by_scale`)."""
    return ", ".join(f"{int(n)} {label}" for label, n in counts.items())
