import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.figure import Figure

from reidlib.figures.claims import (
    NEUTRAL_COLOR,
    VERDICT_COLORS,
    plot_verdicts_per_chapter,
    verdict_cell_style,
    verdict_colors,
    verdict_shade,
)
from reidlib.figures.style import MATCH_COLOR, MISMATCH_COLOR
from reidlib.results.claims import CONTRADICTED, NOT_YET_RUN, REPRODUCED, VERDICTS

NEW = ("verdict-new-1", "verdict-new-2")  # verdicts a later VERDICTS may add


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _table(extra=()):
    return pd.DataFrame(
        {
            "chapter": ["a", "a", "b", *["b"] * len(extra)],
            "cpu": [REPRODUCED, CONTRADICTED, REPRODUCED, *extra],
            "full": [NOT_YET_RUN] * (3 + len(extra)),
        }
    )


def test_known_verdicts_keep_their_colours():
    colors = verdict_colors()
    assert list(colors) == list(VERDICTS)
    assert colors[REPRODUCED] == MATCH_COLOR and colors[CONTRADICTED] == MISMATCH_COLOR
    assert colors[NOT_YET_RUN] == NEUTRAL_COLOR


def test_new_verdicts_get_distinct_colours():
    colors = verdict_colors([*VERDICTS, *NEW])
    assert all(colors[v] != NEUTRAL_COLOR for v in NEW)
    assert len({c.upper() for c in colors.values()}) == len(colors)
    # far more verdicts than palette colours: the rest fall back to neutral grey, never fail
    many = verdict_colors([*VERDICTS, *(f"v{i}" for i in range(20))])
    assert many["v19"] == NEUTRAL_COLOR


def test_cell_shading():
    assert verdict_cell_style(REPRODUCED) == "background-color: #cdeee3"
    assert verdict_cell_style(CONTRADICTED) == "background-color: #f6d5c2"
    assert verdict_cell_style("not a verdict") == "background-color: white"
    assert verdict_cell_style(float("nan")) == "background-color: white"
    shade = verdict_shade(NEW[0], [*VERDICTS, *NEW])
    bar = verdict_colors([*VERDICTS, *NEW])[NEW[0]]
    assert shade != "white" and shade != bar
    # a pale version of the verdict's colour: every channel lighter
    assert all(s >= b for s, b in zip(mcolors.to_rgb(shade), mcolors.to_rgb(bar), strict=True))


def _segments(ax):
    return [p for p in ax.patches]


def test_plot_verdicts_per_chapter_bars_and_labels():
    fig = plot_verdicts_per_chapter(_table(), ["a", "b"], ["cpu", "full"])
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a · cpu", "a · full", "b · cpu", "b · full"]
    assert len(_segments(ax)) == 4 * len(VERDICTS)  # one segment per bar and verdict
    widths = [p.get_width() for p in _segments(ax)]
    assert widths[:4] == [1, 0, 1, 0]  # reproduced per bar
    assert sum(widths) == 6  # 3 claims x 2 scales
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == list(VERDICTS)


def test_plot_verdicts_draws_a_verdict_unknown_to_verdicts():
    fig = plot_verdicts_per_chapter(_table(extra=[NEW[0]]), ["a", "b"], ["cpu"])
    ax = fig.axes[0]
    assert len(_segments(ax)) == 2 * (len(VERDICTS) + 1)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[-1] == NEW[0]
    new_bar = _segments(ax)[-1]  # the new verdict's segment of the last bar (b · cpu)
    assert new_bar.get_width() == 1
    assert mcolors.to_hex(new_bar.get_facecolor()) != NEUTRAL_COLOR.lower()
    assert mcolors.to_hex(new_bar.get_facecolor()) not in {c.lower() for c in VERDICT_COLORS.values()}


def test_plot_verdicts_of_empty_ledger_is_none():
    assert plot_verdicts_per_chapter(pd.DataFrame(columns=["chapter", "cpu"]), [], ["cpu"]) is None
