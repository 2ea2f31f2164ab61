import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.figure import Figure

from reidlib.figures.overview import plot_map_per_run
from reidlib.figures.style import category_colors


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


RUNS = pd.DataFrame(
    {"chapter": ["b", "b", "c", "c"], "run": ["r1", "r2", "r3", "r4"], "mAP": [10.0, 20.5, float("nan"), 5.0]}
)


def test_one_bar_per_run_labelled_and_coloured_by_chapter():
    fig = plot_map_per_run(RUNS, "cpu", chapters=["a", "b", "c"])
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.patches) == 3  # r3 has no mAP (a score-only run): no empty row for it
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b / r1", "b / r2", "c / r4"]
    assert [p.get_width() for p in ax.patches] == [10.0, 20.5, 5.0]
    palette = category_colors(3)  # "a" keeps the first colour although it has no run here
    faces = [mcolors.to_hex(p.get_facecolor()) for p in ax.patches]
    assert faces == [palette[1].lower(), palette[1].lower(), palette[2].lower()]
    assert "cpu scale" in ax.get_title() and ax.get_xlabel() == "mAP (%)"


def test_default_chapters_and_empty_table():
    fig = plot_map_per_run(RUNS, "full")
    faces = [mcolors.to_hex(p.get_facecolor()) for p in fig.axes[0].patches]
    assert faces[0] == category_colors(2)[0].lower() and faces[2] == category_colors(2)[1].lower()
    assert plot_map_per_run(pd.DataFrame(), "cpu") is None
    assert plot_map_per_run(RUNS.iloc[2:3], "cpu") is None  # no run with an mAP
