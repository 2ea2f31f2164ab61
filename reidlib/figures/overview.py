"""Figures of the results overview page."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from reidlib.figures.style import category_colors, use_book_style


def plot_map_per_run(runs: pd.DataFrame, scale: str, chapters: Sequence[str] | None = None) -> Figure | None:
    """Horizontal bars of every run's mAP, coloured by chapter, in the table's row order (top to bottom).
    Runs without an mAP (explanation-score and mask-score runs) get no row.

    Args:
        runs: :func:`reidlib.results.overview.all_runs` (columns ``chapter``, ``run``, ``mAP`` in percent).
        scale: named in the title.
        chapters: the chapters that get a colour, in palette order (default: those in ``runs``, in order of
            appearance); pass every chapter with results so a chapter keeps its colour across scales.

    Returns:
        The figure (one axes, one bar per run with an mAP, labelled ``"<chapter> / <run>"``; x in percent),
        or ``None`` when no run has one.
    """
    if runs.empty:
        return None
    chapters = list(dict.fromkeys(runs["chapter"])) if chapters is None else list(chapters)
    runs = runs.dropna(subset=["mAP"])
    if runs.empty:
        return None
    use_book_style()
    colors = dict(zip(chapters, category_colors(len(chapters)), strict=True))
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(runs) + 1.4))
    labels = [f"{c} / {r}" for c, r in zip(runs["chapter"], runs["run"], strict=True)]
    ax.barh(labels, runs["mAP"], color=[colors[c] for c in runs["chapter"]])
    ax.invert_yaxis()
    ax.set_xlabel("mAP (%)")
    ax.set_ylabel("chapter / run")
    ax.set_title(f"mAP of every run ({scale} scale, each on its own dataset)")
    return fig
