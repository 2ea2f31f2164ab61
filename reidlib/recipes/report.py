"""Report helpers every chapter shares: its stored runs, the paper's numbers beside ours, metric lookup,
the seed spread of a setting and the claims section.

Everything here reads results files (never a model in memory), so a chapter's tables and prose show what
its runs wrote; verdicts come from :mod:`reidlib.results.claims`. Our metrics are stored as fractions;
:func:`percent` and the tables built on it show
percent, like the papers.
"""

from __future__ import annotations

import math
import os
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from reidlib.results import noise
from reidlib.results.paper_numbers import load_paper_numbers
from reidlib.results.store import RunRecord, list_runs, load_run

__all__ = ["arm_cell", "arm_mean", "arm_points", "arm_records", "arm_spread", "arm_stats", "backbone_cell",
           "chapter_records", "claims_summary", "claims_table", "dataset_cell", "family_table",
           "initialisation", "labelled_points", "metric", "paper_beside_ours", "paper_table_with_ours",
           "paper_tables_beside_ours", "paper_value", "percent", "seed_spread", "sweep_points",
           "verdict_text"]


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


def arm_records(records: Mapping[str, RunRecord], run: str) -> list[RunRecord]:
    """The runs of one arm: ``run`` and its seed replicas ``<run>_seed<k>`` (ordered by ``k``), the runs a
    claim's verdict pairs seed by seed."""
    pattern = re.compile(rf"{re.escape(run)}_seed(\d+)")
    replicas = sorted((int(m.group(1)), name) for name in records if (m := pattern.fullmatch(name)))
    return ([records[run]] if run in records else []) + [records[name] for _, name in replicas]


def arm_points(records: Mapping[str, RunRecord], run: str, name: str = "mAP", factor: float = 100.0
               ) -> list[tuple[int | None, float]]:
    """``(seed, factor * metric)`` of each run of the arm ``run`` that has the metric (percent by
    default)."""
    points = [(rec.seed, metric(rec, name, factor)) for rec in arm_records(records, run)]
    return [(seed, value) for seed, value in points if math.isfinite(value)]


def labelled_points(records: Mapping[str, RunRecord], runs: Mapping[str, str], name: str = "mAP"
                    ) -> pd.DataFrame:
    """Long table of several arms for :func:`reidlib.figures.runs.arms_figure`: ``label`` (e.g. the
    paper's row), ``run``, ``seed`` and ``name`` (percent) of every seed of every arm of ``runs``
    (label -> run)."""
    rows = [{"label": label, "run": run, "seed": seed, name: value}
            for label, run in runs.items() for seed, value in arm_points(records, run, name)]
    return pd.DataFrame(rows, columns=["label", "run", "seed", name])


def arm_mean(records: Mapping[str, RunRecord], run: str, name: str = "mAP", factor: float = 100.0) -> float:
    """Seed mean of ``factor * metric`` over the arm ``run`` (percent by default); NaN when no run has it."""
    values = [v for _, v in arm_points(records, run, name, factor)]
    return statistics.fmean(values) if values else math.nan


def arm_stats(records: Mapping[str, RunRecord], run: str, name: str = "mAP", factor: float = 100.0
              ) -> tuple[float, float, int]:
    """``(seed mean, sample standard deviation, seeds)`` of ``factor * metric`` over the arm ``run``;
    the deviation is NaN below two seeds, both are NaN with none."""
    values = [v for _, v in arm_points(records, run, name, factor)]
    if not values:
        return math.nan, math.nan, 0
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return statistics.fmean(values), sd, len(values)


def arm_cell(records: Mapping[str, RunRecord], run: str, name: str = "mAP", factor: float = 100.0,
             digits: int = 1) -> str:
    """A table cell for the arm ``run``: ``"41.2 ± 0.8 (3)"`` (seed mean, sample standard deviation,
    seeds), ``"41.2 (1 seed)"``, or ``"not run"``."""
    values = [v for _, v in arm_points(records, run, name, factor)]
    if not values:
        return "not run"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1 seed)"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f} ({len(values)})"


