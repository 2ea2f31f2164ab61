"""The book's results overview: what every chapter has run, what it cost, each chapter's baseline over its
seeds, the pre-trained trunks, and the papers' numbers stored.

Everything here reads the results files (:mod:`reidlib.results.store`) and the papers' numbers
(:mod:`reidlib.results.paper_numbers`); nothing trains. Rank metrics are stored as fractions and shown
here in percent, as the book's tables do.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from reidlib.results.noise import spread
from reidlib.results.paper_numbers import load_paper_numbers, paper_numbers_path, side_by_side
from reidlib.results.paths import results_root
from reidlib.results.store import RunRecord, list_runs, load_run, load_runs, lookup_metric

#: Rank metrics of :func:`runs_table`, in the order shown (percent there, fractions in the files).
RANK_COLUMNS = ("mAP", "rank1", "rank5", "rank10")
#: The two quantities of :func:`cost_table`.
COST_COLUMNS = ("runs", "wall time (min)")
#: Columns of :func:`runs_table` (``chapter`` last).
RUN_COLUMNS = ("run", "dataset", "seed", *RANK_COLUMNS, "wall time (s)", "commit", "chapter")
#: Columns of :func:`paper_numbers_summary`.
PAPER_SUMMARY_COLUMNS = ("chapter", "dataset", "numbers", "settings", "metrics", "sources")
#: Folder of the pre-trained trunks' results files (``results/pretrain/<scale>/<trunk>.json``, written by
#: :mod:`reidlib.recipes.pretrain`): what the chapters start from at ``smoke`` and ``cpu``, not a chapter.
PRETRAIN_CHAPTER = "pretrain"
#: The baseline run of each chapter (its seed replicas are ``<run>_seed<k>``), in the book's order.
BASELINE_RUNS: dict[str, str] = {"protocol": "baseline", "cama": "ide_bn", "reid_done_right": "rdr",
                                 "fmn": "grn", "hybrid_attention": "baseline",
                                 "pmm": "bdb"}
#: Columns of :func:`pretrain_table`.
PRETRAIN_COLUMNS = ("trunk", "key", "images", "identities", "epochs", "final train accuracy (%)",
                    "wall time (min)")


def chapters_with_results(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the chapters under the results root, sorted (empty when none): the folders that hold a
    scale folder (``<chapter>/<scale>/``), as every chapter's runs do.

    Left out: the pre-trained trunks' folder (:data:`PRETRAIN_CHAPTER`), which holds no chapter's runs (see
    :func:`pretrain_table`), and folders of loose results files such as ``benchmarks/``.
    """
    folder = results_root(root)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and p.name != PRETRAIN_CHAPTER and any(c.is_dir() for c in p.iterdir()))


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


def seed_runs(chapter: str, run: str, scale: str, root: str | os.PathLike | None = None) -> list[str]:
    """The stored runs of one setting: ``run`` itself and its seed replicas ``<run>_seed<k>``, in that
    order (replicas by ``k``); empty when none is stored."""
    replica = re.compile(re.escape(run) + r"_seed(\d+)")
    stored = list_runs(chapter, scale, root)
    replicas = sorted((int(m.group(1)), name) for name in stored if (m := replica.fullmatch(name)))
    return ([run] if run in stored else []) + [name for _, name in replicas]


def _metric_or_nan(record: RunRecord, name: str) -> float:
    try:
        return float(lookup_metric(record.metrics, name, where=str(record.path)))
    except (KeyError, TypeError, ValueError):
        return math.nan


