from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from reidlib.explain.tsne import hard_identities, plot_tsne, tsne_embedding


def _clusters(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = {1: [5, 0, 0, 0], 2: [0, 5, 0, 0], 3: [0, 0, 5, 0], 4: [0, 0, 4.6, 1.0]}
    pids = np.repeat(list(centres), 6)
    feats = np.stack([np.asarray(centres[p], float) for p in pids]) + 0.1 * rng.normal(size=(24, 4))
    return feats, pids


def test_tsne_separates_clusters():
    feats, pids = _clusters()
    points = tsne_embedding(feats, seed=0)
    assert points.shape == (24, 2)
    # each point's nearest neighbour in the map has its identity
    d = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert (pids[d.argmin(1)] == pids).mean() > 0.9
    np.testing.assert_allclose(tsne_embedding(feats, seed=0), points)  # deterministic in the seed
    with pytest.raises(ValueError, match="at least 4"):
        tsne_embedding(feats[:3])


def test_hard_identities_picks_closest_pair_first():
    feats, pids = _clusters()
    assert hard_identities(feats, pids, n=2) == [3, 4]
    assert len(set(hard_identities(feats, pids, n=4))) == 4
    with pytest.raises(ValueError, match="between 2"):
        hard_identities(feats, pids, n=5)


def test_plot_tsne_with_thumbnails():
    feats, pids = _clusters()
    points = tsne_embedding(feats)
    thumbs = [np.full((16, 8, 3), 40 * (p % 5), np.uint8) for p in pids]
    fig = plot_tsne(points, pids, images=thumbs, title="test")
    ax = fig.axes[0]
    assert ax.get_title() == "test" and "t-SNE" in ax.get_xlabel()
    assert len(ax.artists) == 4 * 2  # two thumbnails per identity
    plt.close(fig)
    with pytest.raises(ValueError, match="images"):
        plot_tsne(points, pids, images=thumbs[:3])
