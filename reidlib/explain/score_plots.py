"""Bar charts of explanation scores (:func:`reidlib.explain.scores.summarize_scores`) beside their chance
level, the area of the mask (what a uniform map would score)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reidlib.figures.style import category_colors, use_book_style

__all__ = ["plot_explanation_scores"]


def plot_explanation_scores(
    summary: pd.DataFrame,
    *,
    map_name: str = "all",
    title: str = "Where do the explanations point?",
    methods: Sequence[str] | None = None,
) -> Figure:
    """Two panels for one map (``"all"`` = whole model, or ``"branch i"``), one bar colour per method:

    left, the share of positive energy on identity cues, on the body and on the background, with black
    ticks at the chance level (the mask's mean area fraction); right, per cue type, the lift: energy share
    over area share, 1 for a uniform map. Cue types no image shows are left out.
    """
    use_book_style()
    required = {"method", "map", "energy_cues", "energy_body", "energy_background", "area_cues", "area_body",
                "area_background"}
    missing = required - set(summary.columns)
    if missing:
        raise ValueError(f"summary lacks columns {sorted(missing)}; pass the output of summarize_scores")
    data = summary[summary["map"] == map_name]
    if data.empty:
        raise ValueError(f"no rows for map {map_name!r}; maps present: {sorted(set(summary['map']))}")
    methods = list(methods) if methods is not None else list(dict.fromkeys(data["method"]))
    data = data.set_index("method").loc[methods]
    colors = category_colors(len(methods))
    cue_types = [c[len("energy_cue_"):] for c in summary.columns if c.startswith("energy_cue_")]
    ratios = [3, max(3, len(cue_types) - 1)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": ratios})
    width = 0.8 / len(methods)

    def bars(ax, groups: list[tuple[str, str, str]]) -> None:
        x = np.arange(len(groups))
        for m, method in enumerate(methods):
            values = [data.loc[method, col] for _, col, _ in groups]
            ax.bar(x + (m - (len(methods) - 1) / 2) * width, values, width, color=colors[m], label=method)
        for g, (_, _, area_col) in enumerate(groups):
            chance = float(np.nanmean([data.loc[method, area_col] for method in methods]))
            ax.hlines(chance, g - 0.45, g + 0.45, colors="black", linewidth=1.5,
                      label="chance (mask area)" if g == 0 else None)
        ax.set_xticks(x, [name for name, _, _ in groups])
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of positive map energy (fraction)")

    bars(left, [("identity cues", "energy_cues", "area_cues"), ("body", "energy_body", "area_body"),
                ("background", "energy_background", "area_background")])
    left.set_title(f"Energy by region ({map_name})")
    left.legend(fontsize=8, loc="upper left")
    # Cue areas are small (a few % of the image), so shares would be invisible bars: show the lift,
    # share of energy / share of area, where 1 is what a uniform map scores.
    shown = [name for name in cue_types if data[f"area_cue_{name}"].notna().any()]
    if shown:
        x = np.arange(len(shown))
        top = 1.0
        for m, method in enumerate(methods):
            lift = [data.loc[method, f"energy_cue_{n}"] / data.loc[method, f"area_cue_{n}"] for n in shown]
            top = max(top, float(np.nanmax(lift)))
            right.bar(x + (m - (len(methods) - 1) / 2) * width, lift, width, color=colors[m], label=method)
        right.axhline(1.0, color="black", linewidth=1.5, label="uniform map (= 1)")
        right.set_xticks(x, shown)
        right.set_ylim(0, 1.35 * top)  # room for the legend above the bars
        right.set_ylabel("energy share / area share (x chance)")
        right.set_title("Lift on each cue type (images showing that cue)")
        right.legend(fontsize=8, loc="upper left")
    else:
        right.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
