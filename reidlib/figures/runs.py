"""Figures of stored runs that every chapter draws: training curves from the runs' histories and a
sweep of our runs beside the paper's curve.

Both read :class:`~reidlib.results.store.RunRecord` s (results files), never a model in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from reidlib.figures.style import OKABE_ITO, use_book_style
from reidlib.results.store import RunRecord

__all__ = ["arms_figure", "history_column", "sweep_figure", "training_curves"]


def training_curves(records: Mapping[str, RunRecord], runs: Sequence[str],
                    loss_label: str = "training loss", title: str = "Training loss per epoch") -> Figure:
    """Loss per epoch (and the periodic mAP where recorded) of ``runs``, from their histories;
    ``loss_label`` names the loss on the y-axis."""
    import matplotlib.pyplot as plt

    use_book_style()
    has_map = any(history_column(records.get(r), "mAP") for r in runs)
    fig, axes = plt.subplots(1, 2 if has_map else 1, figsize=(10 if has_map else 5.5, 3.6), squeeze=False)
    for i, run in enumerate(runs):
        color = OKABE_ITO[i % len(OKABE_ITO)]
        losses = history_column(records.get(run), "loss")
        if losses:
            axes[0, 0].plot(range(1, len(losses) + 1), losses, marker="o", ms=3, color=color, label=run)
        maps = history_column(records.get(run), "mAP")
        if has_map and maps:
            epochs = [e for e, v in maps]
            axes[0, 1].plot(epochs, [100 * v for e, v in maps], marker="o", ms=3, color=color, label=run)
    axes[0, 0].set(xlabel="epoch", ylabel=loss_label, title=title)
    axes[0, 0].legend(fontsize=8)
    if has_map:
        axes[0, 1].set(xlabel="epoch", ylabel="mAP (%)", title="Test mAP during training")
    fig.tight_layout()
    return fig


def history_column(rec: RunRecord | None, key: str) -> list[Any]:
    """A run's per-epoch ``loss`` values, or ``(epoch, value)`` of another history key where recorded."""
    if rec is None or not rec.history:
        return []
    if key == "loss":
        return [e.get("loss") for e in rec.history if e.get("loss") is not None]
    return [(e.get("epoch", i + 1), e[key]) for i, e in enumerate(rec.history) if e.get(key) is not None]


def sweep_figure(ours: pd.DataFrame, paper: pd.DataFrame, x: str, xlabel: str, title: str,
                 paper_label: str = "paper", paper_x: str | None = None) -> Figure:
    """mAP and rank-1 against ``x``, the paper's curve (``paper_label``) and ours (SynthReID) in two panels.

    ``ours`` is a :func:`reidlib.recipes.report.sweep_points` table (one row per run and seed: ``x``,
    ``mAP``, ``rank1`` in percent): each seed is a point, the line joins the seed means. ``paper`` has
    ``paper_x``, ``mAP`` and ``rank1``. Absolute levels differ by dataset, so the panels have their own
    y-axes and each curve is read for its shape.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    use_book_style()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    panels = ((axes[0], paper, paper_x or x, paper_label),
              (axes[1], ours, x, "ours (SynthReID)"))
    for ax, table, col, label in panels:
        for metric, name, color in (("mAP", "mAP", OKABE_ITO[0]), ("rank1", "rank-1", OKABE_ITO[1])):
            means = table.groupby(col)[metric].mean()
            ax.plot(means.index, means.values, marker="o", color=color, label=name)
            if "seed" in table and table.groupby(col)[metric].count().max() > 1:
                ax.scatter(table[col], table[metric], s=14, color=color, alpha=0.45, edgecolor="none",
                           label=f"{name}, each seed")
        ax.set(xlabel=xlabel, ylabel="%", title=f"{title}, {label}")
        if (table[col] % 1 == 0).all():  # a count (branches): no 1.5-branch ticks
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig




def arms_figure(points: pd.DataFrame, paper: Mapping[str, float] | None = None, metric: str = "mAP",
                title: str = "", paper_label: str = "paper") -> Figure:
    """One metric of several arms side by side: each seed of our arm a point, its seed mean a bar, and
    (when given) the paper's value per arm as a diamond on a second y-axis (another dataset, so only the
    ordering compares).

    ``points`` has columns ``label`` (the arm, in display order), ``seed`` and ``metric`` (percent).
    """
    import matplotlib.pyplot as plt

    use_book_style()
    labels = list(dict.fromkeys(points["label"]))
    fig, ax = plt.subplots(figsize=(max(5.5, 0.85 * len(labels) + 1.5), 3.8))
    means = points.groupby("label", sort=False)[metric].mean().reindex(labels)
    xs = range(len(labels))
    ax.bar(xs, means.values, color=OKABE_ITO[0], alpha=0.35, width=0.6, label="ours, seed mean")
    for i, label in enumerate(labels):
        values = points.loc[points["label"] == label, metric]
        ax.scatter([i] * len(values), values, s=18, color=OKABE_ITO[0], zorder=3,
                   label="ours, each seed" if i == 0 else None)
    ax.set_xticks(list(xs), labels, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel=f"{metric} (%), ours (SynthReID)", title=title)
    finite = points[metric].dropna()
    if len(finite):
        low, high = float(finite.min()), float(finite.max())
        pad = max(1.0, 0.15 * (high - low))
        ax.set_ylim(low - 2 * pad, high + pad)
    handles, names = ax.get_legend_handles_labels()
    if paper:
        twin = ax.twinx()
        values = [paper.get(label, float("nan")) for label in labels]
        twin.scatter(list(xs), values, marker="D", s=26, color=OKABE_ITO[3], zorder=4, label=paper_label)
        twin.set_ylabel(f"{metric} (%), {paper_label}", color=OKABE_ITO[3])
        h2, n2 = twin.get_legend_handles_labels()
        handles, names = handles + h2, names + n2
    ax.legend(handles, names, fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
