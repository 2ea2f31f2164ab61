import base64
import io

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from reidlib.figures.formats import (
    RASTER_PIXELS,
    is_picture,
    raster_pixels,
    save_figure,
    use_compact_figure_formats,
)

matplotlib.use("Agg")


@pytest.fixture
def shell():
    """A fresh IPython shell whose figures are embedded as PNG, as the inline backend sets it up."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.pylabtools import select_figure_formats

    ip = InteractiveShell.instance()
    select_figure_formats(ip, {"png"})
    yield ip
    InteractiveShell.clear_instance()


def _plot():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2], [0.3, 0.5, 0.4])
    ax.imshow(np.eye(10), extent=(0, 1, 0, 1))  # a small matrix: still a plot
    return fig


def _pictures():
    fig, axes = plt.subplots(1, 2, figsize=(4, 3))
    rng = np.random.default_rng(0)
    for ax in axes:
        ax.imshow(rng.random((128, 64, 3)))
    return fig


def test_raster_pixels_counts_every_image():
    plot, pictures = _plot(), _pictures()
    assert raster_pixels(plot) == 100 and not is_picture(plot)
    assert raster_pixels(pictures) == 2 * 128 * 64 >= RASTER_PIXELS and is_picture(pictures)
    plt.close("all")


def test_thumbnails_in_offset_boxes_count_as_pictures():
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    fig, ax = plt.subplots()
    ax.scatter([0, 1], [0, 1])
    for x in (0, 1):
        ax.add_artist(AnnotationBbox(OffsetImage(np.zeros((64, 96, 3)), zoom=0.5), (x, x), frameon=False))
    assert raster_pixels(fig) == 2 * 64 * 96 and is_picture(fig)
    plt.close(fig)


def test_save_figure_picks_the_suffix(tmp_path):
    picture = save_figure(_pictures(), tmp_path / "grid")
    plot = save_figure(_plot(), tmp_path / "curve")
    assert picture.name == "grid.jpg" and Image.open(picture).format == "JPEG"
    assert plot.name == "curve.png" and Image.open(plot).format == "PNG"
    plt.close("all")


def test_pictures_are_jpeg_and_plots_stay_png(shell):
    assert use_compact_figure_formats(shell, quality=80)
    assert use_compact_figure_formats(shell, quality=80)  # a second call wraps nothing twice

    plot_data, _ = shell.display_formatter.format(_plot())
    assert "image/png" in plot_data and "image/jpeg" not in plot_data

    picture_data, _ = shell.display_formatter.format(_pictures())
    assert "image/jpeg" in picture_data and "image/png" not in picture_data
    image = Image.open(io.BytesIO(base64.b64decode(picture_data["image/jpeg"])))
    assert image.format == "JPEG" and image.size[0] > 100
    plt.close("all")


def test_outside_ipython_nothing_is_installed():
    assert use_compact_figure_formats() is False


def test_a_shell_without_a_figure_printer_is_left_alone():
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    try:
        for formatter in ip.display_formatter.formatters.values():
            formatter.pop(matplotlib.figure.Figure, None)
        assert use_compact_figure_formats(ip) is False
    finally:
        InteractiveShell.clear_instance()


def test_quality_out_of_range_is_refused():
    with pytest.raises(ValueError, match="quality"):
        use_compact_figure_formats(quality=0)
