"""Tables and figures of the CAMA chapter, read from the results files (never from memory).

Every function takes the chapter's :class:`~reidlib.results.store.RunRecord` s (``{run name: record}``,
from :func:`chapter_records`) and the paper's numbers (``book/data/paper_numbers/cama.csv``), so the
notebook shows what a run wrote and the paper printed, side by side. Our metrics are stored as
fractions; every table here shows percent, like the paper.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from reidlib.figures.style import OKABE_ITO, use_book_style
from reidlib.recipes import report
from reidlib.recipes.cama import (
    BRANCH_SWEEP,
    CHAPTER,
    K_SWEEP_FRACTIONS,
    SCALE_CONFIGS,
    SPREAD_SEEDS,
    TABLE4_RUNS,
    CamaConfig,
    k_run_name,
    other_mode,
)
from reidlib.recipes.report import percent as _pct
from reidlib.results.paper_numbers import load_paper_numbers
from reidlib.results.store import RunRecord

RANKS = ("mAP", "rank1", "rank5", "rank10")
#: The paper's dataset whose ablations (Tables 4-5, Figures 5-6) we set beside ours.
ABLATION_DATASET = "Market-1501"
#: Table 5 rows: paper setting -> our run.
TABLE5_RUNS = {"branch 1st": "cama_n3_test_1", "branches 1st+2nd": "cama_n3_test_12",
               "branches 1st+2nd+3rd": "cama_n3"}


#: IDE+BN trained with every seed: the seed-to-seed spread of a single run.
SPREAD_RUNS: tuple[str, ...] = ("ide_bn", *(f"ide_bn_seed{s}" for s in SPREAD_SEEDS))


def chapter_records(scale: str, root: str | os.PathLike | None = None) -> dict[str, RunRecord]:
    """Every stored run of the chapter at ``scale``: ``{run name: record}`` (empty when none ran)."""
    return report.chapter_records(CHAPTER, scale, root)


def paper_metric(metric: str, setting: str, dataset: str = ABLATION_DATASET) -> float:
    """The paper's ``metric`` (percent) for ``setting`` on ``dataset`` (default: its ablation dataset)."""
    return report.paper_value(CHAPTER, setting, dataset, metric)


def table4(records: Mapping[str, RunRecord], dataset: str = ABLATION_DATASET) -> pd.DataFrame:
    """Table 4: IDE+BN / MltB+L_id / MltB+L_id+L_oap, the paper's ``dataset`` beside ours (percent)."""
    rows = []
    for setting, run in TABLE4_RUNS.items():
        rec = records.get(run)
        row: dict[str, Any] = {"setting": setting, "our run": run}
        for m in RANKS:
            row[f"paper {m}"] = paper_metric(m, setting, dataset)
        for m in RANKS:
            row[f"ours {m}"] = _pct(rec, m)
        rows.append(row)
    return pd.DataFrame(rows).set_index("setting").round(1)


def paper_vs_ours(records: Mapping[str, RunRecord], dataset: str, run: str = "cama_n3",
                  setting: str = "CAMA (N=3)") -> pd.DataFrame:
    """Tables 1-3: the paper's rows for ``dataset`` (sorted by mAP) with our ``run`` appended as the last
    row, its dataset named in the row label."""
    table = load_paper_numbers(CHAPTER)
    table = table[(table["dataset"] == dataset) & table["source"].str.startswith("Table ")
                  & ~table["source"].isin(["Table 4", "Table 5"])]
    wide = table.pivot_table(index="setting", columns="metric", values="value", aggfunc="first")
    wide = wide.reindex(columns=[m for m in ("mAP", "rank1") if m in wide.columns]).sort_values("mAP")
    wide.index = [f"{s} (paper)" for s in wide.index]
    rec = records.get(run)
    if rec is not None:
        label = f"{setting}, ours on {rec.dataset}"
        ours = pd.DataFrame({m: [_pct(rec, m)] for m in wide.columns}, index=[label])
        wide = pd.concat([wide, ours])
    wide.index.name = dataset
    return wide.round(1)


