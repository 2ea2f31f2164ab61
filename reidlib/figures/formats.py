"""Figure file formats: JPEG for figures made of pictures, PNG for plots.

Matplotlib's inline backend embeds every figure as a lossless PNG. For the book's picture grids (person
crops, CAM / RAM / Grad-CAM overlays, ranked lists, t-SNE thumbnails) that costs 0.3-0.8 MB per figure,
several MB per chapter, in the notebook, its git history and every page of the site. JPEG stores those 4-6x
smaller with no visible loss, while it would blur the sharp lines and text of curves, bars and scatter
plots, which stay PNG. A figure counts as a picture when its raster images (``imshow``, thumbnails) hold at
least :data:`RASTER_PIXELS` pixels; a small ``imshow`` of a matrix stays PNG.

- :func:`use_compact_figure_formats`: figures shown in a notebook; called by
  :func:`reidlib.figures.style.use_book_style`, so every figure helper installs it (outside IPython, or
  with another backend, it does nothing);
- :func:`save_figure`: figures written to files (``.jpg`` or ``.png`` by the same rule).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.image import AxesImage, BboxImage, FigureImage

#: Raster pixels (summed over a figure's images) from which a figure is embedded as JPEG.
RASTER_PIXELS = 10_000
#: JPEG quality (PIL's 1-95 scale) of embedded picture figures.
JPEG_QUALITY = 88

_INLINE_BACKENDS = ("inline", "module://matplotlib_inline.backend_inline")


def raster_pixels(fig: Figure) -> int:
    """Pixels held by the raster images of ``fig`` (``imshow``, ``figimage``, thumbnails in offset boxes),
    summed."""
    total = 0
    for image in fig.findobj(lambda artist: isinstance(artist, (AxesImage, BboxImage, FigureImage))):
        array = image.get_array()
        if array is not None and array.ndim >= 2:
            total += int(array.shape[0]) * int(array.shape[1])
    return total


def is_picture(fig: Figure) -> bool:
    """Whether ``fig`` is embedded as JPEG (its images hold at least :data:`RASTER_PIXELS` pixels)."""
    return raster_pixels(fig) >= RASTER_PIXELS


def _inline_shell() -> Any | None:
    """The running IPython shell when figures go through the inline backend, else ``None``."""
    if "IPython" not in sys.modules:  # never import IPython into a plain Python process
        return None
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return None
    if matplotlib.__version_info__ >= (3, 10):
        backend = matplotlib.get_backend(auto_select=False)
    else:
        backend = matplotlib.rcParams._get("backend")
    if backend not in _INLINE_BACKENDS:
        return None
    # Importing the backend configures its formatters now; were it imported later (at the first figure),
    # it would replace the ones installed below.
    import matplotlib_inline.backend_inline  # noqa: F401

    return shell


def use_compact_figure_formats(shell: Any | None = None, quality: int = JPEG_QUALITY) -> bool:
    """Embed picture figures (:func:`is_picture`) as JPEG and every other figure as before (PNG).

    Args:
        shell: the IPython shell whose display formatters to change; default: the running one, when
            matplotlib's inline backend is active.
        quality: JPEG quality, 1-95.

    Returns:
        Whether the formats are in place (``False`` outside IPython, with another backend, or when the
        shell has no PNG printer for figures). Calling it again changes nothing.
    """
    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be in 1..95, got {quality}")
    shell = shell if shell is not None else _inline_shell()
    if shell is None:
        return False
    from IPython.core.pylabtools import print_figure

    formatters = shell.display_formatter.formatters
    png, jpeg = formatters["image/png"], formatters["image/jpeg"]
    try:
        plot_printer = png.lookup_by_type(Figure)
    except KeyError:
        return False
    if getattr(plot_printer, "_reidlib_compact", False):
        return True

    def png_printer(fig: Figure) -> Any:
        return None if is_picture(fig) else plot_printer(fig)

    def jpeg_printer(fig: Figure) -> Any:
        if not is_picture(fig):
            return None
        return print_figure(fig, fmt="jpeg", base64=True, pil_kwargs={"quality": quality})

    png_printer._reidlib_compact = True  # type: ignore[attr-defined]
    png.for_type(Figure, png_printer)
    jpeg.for_type(Figure, jpeg_printer)
    return True


def save_figure(fig: Figure, stem: str | os.PathLike[str], quality: int = JPEG_QUALITY) -> Path:
    """Write ``fig`` to ``stem`` + ``.jpg`` when it is a picture (:func:`is_picture`), else + ``.png``.

    Returns:
        The written file's path.
    """
    stem = Path(stem)
    if is_picture(fig):
        path = stem.with_name(stem.name + ".jpg")
        fig.savefig(path, pil_kwargs={"quality": quality})
    else:
        path = stem.with_name(stem.name + ".png")
        fig.savefig(path)
    return path
