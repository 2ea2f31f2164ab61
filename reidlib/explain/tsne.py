"""t-SNE of re-ID embeddings for a few hard-to-separate identities (seed 000, Fig. 7).

Seed 000 picks identities "with similar appearance" (all in purple) from the Market-1501 test set and
shows the t-SNE (van der Maaten & Hinton, 2008) of the baseline's and CAMA's embeddings: points of one
identity should form one tight cluster. :func:`hard_identities` picks such a subset automatically (the
identities whose mean embeddings lie closest together); with SynthReID one can instead take a family of
look-alike identities.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from sklearn.manifold import TSNE
from torch import Tensor

from reidlib.explain.overlay import ImageLike, to_uint8_image
from reidlib.figures.style import category_colors, use_book_style

__all__ = ["tsne_embedding", "hard_identities", "plot_tsne"]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def _features(features: np.ndarray | Tensor, normalize: bool) -> np.ndarray:
    if isinstance(features, Tensor):
        x = features.detach().float().cpu().numpy()
    else:
        x = np.asarray(features, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D); got shape {x.shape}")
    if normalize:
        x = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    return x


def tsne_embedding(
    features: np.ndarray | Tensor,
    *,
    seed: int = 0,
    perplexity: float = 30.0,
    normalize: bool = True,
) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA initialisation) of ``(N, D)`` features; returns ``(N, 2)``.

    ``normalize`` L2-normalises first, so the map reflects the distance used for retrieval. The
    perplexity is capped at ``(N - 1) / 3`` so that small subsets work.
    """
    x = _features(features, normalize)
    if x.shape[0] < 4:
        raise ValueError(f"t-SNE needs at least 4 points; got {x.shape[0]}")
    perplexity = float(min(perplexity, (x.shape[0] - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(x).astype(np.float32)


def hard_identities(features: np.ndarray | Tensor, pids: Sequence[int], n: int = 8) -> list[int]:
    """``n`` identities that are hard to tell apart: start from the two identities with the closest mean
    (L2-normalised) embeddings, then repeatedly add the identity closest on average to those chosen."""
    x = _features(features, normalize=True)
    pids = np.asarray(pids)
    if pids.shape != (x.shape[0],):
        raise ValueError(f"need one pid per feature ({x.shape[0]}); got {pids.shape}")
    unique = np.unique(pids)
    if not 2 <= n <= len(unique):
        raise ValueError(f"n must be between 2 and the number of identities ({len(unique)}); got {n}")
    centroids = np.stack([x[pids == p].mean(axis=0) for p in unique])
    dist = np.linalg.norm(centroids[:, None] - centroids[None], axis=2)
    np.fill_diagonal(dist, np.inf)
    first, second = np.unravel_index(np.argmin(dist), dist.shape)
    chosen = [int(first), int(second)]
    while len(chosen) < n:
        mean_dist = dist[:, chosen].mean(axis=1)
        mean_dist[chosen] = np.inf
        chosen.append(int(np.argmin(mean_dist)))
    return [int(unique[i]) for i in chosen]


def plot_tsne(
    points: np.ndarray,
    pids: Sequence[int],
    *,
    images: Sequence[ImageLike] | None = None,
    title: str = "t-SNE of embeddings",
    ax: Axes | None = None,
    thumb_height: int = 34,
    thumbs_per_identity: int = 2,
) -> Figure:
    """Scatter of ``(N, 2)`` t-SNE points, one colour and marker per identity, each identity's number
    written at its centroid (as in seed 000's Fig. 7). With ``images``, the first ``thumbs_per_identity``
    points of each identity also show their image, framed in the identity's colour."""
    use_book_style()
    points = np.asarray(points, dtype=float)
    pids = np.asarray(pids)
    if points.ndim != 2 or points.shape[1] != 2 or pids.shape != (points.shape[0],):
        raise ValueError(f"need (N, 2) points and N pids; got {points.shape} and {pids.shape}")
    if images is not None and len(images) != len(points):
        raise ValueError(f"got {len(images)} images for {len(points)} points")
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 5.5))
    else:
        fig = ax.figure
    unique = list(dict.fromkeys(pids.tolist()))
    colors = dict(zip(unique, category_colors(len(unique)), strict=True))
    markers = dict(zip(unique, itertools.cycle(_MARKERS), strict=False))
    for pid in unique:
        sel = np.flatnonzero(pids == pid)
        ax.scatter(points[sel, 0], points[sel, 1], s=30, color=colors[pid], marker=markers[pid],
                   label=str(pid), alpha=0.9, zorder=3, edgecolors="white", linewidths=0.4)
        if images is not None:
            for i in sel[:thumbs_per_identity]:
                rgb = to_uint8_image(images[i])
                box = AnnotationBbox(OffsetImage(rgb, zoom=thumb_height / rgb.shape[0]), points[i],
                                     frameon=True, pad=0.1, zorder=2,
                                     bboxprops={"edgecolor": colors[pid], "linewidth": 1.5})
                ax.add_artist(box)
        cx, cy = points[sel].mean(axis=0)
        ax.annotate(str(pid), (cx, cy), fontsize=9, fontweight="bold", ha="center", va="center", zorder=4,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": colors[pid], "alpha": 0.9})
    ax.set_title(title)
    ax.set_xlabel("t-SNE dimension 1 (arbitrary units)")
    ax.set_ylabel("t-SNE dimension 2 (arbitrary units)")
    if len(unique) <= 20:
        ax.legend(title="identity", loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return fig