def arm_spread(records: Mapping[str, RunRecord], run: str, metric_name: str = "mAP") -> dict[str, float]:
    """:func:`seed_spread` of the arm ``run`` (the run and its seed replicas): how far one setting's
    seeds land apart."""
    names = [name for name, rec in records.items() if any(rec is r for r in arm_records(records, run))]
    return seed_spread(records, names, metric_name)


def paper_beside_ours(chapter: str, records: Mapping[str, RunRecord], settings: Mapping[str, str],
                      metrics: Sequence[str], dataset: str, index: str = "setting") -> pd.DataFrame:
    """A paper table beside ours: one row per ``setting -> our run``, the paper's ``metrics`` on ``dataset``
    (percent, as printed; NaN where it has none), then our arm cells (seed mean ± sd, seeds)."""
    rows = []
    for setting, run in settings.items():
        row: dict[str, object] = {index: setting, "our run": run}
        row |= {f"paper {m}": paper_value(chapter, setting, dataset, m) for m in metrics}
        row |= {f"ours {m}": arm_cell(records, run, m) for m in metrics}
        rows.append(row)
    return pd.DataFrame(rows).set_index(index)


def paper_tables_beside_ours(chapter: str, records: Mapping[str, RunRecord], runs: Mapping[str, str],
                             datasets: Sequence[str], metrics: Sequence[str] = ("rank1", "mAP"),
                             prefix: str = "", index: str = "setting") -> pd.DataFrame:
    """A paper's ablation table on several datasets beside ours: a row per paper row (``runs``: row ->
    our run), the paper's ``metrics`` on each of ``datasets`` (the paper's setting is ``prefix + row``;
    NaN where it has none), then our arm cells (seed mean ± sd, seeds)."""
    rows = []
    for setting, run in runs.items():
        row: dict[str, object] = {index: setting, "our run": run}
        for ds in datasets:
            row |= {f"paper {m}, {ds}": paper_value(chapter, f"{prefix}{setting}", ds, m) for m in metrics}
        row |= {f"ours {m}": arm_cell(records, run, m) for m in metrics}
        rows.append(row)
    return pd.DataFrame(rows).set_index(index)


def paper_table_with_ours(chapter: str, records: Mapping[str, RunRecord], dataset: str,
                          sources: Sequence[str], ours: Mapping[str, str],
                          metrics: Sequence[str] = ("mAP", "rank1")) -> pd.DataFrame:
    """A comparison table of the paper (e.g. with the state of the art) as printed: the rows of
    ``sources`` on ``dataset``, sorted by the first metric and labelled ``(paper)``, then one row per
    ``label -> run`` of ``ours`` (arm cells: seed mean ± sd, seeds), labelled with our dataset."""
    table = load_paper_numbers(chapter)
    table = table[(table["dataset"] == dataset) & table["source"].isin(list(sources))]
    wide = table.pivot_table(index="setting", columns="metric", values="value", aggfunc="first")
    wide = wide.reindex(columns=list(metrics)).sort_values(metrics[0])
    wide.index = [f"{s} (paper)" for s in wide.index]
    wide = wide.round(1).astype(object)
    for label, run in ours.items():
        rec = records.get(run)
        if rec is None:
            continue
        row = pd.DataFrame({m: [arm_cell(records, run, m)] for m in metrics},
                           index=[f"{label}, ours on {rec.dataset} (seed mean ± sd)"])
        wide = pd.concat([wide, row])
    wide.index.name = dataset
    return wide


def sweep_points(records: Mapping[str, RunRecord], runs: Mapping[float, str], x: str) -> pd.DataFrame:
    """Long table of a sweep: for each ``x -> run`` and each seed of the run's arm, its mAP and rank-1
    (percent)."""
    rows = []
    for value, run in runs.items():
        for rec in arm_records(records, run):
            rows.append({x: value, "run": run, "seed": rec.seed, "mAP": percent(rec, "mAP"),
                         "rank1": percent(rec, "rank1")})
    return pd.DataFrame(rows, columns=[x, "run", "seed", "mAP", "rank1"])


