"""Figures and table styling of the claims ledger page.

Colours are keyed by verdict name (:data:`reidlib.results.claims.VERDICTS`). The four verdicts have fixed
colours (green reproduced, orange contradicted, blue inconclusive, grey not yet run); any other verdict
gets the next unused colour of the book's palette (neutral grey once the palette is spent), so a verdict
added to ``VERDICTS`` is drawn and shaded without changes here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from reidlib.figures.style import MATCH_COLOR, MISMATCH_COLOR, OKABE_ITO, use_book_style
from reidlib.results.claims import VERDICTS
from reidlib.results.intervals import CONTRADICTED, INCONCLUSIVE, NOT_YET_RUN, REPRODUCED
from reidlib.results.verdicts import verdict_order, verdicts_per_chapter

#: Colour of a verdict whose palette is spent.
NEUTRAL_COLOR = "#BBBBBB"
#: Fixed bar colours of the four verdicts (Okabe-Ito sky blue for inconclusive).
VERDICT_COLORS = {REPRODUCED: MATCH_COLOR, CONTRADICTED: MISMATCH_COLOR, INCONCLUSIVE: "#56B4E9",
                  NOT_YET_RUN: NEUTRAL_COLOR}
#: Fixed pale cell backgrounds of the four verdicts (tables).
VERDICT_SHADES = {REPRODUCED: "#cdeee3", CONTRADICTED: "#f6d5c2", INCONCLUSIVE: "#dcedf8",
                  NOT_YET_RUN: "#eeeeee"}
#: Share of a verdict's colour in a derived cell background (the rest is white).
SHADE_STRENGTH = 0.22


def verdict_colors(verdicts: Iterable[str] = VERDICTS) -> dict[str, str]:
    """Bar colour (hex) of each verdict: the fixed :data:`VERDICT_COLORS`, then unused Okabe-Ito colours
    (black excluded) in palette order for other verdicts, then :data:`NEUTRAL_COLOR`."""
    verdicts = list(dict.fromkeys(verdicts))
    used = {VERDICT_COLORS[v].upper() for v in verdicts if v in VERDICT_COLORS}
    free = [c for c in OKABE_ITO[:-1] if c.upper() not in used and c.upper() not in
            {MATCH_COLOR.upper(), MISMATCH_COLOR.upper()}]
    colors = {}
    for verdict in verdicts:
        if verdict in VERDICT_COLORS:
            colors[verdict] = VERDICT_COLORS[verdict]
        else:
            colors[verdict] = free.pop(0) if free else NEUTRAL_COLOR
    return colors


def verdict_shade(verdict: str, verdicts: Iterable[str] = VERDICTS) -> str:
    """Pale background colour (hex) of a verdict's table cell: :data:`VERDICT_SHADES` for the known
    verdicts, the verdict's :func:`verdict_colors` colour mixed with white otherwise; ``"white"`` for a
    value that is not a verdict (e.g. an empty cell)."""
    if verdict in VERDICT_SHADES:
        return VERDICT_SHADES[verdict]
    verdicts = list(verdicts)
    if not isinstance(verdict, str) or verdict not in verdicts:
        return "white"
    rgb = mcolors.to_rgb(verdict_colors(verdicts)[verdict])
    return mcolors.to_hex([1 - SHADE_STRENGTH * (1 - c) for c in rgb])


def verdict_cell_style(verdict: str) -> str:
    """CSS of a verdict cell for ``DataFrame.style.map``: ``"background-color: <verdict_shade>"``."""
    return f"background-color: {verdict_shade(verdict)}"


def plot_verdicts_per_chapter(table: pd.DataFrame, chapters: Sequence[str],
                              scales: Sequence[str]) -> Figure | None:
    """Stacked horizontal bars: how many claims of each chapter got each verdict, one bar per chapter and
    scale (counts from :func:`reidlib.results.verdicts.verdicts_per_chapter`).

    Args:
        table: the wide ledger (:func:`reidlib.results.claims.ledger`).
        chapters, scales: the bars, chapter-major, top to bottom.

    Returns:
        The figure (one axes; one bar segment per verdict and bar, labelled ``"<chapter> · <scale>"``), or
        ``None`` when the ledger has no claims.
    """
    if not len(table):
        return None
    use_book_style()
    per_chapter = verdicts_per_chapter(table, chapters, scales)
    order = verdict_order(table, scales)
    colors = verdict_colors(order)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(per_chapter) + 1.2))
    labels = [f"{ch} · {sc}" for ch, sc in per_chapter.index]
    left = pd.Series(0, index=per_chapter.index)
    for verdict in order:
        ax.barh(labels, per_chapter[verdict], left=left, color=colors[verdict], label=verdict)
        left = left + per_chapter[verdict]
    ax.invert_yaxis()
    ax.set_xlabel("number of claims")
    ax.set_ylabel("chapter · scale")
    ax.set_title("Claim verdicts per chapter and scale")
    ncol = min(3, len(order))
    rows = -(-len(order) // ncol)
    fig.legend(loc="lower center", ncol=ncol, fontsize=8)
    fig.tight_layout(rect=(0, (0.1 + 0.25 * rows) / fig.get_figheight(), 1, 1))
    return fig
