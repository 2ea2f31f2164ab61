from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgb

from reidlib.explain.ranked_list import RankedRow, plot_ranked_list, plot_ranked_lists, rank_query
from reidlib.figures.style import MATCH_COLOR, MISMATCH_COLOR, QUERY_COLOR


def test_rank_query_removes_same_camera_matches_and_gives_ap():
    dist = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    g_pids = np.array([7, 7, 3, 7, 4, 7])
    g_cams = np.array([0, 1, 1, 2, 0, 0])
    ranked = rank_query(dist, 7, 0, g_pids, g_cams, k=4)
    # gallery 0 and 5 (pid 7, camera 0) are removed; the rest: 1 (hit), 2, 3 (hit), 4
    assert ranked.gallery_indices.tolist() == [1, 2, 3, 4]
    assert ranked.matches.tolist() == [True, False, True, False]
    assert ranked.num_relevant == 2
    assert ranked.ap == pytest.approx((1 / 1 + 2 / 3) / 2)
    none = rank_query(dist, 9, 0, g_pids, g_cams)
    assert np.isnan(none.ap) and none.num_relevant == 0
    with pytest.raises(ValueError, match="differ"):
        rank_query(dist, 7, 0, g_pids[:3], g_cams)


def _img(v: int) -> np.ndarray:
    return np.full((16, 8, 3), v, np.uint8)


def test_plot_ranked_lists_borders_title_and_colorbar():
    maps = [np.random.default_rng(i).random((4, 2)) for i in range(4)]
    rows = [
        RankedRow(_img(10), [_img(50), _img(90), _img(130)], [True, False, True], ap=0.5, num_relevant=2,
                  label="branch 1", query_map=maps[0], gallery_maps=maps[1:]),
        RankedRow(_img(10), [_img(50), _img(90)], [False, True], label="branch 2", notes=["d=0.1", "d=0.2"]),
    ]
    fig = plot_ranked_lists(rows, title="demo")
    axes = fig.axes
    for ax, colour in zip(axes[:3], [QUERY_COLOR, MATCH_COLOR, MISMATCH_COLOR], strict=True):
        assert ax.spines["left"].get_edgecolor()[:3] == pytest.approx(to_rgb(colour))
    texts = [t.get_text() for ax in axes for t in ax.texts]
    assert any("AP = 50.0% (2 relevant)" in t for t in texts)
    assert "RAM" in axes[-1].get_ylabel()  # colour bar
    assert not axes[7].axison  # the short row leaves its last cell empty
    plt.close(fig)
    plt.close(plot_ranked_list(rows[1]))
    with pytest.raises(ValueError, match="match flags"):
        plot_ranked_lists([RankedRow(_img(1), [_img(2)], [True, False])])
