"""One figure style for the whole book.

Every figure helper in reidlib calls :func:`use_book_style` (cheap, idempotent) and takes colours from
here, so the chapters look alike: colour-blind-safe palettes (Okabe-Ito for categories, a perceptually
uniform map for heat maps), titled axes, labelled units.
"""

from __future__ import annotations

# No backend is forced here: notebooks keep their inline backend, and matplotlib falls back to Agg
# by itself on a machine without a display.
import matplotlib
import matplotlib.pyplot as plt

from reidlib.figures.formats import use_compact_figure_formats

#: Okabe & Ito's colour-blind-safe categorical palette (black last: use it for "other").
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
#: Heat-map colormap for CAM / RAM / Grad-CAM overlays (perceptually uniform, readable in grey).
HEATMAP_CMAP = "inferno"
#: Diverging colormap for signed maps (e.g. RAM, which can be negative).
DIVERGING_CMAP = "RdBu_r"
#: Border colours of ranked lists: correct match / wrong match / query.
MATCH_COLOR = "#009E73"
MISMATCH_COLOR = "#D55E00"
QUERY_COLOR = "#0072B2"

_RC = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
    "image.cmap": HEATMAP_CMAP,
    "legend.frameon": False,
}


def use_book_style() -> None:
    """Apply the book's matplotlib settings globally, and in a notebook embed picture figures as JPEG
    (:mod:`reidlib.figures.formats`). Idempotent."""
    plt.rcParams.update(_RC)
    use_compact_figure_formats()


def category_colors(n: int) -> list[str]:
    """``n`` distinguishable colours; Okabe-Ito first, then seaborn's colour-blind palette, then tab20."""
    if n <= len(OKABE_ITO):
        return OKABE_ITO[:n]
    import seaborn as sns

    cb = [matplotlib.colors.to_hex(c) for c in sns.color_palette("colorblind", 10)]
    extra = [matplotlib.colors.to_hex(c) for c in plt.get_cmap("tab20").colors]
    pool = list(OKABE_ITO)
    for c in cb + extra:
        # seaborn's colour-blind palette re-uses near copies of Okabe-Ito; keep only visibly new colours
        if min(_rgb_distance(c, p) for p in pool) > _MIN_COLOR_DISTANCE:
            pool.append(c)
    return [pool[i % len(pool)] for i in range(n)]


#: Smallest Euclidean RGB distance (channels in [0, 1]) between two colours of :func:`category_colors`.
_MIN_COLOR_DISTANCE = 0.12


def _rgb_distance(a: str, b: str) -> float:
    ra, rb = matplotlib.colors.to_rgb(a), matplotlib.colors.to_rgb(b)
    return sum((x - y) ** 2 for x, y in zip(ra, rb, strict=True)) ** 0.5
