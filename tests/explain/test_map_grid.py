from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from reidlib.explain.gradcam import MatchingRegions
from reidlib.explain.map_grid import plot_map_grid, plot_matching_regions


def _img(v: int) -> np.ndarray:
    return np.full((16, 8, 3), v, np.uint8)


def test_plot_map_grid_layout_and_errors():
    images = [_img(20), _img(120)]
    rows = {"branch 1": [np.random.rand(4, 2), np.random.rand(4, 2)], "all": [torch.rand(4, 2)] * 2}
    mask = np.zeros((16, 8), bool)
    mask[2:6, 2:6] = True
    fig = plot_map_grid(images, rows, title="t", column_titles=["a", "b"], contours=[mask, None], scale="row")
    assert len(fig.axes) == 3 * 2 + 1  # images row + two map rows + colour bar
    assert fig.axes[2].get_ylabel() == "branch 1" and "per-row" in fig.axes[-1].get_ylabel()
    plt.close(fig)
    with pytest.raises(ValueError, match="row 'all' has 1 maps for 2 images"):
        plot_map_grid(images, {"all": [np.ones((4, 2))]}, title="t")
    with pytest.raises(ValueError, match="scale"):
        plot_map_grid(images, rows, title="t", scale="global")


def test_plot_matching_regions():
    result = MatchingRegions(dims=torch.tensor([3, 1]), contributions=torch.tensor([0.3, 0.1]),
                             similarity=0.8, maps_a=torch.rand(2, 4, 2), maps_b=torch.rand(2, 4, 2))
    fig = plot_matching_regions(_img(10), _img(200), result)
    assert "37.5% of sim." in fig.axes[1].get_title()
    plt.close(fig)