def baseline_table(scale: str, baselines: Mapping[str, str] | None = None, metric: str = "mAP",
                   root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Each chapter's baseline at ``scale`` over its seeds, and what the chapter's runs cost.

    Args:
        scale: the scale whose results files are read.
        baselines: ``{chapter: baseline run}`` in row order (default :data:`BASELINE_RUNS`); the seeds of a
            baseline are the run and its replicas ``<run>_seed<k>`` (:func:`seed_runs`).
        metric: a rank metric stored as a fraction (dots reach nested metrics), shown in percent.

    Returns:
        One row per chapter, columns ``chapter``, ``baseline`` (the run name), ``seeds`` (int, how many of
        its runs are stored), ``runs`` (their names, comma-separated, or ``"none yet"``),
        ``<metric> mean (%)`` and ``<metric> std (%)`` (sample standard deviation over the seeds; NaN with
        fewer than two, the mean NaN with none) and ``chapter wall time (min)`` (every run of the chapter
        at ``scale``, one decimal; 0.0 when none).
    """
    baselines = BASELINE_RUNS if baselines is None else baselines
    rows = []
    for chapter, run in baselines.items():
        names = seed_runs(chapter, run, scale, root)
        values = spread(100 * _metric_or_nan(load_run(chapter, n, scale, root), metric) for n in names)
        rows.append({"chapter": chapter, "baseline": run, "seeds": len(names),
                     "runs": ", ".join(names) or "none yet",
                     f"{metric} mean (%)": round(values["mean"], 2),
                     f"{metric} std (%)": round(values["std"], 2),
                     "chapter wall time (min)": run_summary(chapter, scale, root)["wall time (min)"]})
    columns = ["chapter", "baseline", "seeds", "runs", f"{metric} mean (%)", f"{metric} std (%)",
               "chapter wall time (min)"]
    return pd.DataFrame(rows, columns=columns).astype({"seeds": int})


def pretrain_records(scale: str, root: str | os.PathLike | None = None) -> dict[str, RunRecord]:
    """The results file of every pre-trained trunk at ``scale``: ``{trunk name: record}`` (sorted by name;
    empty when none was trained at that scale, e.g. ``full``, which loads ImageNet weights)."""
    return {name: load_run(PRETRAIN_CHAPTER, name, scale, root)
            for name in list_runs(PRETRAIN_CHAPTER, scale, root)}


def pretrain_table(scale: str, root: str | os.PathLike | None = None) -> pd.DataFrame:
    """The pre-trained trunks at ``scale``, one row each (:func:`pretrain_records`).

    Returns:
        Columns :data:`PRETRAIN_COLUMNS`: ``trunk`` (``resnet<depth>w<width>``), ``key`` (the config's key,
        the name of its cache folder), ``images`` and ``identities`` of the pre-training population,
        ``epochs`` (entries of the training history), ``final train accuracy (%)`` (last epoch, on the
        augmented training images, two decimals) and ``wall time (min)`` (population rendering included,
        one decimal). Empty, with those columns, when no trunk was trained at that scale.
    """
    rows = []
    for name, record in pretrain_records(scale, root).items():
        history = record.history if isinstance(record.history, list) else []
        rows.append({"trunk": name, "key": record.extra.get("key"), "images": record.extra.get("images"),
                     "identities": record.extra.get("identities"), "epochs": len(history),
                     "final train accuracy (%)": round(100 * _metric_or_nan(record, "train_acc"), 2),
                     "wall time (min)": round(record.wall_time_s / 60, 1)})
    return pd.DataFrame(rows, columns=list(PRETRAIN_COLUMNS))


def train_benchmark_files(root: str | os.PathLike | None = None) -> list[str]:
    """The training-throughput results files (``benchmarks/bench_train.py``) under the results root,
    one per device type (``bench_train_cpu.json``, ``bench_train_cuda.json``)."""
    folder = results_root(root) / "benchmarks"
    return sorted(str(p) for p in folder.glob("bench_train_*.json")) if folder.is_dir() else []


def train_benchmark_table(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """The rows of one training-throughput results file as a table (precision, images/s with the model
    alone and with the data pipeline, the slowdown the pipeline adds, TFLOP/s and share of peak on CUDA),
    and the file's provenance and settings.

    Raises:
        ValueError: the file is not a ``bench_train`` results file (the message names it).
    """
    import json

    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if data.get("benchmark") != "bench_train" or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path}: not a bench_train results file (no 'benchmark': 'bench_train' and 'rows')")
    columns = {"chapter": "chapter", "scale": "scale", "backbone": "backbone", "input": "input",
               "batch": "batch", "precision": "precision", "model_images_per_s": "model only (img/s)",
               "pipeline_images_per_s": "with data pipeline (img/s)",
               "pipeline_slowdown": "pipeline slowdown",
               "tflops": "TFLOP/s", "peak_share": "share of peak"}
    table = pd.DataFrame(data["rows"]).reindex(columns=list(columns)).rename(columns=columns)
    meta = {k: data.get(k) for k in ("provenance", "settings", "not_measured", "threads")}
    return table, meta


#: What each row of ``bench_msmt17.py`` measured, as the table names it.
RETRIEVAL_TASKS = {"evaluation": "evaluation, query chunks",
                   "evaluation_whole_matrix": "evaluation, whole matrix",
                   "rerank": "re-ranking + evaluation, streamed",
                   "rerank_rows": "re-ranking, reidlib (matrix)",
                   "dense_rerank": "re-ranking, dense algorithm"}


def retrieval_benchmark_file(root: str | os.PathLike | None = None) -> str | None:
    """The MSMT17-size retrieval results file (``benchmarks/bench_msmt17.py``) under the results root, or
    ``None`` when it was not run."""
    path = results_root(root) / "benchmarks" / "retrieval_msmt17_cpu.json"
    return str(path) if path.is_file() else None


def retrieval_benchmark_table(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """The rows of the MSMT17-size retrieval results file as a table, and the file's other entries.

    Returns:
        ``(table, meta)``. Columns: ``task`` (:data:`RETRIEVAL_TASKS`), ``dimension``, ``queries``,
        ``gallery``, ``wall time (s)``, ``peak memory (GB)`` (the process's peak resident set, inputs
        included; 10**9 bytes), ``beyond the inputs (GB)``, ``mAP (%)`` and ``how`` (``measured`` or
        ``extrapolated from N = a, b``). ``meta``: ``targets``, ``dense_agreement``,
        ``chunked_equals_whole_matrix``, ``settings``, ``threads``, ``provenance``.

    Raises:
        ValueError: the file is not a ``retrieval_msmt17`` results file (the message names it).
    """
    import json

    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if data.get("benchmark") != "retrieval_msmt17" or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path}: not a retrieval_msmt17 results file (no 'benchmark': 'retrieval_msmt17' "
                         "and 'rows')")
    rows = []
    for r in data["rows"]:
        how = "measured" if r.get("measured") else "extrapolated from N = " + ", ".join(
            f"{n:,}" for n in r.get("from_sizes", []))
        rows.append({"task": RETRIEVAL_TASKS.get(r.get("task"), r.get("task")), "dimension": r.get("dim"),
                     "queries": r.get("num_query"), "gallery": r.get("num_gallery"),
                     "wall time (s)": r.get("wall_s"), "peak memory (GB)": r.get("peak_gb"),
                     "beyond the inputs (GB)": r.get("working_gb"),
                     "mAP (%)": 100 * r["mAP"] if r.get("mAP") is not None else None, "how": how})
    meta = {k: data.get(k) for k in ("targets", "dense_agreement", "chunked_equals_whole_matrix", "settings",
                                     "threads", "provenance")}
    return pd.DataFrame(rows), meta