def family_table(records: Mapping[str, RunRecord], runs: Sequence[str]) -> pd.DataFrame:
    """mAP against the whole gallery vs against the query's own look-alike family only (SynthReID)."""
    rows = [{"run": r, "mAP (%)": arm_cell(records, r),
             "mAP within the family (%)": arm_cell(records, r, "family.mAP"),
             "rank-1 within the family (%)": arm_cell(records, r, "family.rank1")} for r in runs]
    return pd.DataFrame(rows).set_index("run")


def initialisation(pretrained: bool, base_width: int) -> str:
    """What a backbone starts from, for parameter tables: ImageNet (width 64), the SynthReID trunk
    (narrow, :mod:`reidlib.recipes.pretrain`) or random init."""
    if not pretrained:
        return "random init"
    return "ImageNet" if base_width == 64 else "SynthReID trunk"


def dataset_cell(cfg: Any) -> str:
    """A parameter table's dataset cell: ``synthreid (small)`` or the registry name."""
    return f"{cfg.dataset}" + (f" ({cfg.synth_preset})" if cfg.dataset == "synthreid" else "")


def backbone_cell(cfg: Any) -> str:
    """A parameter table's backbone cell: depth, width, initialisation and stage-4 stride of ``cfg``."""
    width = "" if cfg.base_width == 64 else f" at width {cfg.base_width}/64"
    return (f"ResNet-{cfg.depth}{width}, {initialisation(cfg.pretrained, cfg.base_width)}, stage-4 stride "
            f"{cfg.last_stride}")


def claims_table(claims: pd.DataFrame) -> pd.DataFrame:
    """The chapter's claims section from :func:`reidlib.results.claims.evaluate_claims` at one scale:
    one row per claim (index ``id``) with ``claim``, ``verdict``, ``difference (points)`` (the mean paired
    difference that decided it, percentage points for rates), ``95% interval (points)``, ``paired seeds``,
    ``detail`` and ``paper_evidence``."""
    out = claims.copy()
    points = lambda col: (100 * pd.to_numeric(out[col], errors="coerce")).round(2)  # noqa: E731
    out["difference (points)"] = points("margin")
    low, high = points("low"), points("high")
    out["95% interval (points)"] = [f"[{lo:+.2f}, {hi:+.2f}]" if pd.notna(lo) and pd.notna(hi) else "none"
                                    for lo, hi in zip(low, high, strict=True)]
    out["paired seeds"] = out["seeds"].astype(int)
    return out[["id", "claim", "verdict", "difference (points)", "95% interval (points)", "paired seeds",
                "detail", "paper_evidence"]].set_index("id")


def claims_summary(table: pd.DataFrame, scale: str) -> str:
    """Markdown: how many of the chapter's claims are reproduced, contradicted, inconclusive and not yet
    run at ``scale``, how many lack the paired seeds an interval needs, and each contradicted claim with
    its evidence. ``table`` is a :func:`claims_table`."""
    from reidlib.results.claims import CONTRADICTED, MIN_SEEDS, VERDICTS

    counts = table["verdict"].value_counts()
    phrase = ", ".join(f"{int(counts.get(v, 0))} {v}" for v in VERDICTS)
    short = int(((table["paired seeds"] > 0) & (table["paired seeds"] < MIN_SEEDS)).sum())
    lines = [f"At `{scale}` scale, of {len(table)} claims: {phrase}. A claim is reproduced only when the 95% "
             f"interval of its paired-seed difference clears its margin; {short} claims have fewer than "
             f"{MIN_SEEDS} paired seeds, so no interval can decide them and they stay inconclusive."]
    lines += [f"- **{cid}** (contradicted): {row['claim']} ({row['detail']})"
              for cid, row in table[table["verdict"] == CONTRADICTED].iterrows()]
    return "\n".join(lines)


def verdict_text(table: pd.DataFrame) -> dict[str, str]:
    """``claim id -> verdict`` for prose; ``table`` is a :func:`claims_table`."""
    return table["verdict"].to_dict()