def k_sweep(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Figure 5 (ours): N = 2 CAMA at each ``k`` of :data:`K_SWEEP_FRACTIONS` (k as a share of the cells)."""
    rows = []
    for frac in K_SWEEP_FRACTIONS:
        rec = records.get(k_run_name(frac))
        k = rec.config.get("k_fraction") if rec else frac
        rows.append({"k / cells (%)": 100 * k, "run": k_run_name(frac), "mAP": _pct(rec, "mAP"),
                     "rank1": _pct(rec, "rank1"), "CAM overlap (IoU)": _metric(rec, "overlap.cam_iou")})
    return pd.DataFrame(rows).round(2)


def paper_k_sweep() -> pd.DataFrame:
    """Figure 5 (paper, Market-1501): ``k`` in cells of the 16x8 map and as a share of its 128 cells."""
    table = load_paper_numbers(CHAPTER)
    table = table[table["source"] == "Figure 5"]
    wide = table.pivot_table(index="setting", columns="metric", values="value", aggfunc="first")
    wide["k"] = [int(s.split("=")[1]) for s in wide.index]
    wide["k / cells (%)"] = 100 * wide["k"] / 128
    return wide.sort_values("k").reset_index(drop=True)


def branch_sweep(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Figure 6 (ours and paper): mAP / rank-1 per number of branches ``N`` (N = 1 is IDE+BN)."""
    rows = []
    for n in BRANCH_SWEEP:
        rec = records.get("ide_bn" if n == 1 else f"cama_n{n}")
        rows.append({"N": n, "paper mAP": paper_metric("mAP", f"N={n}"),
                     "paper rank1": paper_metric("rank1", f"N={n}"),
                     "ours mAP": _pct(rec, "mAP"), "ours rank1": _pct(rec, "rank1")})
    return pd.DataFrame(rows).set_index("N").round(1)


def table5(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Table 5: the 3-branch model tested with the 1st, 1st+2nd and all branches (paper vs ours)."""
    rows = []
    for setting, run in TABLE5_RUNS.items():
        rec = records.get(run)
        rows.append({"test descriptor": setting, "paper mAP": paper_metric("mAP", setting),
                     "paper rank1": paper_metric("rank1", setting), "ours mAP": _pct(rec, "mAP"),
                     "ours rank1": _pct(rec, "rank1")})
    return pd.DataFrame(rows).set_index("test descriptor").round(1)


def _metric(rec: RunRecord | None, name: str, scale: float = 1.0) -> float:
    return report.metric(rec, name, scale)


def mode_comparison(records: Mapping[str, RunRecord], default_mode: str) -> pd.DataFrame:
    """The two OAP gradient variants of the 3-branch model (see :mod:`reidlib.losses.oap`)."""
    runs = {default_mode: "cama_n3", other_mode(default_mode): f"cama_n3_{other_mode(default_mode)}"}
    rows = []
    for mode, run in sorted(runs.items()):
        rec = records.get(run)
        rows.append({"OAP gradients": mode, "run": run, "mAP": _pct(rec, "mAP"), "rank1": _pct(rec, "rank1"),
                     "CAM overlap (IoU)": _metric(rec, "overlap.cam_iou"),
                     "L_oap at the end": _metric(rec, "overlap.oap")})
    return pd.DataFrame(rows).set_index("OAP gradients").round(3)


def explanation_table(records: Mapping[str, RunRecord], runs: Sequence[str]) -> pd.DataFrame:
    """Branch overlap and share of CAM/RAM energy on identity cues per run (beyond the paper)."""
    rows = []
    for run in runs:
        rec = records.get(run)
        rows.append({
            "run": run,
            "branches": rec.config.get("num_branches") if rec else math.nan,
            "CAM overlap (IoU of top-k cells)": _metric(rec, "overlap.cam_iou"),
            "RAM overlap (IoU)": _metric(rec, "overlap.ram_iou"),
            "L_oap": _metric(rec, "overlap.oap"),
            "cue pixels covered by top-k CAM cells (%)": _metric(rec, "cues.cam_coverage", 100),
            "CAM energy on cues (%)": _metric(rec, "cues.cam_energy", 100),
            "RAM energy on cues (%)": _metric(rec, "cues.ram_energy", 100),
            "cue area (%)": _metric(rec, "cues.cue_area", 100),
        })
    return pd.DataFrame(rows).set_index("run").round(3)


def family_table(records: Mapping[str, RunRecord], runs: Sequence[str]) -> pd.DataFrame:
    """mAP against the whole gallery vs against the query's own look-alike family only (SynthReID)."""
    rows = [{"run": r, "mAP (%)": _pct(records.get(r), "mAP"),
             "mAP within the family (%)": _metric(records.get(r), "family.mAP", 100),
             "rank-1 within the family (%)": _metric(records.get(r), "family.rank1", 100)} for r in runs]
    return pd.DataFrame(rows).set_index("run").round(1)


def seed_spread(records: Mapping[str, RunRecord], metric: str = "mAP") -> dict[str, float]:
    """IDE+BN's ``metric`` (percent) over its training seeds (:data:`SPREAD_RUNS`):
    :func:`reidlib.recipes.report.seed_spread`."""
    return report.seed_spread(records, SPREAD_RUNS, metric)


def plot_histories(records: Mapping[str, RunRecord], runs: Sequence[str],
                   title: str = "Training loss per epoch") -> Figure:
    """Loss per epoch (and the periodic mAP where recorded) of ``runs``, from their histories."""
    import matplotlib.pyplot as plt

    use_book_style()
    has_map = any(_history_column(records.get(r), "mAP") for r in runs)
    fig, axes = plt.subplots(1, 2 if has_map else 1, figsize=(10 if has_map else 5.5, 3.6), squeeze=False)
    for i, run in enumerate(runs):
        color = OKABE_ITO[i % len(OKABE_ITO)]
        losses = _history_column(records.get(run), "loss")
        if losses:
            axes[0, 0].plot(range(1, len(losses) + 1), losses, marker="o", ms=3, color=color, label=run)
        maps = _history_column(records.get(run), "mAP")
        if has_map and maps:
            epochs = [e for e, v in maps]
            axes[0, 1].plot(epochs, [100 * v for e, v in maps], marker="o", ms=3, color=color, label=run)
    axes[0, 0].set(xlabel="epoch", ylabel="training loss (L_id + alpha L_oap)", title=title)
    axes[0, 0].legend(fontsize=8)
    if has_map:
        axes[0, 1].set(xlabel="epoch", ylabel="mAP (%)", title="Test mAP during training")
    fig.tight_layout()
    return fig


def _history_column(rec: RunRecord | None, key: str) -> list[Any]:
    if rec is None or not rec.history:
        return []
    if key == "loss":
        return [e.get("loss") for e in rec.history if e.get("loss") is not None]
    return [(e.get("epoch", i + 1), e[key]) for i, e in enumerate(rec.history) if e.get(key) is not None]


def plot_sweep(ours: pd.DataFrame, paper: pd.DataFrame, x: str, xlabel: str, title: str,
               paper_x: str | None = None) -> Figure:
    """mAP and rank-1 against ``x``, the paper's curve (Market-1501) and ours (SynthReID) in two panels.

    ``ours`` has columns ``x``, ``mAP``, ``rank1`` (percent); ``paper`` the same with ``paper_x`` as x.
    Absolute levels differ by dataset, so the panels have their own y-axes and each curve is read for
    its shape.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    use_book_style()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    panels = ((axes[0], paper, paper_x or x, f"paper ({ABLATION_DATASET})"),
              (axes[1], ours, x, "ours (SynthReID)"))
    for ax, table, col, label in panels:
        for metric, name, color in (("mAP", "mAP", OKABE_ITO[0]), ("rank1", "rank-1", OKABE_ITO[1])):
            ax.plot(table[col], table[metric], marker="o", color=color, label=name)
        ax.set(xlabel=xlabel, ylabel="%", title=f"{title}, {label}")
        if (table[col] % 1 == 0).all():  # a count (branches): no 1.5-branch ticks
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ parameters


def config_table(configs: Mapping[str, CamaConfig]) -> list[dict[str, Any]]:
    """Rows describing configs side by side (for the chapter's parameter table)."""
    rows = []
    for label, c in configs.items():
        h, w = c.map_size
        rows.append({
            "setting": label,
            "dataset": f"{c.dataset}" + (f" ({c.synth_preset})" if c.dataset == "synthreid" else ""),
            "backbone": f"ResNet-{c.depth}" + ("" if c.base_width == 64 else f" at width {c.base_width}/64")
                        + (" ImageNet" if c.pretrained else " random init")
                        + (", last stride 1" if c.last_stride == 1 else ""),
            "input": f"{c.height}x{c.width}",
            "map (cells)": f"{h}x{w} ({h * w})",
            "k": f"{c.k} ({c.k_fraction:.1%})",
            "batch": c.batch_size,
            "optimizer": f"Adam, wd {c.weight_decay:g}",
            "epochs": f"{c.warmup_epochs} classifier-only + {c.epochs - c.warmup_epochs}",
            "LR": f"{c.warmup_start_lr:g} -> {c.lr:g}, x{c.lr_gamma:g} at {c.lr_milestones or 'never'}",
        })
    return rows


def chapter_settings(base: CamaConfig) -> dict[str, CamaConfig]:
    """The paper's setting, the ``cpu`` and ``full`` configs and, when it is neither, ``base`` (the config
    a notebook runs with): the columns of the chapter's parameter table."""
    paper = dataclasses.replace(SCALE_CONFIGS["full"], dataset="market1501")
    settings = {"paper (Sec. 4.2, Market-1501)": paper, "cpu": SCALE_CONFIGS["cpu"],
                "full": SCALE_CONFIGS["full"]}
    if base not in settings.values():
        settings[f"this run ({base.scale})"] = base
    return settings
