"""Grids of heat-map overlays: images in columns, one row per map (seed 000 Fig. 1c: CAMs of each branch
for several images of one identity; seed 001 Fig. 5-6: matching regions and implicit attention)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from reidlib.explain.gradcam import MatchingRegions
from reidlib.explain.overlay import ImageLike, MapLike, add_colorbar, map_range, show_image
from reidlib.figures.style import use_book_style

__all__ = ["plot_map_grid", "plot_matching_regions"]

Scale = Literal["map", "row", "all"]
_SCALE_TEXT = {"map": "per-map min-max", "row": "per-row min-max", "all": "shared min-max"}


def plot_map_grid(
    images: Sequence[ImageLike],
    rows: Mapping[str, Sequence[MapLike]],
    *,
    title: str,
    map_label: str = "CAM",
    scale: Scale = "map",
    column_titles: Sequence[str] | None = None,
    contours: Sequence[np.ndarray | None] | None = None,
    show_images: bool = True,
    image_width: float = 1.0,
) -> Figure:
    """A grid with the plain images in the first row (if ``show_images``) and one overlay row per entry of
    ``rows`` (``{"branch 1": [map per image], ...}``).

    Args:
        images: ``N`` images (uint8 ``(H, W, 3)``, PIL or normalised ``(3, H, W)`` tensors).
        rows: row label -> ``N`` maps ``(h, w)``.
        title: figure title.
        map_label: what the maps are, for the colour bar.
        scale: ``"map"`` (each map by its own min-max), ``"row"`` (one scale per row) or ``"all"``.
        column_titles: ``N`` titles for the columns.
        contours: ``N`` optional boolean masks drawn as white outlines over the overlays (e.g. the
            ground-truth cue mask, to see whether the map hits it).
        image_width: inches per column.
    """
    use_book_style()
    n = len(images)
    if n == 0 or not rows:
        raise ValueError("plot_map_grid needs at least one image and one row of maps")
    for label, maps in rows.items():
        if len(maps) != n:
            raise ValueError(f"row {label!r} has {len(maps)} maps for {n} images")
    for name, values in (("column_titles", column_titles), ("contours", contours)):
        if values is not None and len(values) != n:
            raise ValueError(f"{name} has {len(values)} entries for {n} images")
    if scale not in _SCALE_TEXT:
        raise ValueError(f"scale must be one of {tuple(_SCALE_TEXT)}; got {scale!r}")
    n_rows = len(rows) + int(show_images)
    fig, axes = plt.subplots(n_rows, n, figsize=(image_width * n + 1.2, image_width * 2.1 * n_rows + 0.5),
                             squeeze=False)
    everything = map_range([m for maps in rows.values() for m in maps]) if scale == "all" else None
    r = 0
    if show_images:
        for c, image in enumerate(images):
            show_image(axes[0, c], image, title=column_titles[c] if column_titles else None)
        axes[0, 0].set_ylabel("image", fontsize=9)
        r = 1
    for label, maps in rows.items():
        row_scale = map_range(maps) if scale == "row" else everything
        for c, heat in enumerate(maps):
            contour = contours[c] if contours is not None else None
            first_title = column_titles[c] if column_titles and not show_images else None
            show_image(axes[r, c], images[c], heat, scale=row_scale, contour=contour, title=first_title)
        axes[r, 0].set_ylabel(label, fontsize=9)
        r += 1
    fig.suptitle(title, fontsize=10)
    add_colorbar(fig, axes.ravel().tolist(), f"{map_label} ({_SCALE_TEXT[scale]})")
    return fig


def plot_matching_regions(
    image_a: ImageLike,
    image_b: ImageLike,
    result: MatchingRegions,
    *,
    title: str = "Matching regions",
    image_width: float = 1.0,
) -> Figure:
    """Seed 001 Fig. 5: for an image pair, the Grad-CAM of each of the ``k`` embedding dimensions that
    contribute most to their similarity, in image a (top row) and image b (bottom row). Each dimension's
    two maps share one scale, so the two images can be compared."""
    use_book_style()
    k = len(result.dims)
    fig, axes = plt.subplots(2, k + 1, figsize=(image_width * (k + 1) + 1.2, image_width * 4.6),
                             squeeze=False)
    show_image(axes[0, 0], image_a, title="image a")
    show_image(axes[1, 0], image_b, title="image b")
    total = max(abs(result.similarity), 1e-12)
    for j in range(k):
        pair_scale = map_range([result.maps_a[j], result.maps_b[j]])
        share = 100 * float(result.contributions[j]) / total
        show_image(axes[0, j + 1], image_a, result.maps_a[j], scale=pair_scale,
                   title=f"dim {int(result.dims[j])}\n{share:.1f}% of sim.")
        show_image(axes[1, j + 1], image_b, result.maps_b[j], scale=pair_scale)
    fig.suptitle(f"{title} (similarity {result.similarity:.3f})", fontsize=10)
    add_colorbar(fig, axes.ravel().tolist(), "Grad-CAM (min-max per dimension, shared by a and b)")
    return fig
