"""The book's results overview: what every chapter has run, what it cost, and the papers' numbers stored.

Everything here reads the results files (:mod:`reidlib.results.store`) and the papers' numbers
(:mod:`reidlib.results.paper_numbers`); nothing trains. Rank metrics are stored as fractions and shown
here in percent, as the book's tables do.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import pandas as pd

from reidlib.results.paper_numbers import load_paper_numbers, paper_numbers_path, side_by_side
from reidlib.results.paths import results_root
from reidlib.results.store import load_run, load_runs

#: Rank metrics of :func:`runs_table`, in the order shown (percent there, fractions in the files).
RANK_COLUMNS = ("mAP", "rank1", "rank5", "rank10")
#: The two quantities of :func:`cost_table`.
COST_COLUMNS = ("runs", "wall time (min)")
#: Columns of :func:`runs_table` (``chapter`` last).
RUN_COLUMNS = ("run", "dataset", "seed", *RANK_COLUMNS, "wall time (s)", "commit", "chapter")
#: Columns of :func:`paper_numbers_summary`.
PAPER_SUMMARY_COLUMNS = ("chapter", "dataset", "numbers", "settings", "metrics", "sources")


def chapters_with_results(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the chapters that have a folder under the results root, sorted (empty when none)."""
    folder = results_root(root)
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def run_summary(chapter: str, scale: str, root: str | os.PathLike | None = None) -> dict[str, float]:
    """How much one chapter has run at one scale.

    Returns:
        A dict with keys ``runs`` (the number of results files, int) and ``wall time (min)`` (their summed
        wall time in minutes, rounded to 0.1; 0.0 when none).
    """
    runs = load_runs(chapter, scale, root)
    minutes = round(float(runs["wall_time_s"].sum()) / 60, 1) if len(runs) else 0.0
    return {"runs": len(runs), "wall time (min)": minutes}


def cost_table(chapters: Iterable[str], scales: Sequence[str],
               root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Runs and total wall time per chapter and scale.

    Returns:
        One row per chapter (index ``chapter``); two-level columns ``(quantity, scale)`` with quantity
        ``runs`` (int count of results files) then ``wall time (min)`` (minutes, one decimal), each over
        ``scales`` in the given order. Without chapters: an empty frame with the columns ``chapter, scale,
        runs, wall time (min)``.
    """
    scales = list(scales)
    rows = [{"chapter": ch, "scale": sc, **run_summary(ch, sc, root)} for ch in chapters for sc in scales]
    if not rows:
        return pd.DataFrame([], columns=["chapter", "scale", *COST_COLUMNS])
    long = pd.DataFrame(rows)
    pivots = {v: long.pivot(index="chapter", columns="scale", values=v).reindex(columns=scales)
              for v in COST_COLUMNS}
    return pd.concat(pivots, axis=1).astype({("runs", s): int for s in scales})


def runs_table(chapter: str, scale: str, root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every run of ``chapter`` at ``scale``, one row each.

    Returns:
        Columns :data:`RUN_COLUMNS`: ``run, dataset, seed``, the rank metrics ``mAP, rank1, rank5, rank10``
        in **percent** rounded to 0.01 (NaN for a run without that metric), ``wall time (s)`` (one
        decimal), ``commit`` (the git commit the run was made from, ``+`` appended for a dirty working
        tree) and ``chapter``. Empty (no columns) when the chapter has no run at that scale.
    """
    df = load_runs(chapter, scale, root)
    if df.empty:
        return pd.DataFrame()
    for col in RANK_COLUMNS:
        df[col] = (100 * df[col]).round(2) if col in df else float("nan")
    records = [load_run(chapter, r, scale, root) for r in df["run"]]
    dirty = [bool(rec.provenance.get("git", {}).get("dirty")) for rec in records]
    df["commit"] = [c + ("+" if d else "") for c, d in zip(df["git_commit"], dirty, strict=True)]
    df["wall time (s)"] = df["wall_time_s"].round(1)
    return df[list(RUN_COLUMNS[:-1])].assign(chapter=chapter)


def all_runs(chapters: Iterable[str], scale: str, root: str | os.PathLike | None = None) -> pd.DataFrame:
    """:func:`runs_table` of every chapter at ``scale``, stacked in chapter order (fresh integer index).

    Returns:
        Columns :data:`RUN_COLUMNS` (rank metrics in percent); an empty frame (no columns) when no chapter
        has a run at that scale.
    """
    tables = [t for t in (runs_table(ch, scale, root) for ch in chapters) if len(t)]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def paper_number_chapters(data_root: str | os.PathLike | None = None) -> list[str]:
    """Chapters that store their paper's numbers (``book/data/paper_numbers/<chapter>.csv``), sorted."""
    folder = paper_numbers_path("any", data_root).parent
    return sorted(p.stem for p in folder.glob("*.csv")) if folder.is_dir() else []


def paper_numbers_summary(data_root: str | os.PathLike | None = None) -> pd.DataFrame:
    """What each chapter stores of its paper's numbers, one row per chapter and paper dataset.

    Returns:
        Columns :data:`PAPER_SUMMARY_COLUMNS`: ``chapter``, ``dataset`` (as the paper names it),
        ``numbers`` (count of stored values), ``settings`` (distinct settings), ``metrics`` and
        ``sources`` (comma-separated, sorted). Empty, with those columns, when nothing is stored.
    """
    rows = []
    for chapter in paper_number_chapters(data_root):
        for dataset, group in load_paper_numbers(chapter, data_root).groupby("dataset"):
            rows.append({"chapter": chapter, "dataset": dataset, "numbers": len(group),
                         "settings": group["setting"].nunique(),
                         "metrics": ", ".join(sorted(group["metric"].unique())),
                         "sources": ", ".join(sorted(group["source"].unique()))})
    return pd.DataFrame(rows, columns=list(PAPER_SUMMARY_COLUMNS))


def paper_comparisons(
    scale: str,
    metrics: Sequence[str] = ("mAP", "rank1"),
    root: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
) -> list[tuple[str, str, pd.DataFrame]]:
    """The papers' numbers beside ours, for every chapter and paper dataset whose stored numbers name one of
    our runs (the CSV's ``run`` column).

    Returns:
        ``[(chapter, paper dataset, table), ...]`` in chapter then dataset order; each table is
        :func:`reidlib.results.paper_numbers.side_by_side` for ``metrics`` (paper and our values in
        percent; ours NaN for a run not yet made at ``scale``).
    """
    out = []
    for chapter in paper_number_chapters(data_root):
        paper = load_paper_numbers(chapter, data_root)
        for dataset in sorted(paper.loc[paper["run"] != "", "dataset"].unique()):
            table = side_by_side(chapter, scale, paper_dataset=dataset, metrics=metrics, root=root,
                                 data_root=data_root)
            out.append((chapter, dataset, table))
    return out
