"""Report helpers every chapter shares: its stored runs, the paper's numbers beside ours, metric lookup,
the seed spread of a setting and the claims section.

Everything here reads results files (never a model in memory), so a chapter's tables and prose show what
its runs wrote. Our metrics are stored as fractions; :func:`percent` and the tables built on it show
percent, like the papers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from reidlib.results import noise
from reidlib.results.paper_numbers import load_paper_numbers
from reidlib.results.store import RunRecord, list_runs, load_run

__all__ = ["chapter_records", "claims_summary", "claims_table", "metric", "paper_value", "percent",
           "seed_spread", "verdict_text", "within_noise"]


def chapter_records(chapter: str, scale: str, root: str | os.PathLike | None = None) -> dict[str, RunRecord]:
    """Every stored run of ``chapter`` at ``scale``: ``{run name: record}`` (empty when none ran)."""
    return {name: load_run(chapter, name, scale, root) for name in list_runs(chapter, scale, root)}


def metric(record: RunRecord | None, name: str, factor: float = 1.0) -> float:
    """``factor`` times the metric ``name`` of ``record`` (dots reach nested metrics, e.g.
    ``"family.mAP"``); NaN when the run or the metric is missing."""
    if record is None:
        return math.nan
    try:
        return factor * float(record.metric(name))
    except (KeyError, TypeError):
        return math.nan


def percent(record: RunRecord | None, name: str) -> float:
    """:func:`metric` in percent (NaN when missing)."""
    return metric(record, name, 100.0)


def paper_value(chapter: str, setting: str, dataset: str, metric_name: str = "mAP") -> float:
    """A number the paper reports (percent), from ``book/data/paper_numbers/<chapter>.csv``; NaN if the
    paper has none for that setting, dataset and metric."""
    table = load_paper_numbers(chapter)
    hit = table[(table["dataset"] == dataset) & (table["setting"] == setting)
                & (table["metric"] == metric_name)]
    return float(hit["value"].iloc[0]) if len(hit) else math.nan


def seed_spread(records: Mapping[str, RunRecord], runs: Iterable[str], metric_name: str = "mAP"
                ) -> dict[str, float]:
    """The spread of ``metric_name`` (percent) over the stored ``runs`` (one setting trained with several
    seeds): :func:`reidlib.results.noise.spread` (``n``, ``mean``, ``std``, ``range``, ``min``, ``max``).

    ``range`` is how far two single-seed runs of one setting landed apart.
    """
    return noise.spread(percent(records[r], metric_name) for r in runs if r in records)


def within_noise(claims: pd.DataFrame, records: Mapping[str, RunRecord], runs: Sequence[str],
                 metrics: Sequence[str] = ("mAP", "rank1")) -> pd.Series:
    """Per claim: was its verdict decided by less than the seed-to-seed range of ``runs`` in the claim's
    metric? ``None`` for metrics without a measured spread."""
    return noise.within_noise(claims, {m: seed_spread(records, runs, m)["range"] for m in metrics})


def claims_table(claims: pd.DataFrame, records: Mapping[str, RunRecord], runs: Sequence[str],
                 metrics: Sequence[str] = ("mAP", "rank1")) -> pd.DataFrame:
    """The chapter's claims section: one row per claim (index ``id``) with ``claim``, ``verdict``,
    ``margin (points)`` (the deciding difference in percentage points), ``within seed noise``
    (:func:`within_noise` of ``runs``), ``detail`` and ``paper_evidence``."""
    out = claims.copy()
    out["margin (points)"] = (100 * pd.to_numeric(out["margin"], errors="coerce")).round(2)
    out["within seed noise"] = within_noise(claims, records, runs, metrics)
    return out[["id", "claim", "verdict", "margin (points)", "within seed noise", "detail",
                "paper_evidence"]].set_index("id")


def claims_summary(table: pd.DataFrame, scale: str, spread_range: float, spread_of: str) -> str:
    """Markdown: how many of the chapter's claims reproduce at ``scale``, how many verdicts fall within
    the seed spread (``spread_range`` points of mAP, measured on ``spread_of``), and each claim that does
    not reproduce with its evidence. ``table`` is a :func:`claims_table`."""
    from reidlib.results.claims import NOT_REPRODUCED, REPRODUCED

    failed = table[table["verdict"] == NOT_REPRODUCED]
    held = table[table["verdict"] == REPRODUCED]
    noisy = table[table["within seed noise"].map(lambda v: v is True)]
    measured = table[table["within seed noise"].notna()]
    clear = measured[measured["within seed noise"].map(lambda v: v is False)]
    lines = [f"At `{scale}` scale, {len(held)} of {len(table)} claims reproduce and {len(failed)} do not; "
             f"{len(noisy)} verdicts were decided by less than the seed-to-seed range of {spread_of} in the "
             f"same metric ({spread_range:.1f} points for mAP) and could flip with another seed. Of the "
             f"{len(measured)} claims with a measured spread, {len(clear)} were decided by more than it."]
    lines += [f"- **{cid}**: {row['claim']} ({row['detail']})" for cid, row in failed.iterrows()]
    return "\n".join(lines)


def verdict_text(table: pd.DataFrame) -> dict[str, str]:
    """``claim id -> verdict`` for prose, with ", within seed noise" appended where the deciding margin is
    smaller than the seed spread. ``table`` is a :func:`claims_table`."""
    return {cid: row["verdict"] + (", within seed noise" if row["within seed noise"] is True else "")
            for cid, row in table.iterrows()}

