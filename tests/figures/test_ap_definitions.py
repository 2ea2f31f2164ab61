import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from reidlib.figures.ap_definitions import plot_ap_definitions


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


PER_QUERY = {"full": [1.0, 0.5, 0.2], "trapezoid": [1.0, 0.4, 0.1], "truncated50": [1.0, 0.5, 0.0]}


def test_one_panel_per_other_definition_in_percent():
    fig = plot_ap_definitions(PER_QUERY, "synthreid-tiny")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    for ax, mode in zip(fig.axes, ("trapezoid", "truncated50"), strict=True):
        points = ax.collections[0].get_offsets()
        assert points.shape == (3, 2)
        np.testing.assert_allclose(points[:, 0], [100, 50, 20])
        np.testing.assert_allclose(points[:, 1], 100 * np.asarray(PER_QUERY[mode]))
        assert ax.get_title() == f"{mode} vs full, per query"
    assert "synthreid-tiny, 3 queries" in fig._suptitle.get_text()
    assert fig._suptitle.get_text().startswith("Three AP definitions")


def test_bad_input_is_named():
    with pytest.raises(KeyError, match="trapezoid"):
        plot_ap_definitions({"full": [1.0], "truncated50": [1.0]}, "d")
    with pytest.raises(ValueError, match="same queries"):
        plot_ap_definitions({**PER_QUERY, "trapezoid": [1.0]}, "d")
    fig = plot_ap_definitions(PER_QUERY, "d", others=("trapezoid",))
    assert len(fig.axes) == 1 and fig._suptitle.get_text().startswith("Two AP definitions")
