"""The papers' reported numbers, as data, and our numbers beside them.

Each chapter has ``book/data/paper_numbers/<chapter>.csv`` with the columns ``dataset, setting, metric,
value, source`` (an optional ``note`` column is kept): one row per number in the paper's tables, values in
percent as printed, ``source`` naming the table or figure (``"Table 3"``). Optional columns: ``note``, and
``run``, the name of our run that corresponds to the paper's setting (lets tables pair them without
code). Metric names are normalised
(``R1``/``Rank-1``/``top-1`` -> ``rank1``, ``MAP`` -> ``mAP``) so they match our results files.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from reidlib.results.paths import book_data_root
from reidlib.results.store import list_runs, load_run, lookup_metric

REQUIRED_COLUMNS = ("dataset", "setting", "metric", "value", "source")
OPTIONAL_COLUMNS = ("note", "run")
_RANK_RE = re.compile(r"^(?:r|rank|top|cmc)[-_ @]?(\d+)$", re.IGNORECASE)
_METRIC_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")


def normalize_metric(name: str) -> str:
    """Canonical metric name: ``mAP``, ``rank<k>`` or the name itself when it is neither.

    Raises:
        ValueError: an empty name, or one with characters other than letters, digits, ``_`` and ``.``
            (rank aliases such as ``Rank-1`` are accepted before that check).
    """
    raw = name.strip()
    if raw.lower() == "map":
        return "mAP"
    match = _RANK_RE.match(raw)
    if match:
        return f"rank{int(match.group(1))}"
    if not _METRIC_RE.match(raw):
        raise ValueError(f"metric name {name!r} is not valid: use letters, digits, '_', '.' (or R1, Rank-5)")
    return raw


def paper_numbers_path(chapter: str, data_root: str | os.PathLike | None = None) -> Path:
    """``<book data>/paper_numbers/<chapter>.csv``."""
    return book_data_root(data_root) / "paper_numbers" / f"{chapter}.csv"


def load_paper_numbers(chapter: str, data_root: str | os.PathLike | None = None):
    """The paper's reported numbers of ``chapter`` as a DataFrame (columns as in the CSV, ``value`` float).

    Raises:
        FileNotFoundError: no CSV for the chapter (the message lists the chapters that have one).
        ValueError: a bad header or row; the message names the file and the row (1-based, header = row 1).
    """
    import pandas as pd

    path = paper_numbers_path(chapter, data_root)
    if not path.is_file():
        have = sorted(p.stem for p in path.parent.glob("*.csv")) if path.parent.is_dir() else []
        raise FileNotFoundError(f"no paper numbers for chapter {chapter!r} at {path}; have: {have or 'none'}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
        if missing or unknown:
            raise ValueError(
                f"{path}: header must have columns {', '.join(REQUIRED_COLUMNS)} (optional: note, run); "
                f"missing {missing}, unknown {unknown}"
            )
        rows, seen = [], {}
        for line, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            if None in raw:
                raise ValueError(f"{path}, row {line}: more fields than columns ({raw[None]!r})")
            for col in ("dataset", "setting", "metric", "source"):
                if not row.get(col):
                    raise ValueError(f"{path}, row {line}: empty {col!r}")
            try:
                metric = normalize_metric(row["metric"])
            except ValueError as err:
                raise ValueError(f"{path}, row {line}: {err}") from None
            try:
                value = float(row["value"])
            except ValueError:
                raise ValueError(f"{path}, row {line}: value {row['value']!r} is not a number") from None
            if not math.isfinite(value) or not 0.0 <= value <= 100.0:
                raise ValueError(f"{path}, row {line}: value {value} outside [0, 100] (percent as printed)")
            key = (row["dataset"], row["setting"], metric)
            if key in seen:
                raise ValueError(f"{path}, row {line}: duplicate of row {seen[key]} for {key}")
            seen[key] = line
            rows.append(
                {
                    **row,
                    "metric": metric,
                    "value": value,
                    "note": row.get("note", ""),
                    "run": row.get("run", ""),
                }
            )
    if not rows:
        raise ValueError(f"{path}: no rows")
    return pd.DataFrame(rows, columns=[*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS])


def side_by_side(
    chapter: str,
    scale: str,
    runs: Mapping[str, str] | None = None,
    metrics: Iterable[str] = ("mAP", "rank1"),
    paper_dataset: str | None = None,
    root: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    ours_scale: float = 100.0,
):
    """The paper's table beside ours: one row per paper setting, paper and our value per metric.

    Args:
        runs: paper setting (as in the CSV) -> our run name,
            e.g. ``{"Baseline": "baseline", "CAMA": "cama"}``. Default: the CSV's ``run`` column (settings
            without a run are left out).
        metrics: canonical metric names to show, in this order.
        paper_dataset: which of the paper's datasets to show; required when the CSV has several.
        ours_scale: factor that puts our stored metrics in the paper's unit (ours are fractions, the
            papers print percent).

    Returns:
        DataFrame with columns ``setting, paper dataset, our run, our dataset`` then ``paper <m>`` and
        ``ours <m>`` per metric. Runs not yet run at ``scale`` show NaN and ``our dataset`` "not yet run".

    Raises:
        ValueError: unknown setting or metric, or an ambiguous dataset (messages list the choices).
    """
    import pandas as pd

    table = load_paper_numbers(chapter, data_root)
    metrics = [normalize_metric(m) for m in metrics]
    datasets = sorted(table["dataset"].unique())
    if paper_dataset is None:
        if len(datasets) > 1:
            raise ValueError(f"{chapter}: paper reports several datasets {datasets}; pass paper_dataset=")
        paper_dataset = datasets[0]
    if paper_dataset not in datasets:
        raise ValueError(f"{chapter}: no paper numbers for dataset {paper_dataset!r}; have {datasets}")
    table = table[table["dataset"] == paper_dataset]
    settings = set(table["setting"])
    if runs is None:
        paired = table[table["run"] != ""].drop_duplicates("setting")
        runs = dict(zip(paired["setting"], paired["run"], strict=True))
        if not runs:
            raise ValueError(
                f"{chapter}: pass runs= (the paper numbers for {paper_dataset} have no 'run' column)"
            )
    stored = set(list_runs(chapter, scale, root))
    rows = []
    for setting, run in runs.items():
        if setting not in settings:
            raise ValueError(
                f"{chapter}: setting {setting!r} not in the paper numbers for {paper_dataset}; "
                f"have {sorted(settings)}"
            )
        record = load_run(chapter, run, scale, root) if run in stored else None
        row = {
            "setting": setting,
            "paper dataset": paper_dataset,
            "our run": run,
            "our dataset": record.dataset if record else "not yet run",
        }
        for metric in metrics:
            paper = table[(table["setting"] == setting) & (table["metric"] == metric)]["value"]
            row[f"paper {metric}"] = float(paper.iloc[0]) if len(paper) else float("nan")
            ours = float("nan")
            if record is not None:
                ours = float(lookup_metric(record.metrics, metric, where=str(record.path))) * ours_scale
            row[f"ours {metric}"] = ours
        rows.append(row)
    return pd.DataFrame(rows)
