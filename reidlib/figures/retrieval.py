"""Figures of the retrieval benchmarks: time and memory of re-ranking as the set grows to MSMT17's size."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from reidlib.figures.style import category_colors, use_book_style


def rerank_scaling(table: pd.DataFrame, machine_gb: float | None = None) -> Figure | None:
    """Wall time and peak memory of the dense and of reidlib's re-ranking against the number of images.

    Args:
        table: :func:`reidlib.results.overview.retrieval_benchmark_table`'s table; its re-ranking rows
            are drawn (``queries + gallery`` on x): the dense algorithm's measured sizes and its
            extrapolation (dashed, open marker), reidlib's at the same sizes and at MSMT17's, one marker
            per feature dimension.
        machine_gb: the memory of the machine that ran it, drawn as a line (``None``: not drawn).

    Returns:
        Two log-log axes side by side (seconds, GB), or ``None`` when the table has no re-ranking rows.
    """
    rows = table[table["task"].astype(str).str.startswith("re-ranking")].copy()
    if rows.empty:
        return None
    rows["N"] = rows["queries"] + rows["gallery"]
    use_book_style()
    fig, (t_ax, m_ax) = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    dense_color, ours_color = category_colors(2)
    dense = rows[rows["task"].str.contains("dense")].sort_values("N")
    measured = dense[dense["how"] == "measured"]
    for ax, column in ((t_ax, "wall time (s)"), (m_ax, "peak memory (GB)")):
        ax.plot(dense["N"], dense[column], "--", color=dense_color)
        ax.plot(measured["N"], measured[column], "o", color=dense_color, label="dense algorithm, measured")
        guess = dense[dense["how"] != "measured"]
        ax.plot(guess["N"], guess[column], "o", mfc="white", color=dense_color,
                label="dense algorithm, extrapolated")
        ours = rows[~rows["task"].str.contains("dense")]
        for marker, (dim, part) in zip("s^Dv", ours.groupby("dimension"), strict=False):
            part = part.sort_values("N")
            ax.plot(part["N"], part[column], marker=marker, color=ours_color, linestyle=":",
                    label=f"reidlib, dimension {dim}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("images re-ranked (queries + gallery)")
    if machine_gb:
        m_ax.axhline(machine_gb, color="0.4", linewidth=1)
        m_ax.annotate(f"this machine: {machine_gb:.0f} GB", (rows["N"].min(), machine_gb), va="bottom",
                      fontsize=8, color="0.3")
    t_ax.set(ylabel="wall time (s)", title="Re-ranking time")
    m_ax.set(ylabel="peak memory (GB)", title="Re-ranking peak memory")
    t_ax.legend(loc="upper left", fontsize=8)
    return fig
