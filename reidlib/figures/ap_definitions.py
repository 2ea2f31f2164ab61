"""Figure of the protocol page: one ranking's per-query AP under the three AP definitions
(:data:`reidlib.evaluation.rank.AP_MODES`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from reidlib.figures.style import OKABE_ITO, use_book_style

_NUMBER_WORDS = {2: "Two", 3: "Three", 4: "Four", 5: "Five"}


def plot_ap_definitions(per_query: Mapping[str, Sequence[float]], dataset: str, reference: str = "full",
                        others: Sequence[str] = ("trapezoid", "truncated50")) -> Figure:
    """Per-query AP of each definition in ``others`` against the ``reference`` definition, one scatter
    panel each, with the diagonal where both agree.

    Args:
        per_query: AP definition -> per-query AP as **fractions** in [0, 1], the same queries in the same
            order for every definition (a protocol run's ``extra["per_query_ap"]``).
        dataset: named in the title.
        reference, others: keys of ``per_query``.

    Returns:
        The figure: one axes per entry of ``others`` (shared y), axes in percent.

    Raises:
        KeyError: a definition is missing from ``per_query`` (the message lists those present).
        ValueError: the definitions hold different numbers of queries.
    """
    missing = [m for m in (reference, *others) if m not in per_query]
    if missing:
        raise KeyError(f"per-query AP lacks {missing}; have {sorted(per_query)}")
    values = {m: 100 * np.asarray(per_query[m], dtype=float) for m in (reference, *others)}
    sizes = {m: len(v) for m, v in values.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every AP definition must score the same queries, got sizes {sizes}")
    use_book_style()
    fig, axes = plt.subplots(1, len(others), figsize=(4.5 * len(others), 4.2), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, mode, color in zip(axes, others, OKABE_ITO[1:], strict=False):
        ax.scatter(values[reference], values[mode], s=14, alpha=0.7, color=color)
        ax.plot([0, 100], [0, 100], color="0.5", lw=1, ls="--", label="equal")
        ax.set_xlabel(f"AP, {reference} definition (%)")
        ax.set_title(f"{mode} vs {reference}, per query")
        ax.legend(loc="upper left")
    axes[0].set_ylabel("AP, other definition (%)")
    count = _NUMBER_WORDS.get(len(values), str(len(values)))
    fig.suptitle(f"{count} AP definitions on one ranking ({dataset}, {sizes[reference]} queries)")
    fig.tight_layout()
    return fig
