"""Ranked-list figures: a query, its top-k gallery images with green/red borders, AP in the title.

Seed 001's Fig. 4 shows the first 10 retrieved images per query with the query's AP and its number of
relevant images; seed 000's Fig. 4 and 8 add a RAM over every image, one row per branch (Fig. 8). The
gallery follows the standard protocol: images of the query's identity taken by the query's camera are
removed before ranking (they are neither right nor wrong), as in :mod:`reidlib.evaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from reidlib.explain.overlay import ImageLike, MapLike, add_colorbar, map_range, show_image
from reidlib.figures.style import MATCH_COLOR, MISMATCH_COLOR, QUERY_COLOR, use_book_style

__all__ = ["RankedList", "rank_query", "RankedRow", "plot_ranked_lists", "plot_ranked_list"]


@dataclass
class RankedList:
    """The top of one query's ranking.

    Attributes:
        gallery_indices: ``(k,)`` gallery positions, best first, same-camera matches removed.
        distances: ``(k,)`` their distances to the query.
        matches: ``(k,)`` whether each has the query's identity.
        ap: the query's average precision over the whole ranked list (NaN without any valid match).
        num_relevant: valid matches of the query in the gallery.
    """

    gallery_indices: np.ndarray
    distances: np.ndarray
    matches: np.ndarray
    ap: float
    num_relevant: int


def _array(values: np.ndarray | Tensor | Sequence, name: str) -> np.ndarray:
    out = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
    if out.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per gallery image); got shape {out.shape}")
    return out


def rank_query(
    distances: np.ndarray | Tensor,
    query_pid: int,
    query_camid: int,
    gallery_pids: np.ndarray | Tensor | Sequence[int],
    gallery_camids: np.ndarray | Tensor | Sequence[int],
    k: int = 10,
) -> RankedList:
    """Top-``k`` of one query after removing same-identity same-camera gallery images, and its AP.

    Args:
        distances: ``(G,)`` distance of every gallery image to the query (smaller is closer).
        query_pid, query_camid: the query's identity and camera.
        gallery_pids, gallery_camids: ``(G,)`` identities and cameras of the gallery.
        k: number of images to keep.

    The AP comes from :func:`reidlib.evaluation.rank.evaluate` (full, non-interpolated AP), so a figure
    quotes the same number as the chapter's tables.
    """
    from reidlib.evaluation.rank import evaluate

    dist = _array(distances, "distances").astype(np.float64)
    g_pids = _array(gallery_pids, "gallery_pids")
    g_cams = _array(gallery_camids, "gallery_camids")
    if not dist.shape == g_pids.shape == g_cams.shape:
        raise ValueError(
            f"distances {dist.shape}, gallery_pids {g_pids.shape} and gallery_camids {g_cams.shape} differ"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    order = np.argsort(dist, kind="stable")
    keep = ~((g_pids[order] == query_pid) & (g_cams[order] == query_camid))
    order = order[keep][:k]
    matches = g_pids[order] == query_pid
    num_relevant = int(((g_pids == query_pid) & (g_cams != query_camid)).sum())
    ap = float("nan")
    if num_relevant > 0:
        result = evaluate(dist[None], np.array([query_pid]), g_pids, np.array([query_camid]), g_cams,
                          max_rank=min(50, len(dist)))
        ap = float(np.asarray(result.ap)[0])
    return RankedList(gallery_indices=order, distances=dist[order], matches=matches, ap=ap,
                      num_relevant=num_relevant)


@dataclass
class RankedRow:
    """One row of a ranked-list figure.

    Attributes:
        query_image: the query (uint8 ``(H, W, 3)``, PIL, or normalised ``(3, H, W)`` tensor).
        gallery_images: the top-k gallery images, best first.
        matches: whether each gallery image has the query's identity (green / red border).
        ap: the query's AP for the title (``None`` to leave it out).
        num_relevant: shown beside the AP, as in seed 001's Fig. 4.
        label: row name (e.g. ``"branch 2"`` or ``"baseline"``).
        query_map, gallery_maps: optional heat maps (RAM, Grad-CAM) laid over the images.
        notes: optional text under each gallery image (e.g. its distance).
    """

    query_image: ImageLike
    gallery_images: Sequence[ImageLike]
    matches: Sequence[bool]
    ap: float | None = None
    num_relevant: int | None = None
    label: str = ""
    query_map: MapLike | None = None
    gallery_maps: Sequence[MapLike] | None = None
    notes: Sequence[str] | None = None


def _check_row(row: RankedRow, r: int) -> None:
    if len(row.gallery_images) == 0:
        raise ValueError(f"row {r}: no gallery images")
    if len(row.matches) != len(row.gallery_images):
        raise ValueError(f"row {r}: {len(row.matches)} match flags for {len(row.gallery_images)} images")
    if row.gallery_maps is not None and len(row.gallery_maps) != len(row.gallery_images):
        raise ValueError(f"row {r}: {len(row.gallery_maps)} maps for {len(row.gallery_images)} images")
    if row.notes is not None and len(row.notes) != len(row.gallery_images):
        raise ValueError(f"row {r}: {len(row.notes)} notes for {len(row.gallery_images)} images")


def _row_title(row: RankedRow) -> str:
    parts = [row.label] if row.label else []
    if row.ap is not None:
        ap = "n/a" if np.isnan(row.ap) else f"{100 * row.ap:.1f}%"
        rel = f" ({row.num_relevant} relevant)" if row.num_relevant is not None else ""
        parts.append(f"AP = {ap}{rel}")
    return "   ".join(parts)


def plot_ranked_lists(
    rows: Sequence[RankedRow],
    *,
    title: str = "Ranked lists",
    map_label: str = "RAM",
    image_width: float = 0.9,
) -> Figure:
    """Rows of query + top-k gallery images (seed 001 Fig. 4; seed 000 Fig. 4 and 8).

    Borders: query blue, correct match green, wrong match red (:mod:`reidlib.figures.style`). With heat
    maps, each row's maps share one scale (the row's min to max, so gallery images of a row compare), and
    a colour bar states it.
    """
    use_book_style()
    if len(rows) == 0:
        raise ValueError("plot_ranked_lists needs at least one row")
    for r, row in enumerate(rows):
        _check_row(row, r)
    cols = 1 + max(len(row.gallery_images) for row in rows)
    has_maps = any(row.gallery_maps is not None or row.query_map is not None for row in rows)
    height = image_width * 2.6
    fig, axes = plt.subplots(len(rows), cols, figsize=(image_width * cols + (0.9 if has_maps else 0.2),
                                                       height * len(rows) + 0.6), squeeze=False,
                             gridspec_kw={"hspace": 0.45})
    for r, row in enumerate(rows):
        maps = [m for m in [row.query_map, *(row.gallery_maps or [])] if m is not None]
        scale = map_range(maps) if maps else None
        show_image(axes[r, 0], row.query_image, row.query_map, scale=scale, border=QUERY_COLOR,
                   title="query")
        for c in range(1, cols):
            ax = axes[r, c]
            if c - 1 >= len(row.gallery_images):
                ax.axis("off")
                continue
            heat = row.gallery_maps[c - 1] if row.gallery_maps is not None else None
            color = MATCH_COLOR if row.matches[c - 1] else MISMATCH_COLOR
            note = f"\n{row.notes[c - 1]}" if row.notes is not None else ""
            show_image(ax, row.gallery_images[c - 1], heat, scale=scale, border=color, title=f"{c}{note}")
        text = _row_title(row)
        if text:
            axes[r, 0].annotate(text, (0, 1), xycoords="axes fraction", xytext=(0, 22),
                                textcoords="offset points", ha="left", va="bottom", fontsize=9)
    fig.suptitle(f"{title}\n(blue: query, green: same identity, red: different identity)", fontsize=10)
    if has_maps:
        add_colorbar(fig, axes.ravel().tolist(), f"{map_label} (per-row min-max)")
    return fig


def plot_ranked_list(row: RankedRow, *, title: str = "Ranked list", map_label: str = "RAM") -> Figure:
    """One query's ranked list; see :func:`plot_ranked_lists`."""
    return plot_ranked_lists([row], title=title, map_label=map_label)
