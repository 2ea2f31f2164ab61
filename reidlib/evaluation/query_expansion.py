"""Query expansion and database-side augmentation: the re-ranking of seed 001 (Table 4, footnote 2).

"We expand both the query and the dataset by averaging the representation of the first 5 and 10 closest
neighbors, respectively." With L2-normalised descriptors and dot-product similarity:

1. database-side augmentation: every gallery descriptor ``g`` becomes the normalised sum of ``g`` and
   its ``k_db`` nearest gallery neighbours (``g`` itself excluded, so ``k_db + 1`` vectors are averaged);
2. query expansion: every query ``q`` becomes the normalised sum of ``q`` and its ``k_query`` nearest
   neighbours in the augmented gallery;
3. ranking then proceeds with the expanded vectors as usual.

The paper does not say whether the item itself counts among its neighbours; we add it, as average query
expansion does (Chum et al., 2007). Neighbours come from :func:`reidlib.evaluation.search.topk_search`,
which streams the gallery in chunks, so this also works for galleries with hundreds of thousands of
distractors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reidlib.evaluation.arrays import ArrayLike, as_float_matrix, check_finite
from reidlib.evaluation.search import topk_search

__all__ = ["average_neighbours", "query_expansion"]


def average_neighbours(x: torch.Tensor, database: torch.Tensor, k: int, exclude_self: bool = False,
                       chunk_size: int = 8192) -> torch.Tensor:
    """``normalize(x_i + sum of its k nearest rows of database)`` for every row ``x_i`` of ``x``.

    Args:
        x: ``(N, D)`` L2-normalised descriptors.
        database: ``(G, D)`` L2-normalised descriptors searched for neighbours.
        k: neighbours averaged (0 returns ``x`` unchanged).
        exclude_self: ``x`` is ``database`` itself: skip each row's own entry (its nearest neighbour).
        chunk_size: gallery rows per distance block of the search.

    Returns:
        ``(N, D)`` L2-normalised expanded descriptors.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if k == 0:
        return x
    extra = 1 if exclude_self else 0
    if k + extra > database.shape[0]:
        raise ValueError(f"k={k} neighbours requested but the database has {database.shape[0]} rows"
                         + (" (the item itself excluded)" if exclude_self else ""))
    _, idx = topk_search(x, database, k + extra, metric="euclidean", chunk_size=chunk_size)
    if exclude_self:
        own = torch.arange(x.shape[0], device=idx.device)[:, None]
        # Drop each row's own index; when ties put it elsewhere than first, drop the last column instead.
        keep = idx != own
        has_self = ~keep.all(dim=1)
        keep[~has_self, -1] = False
        idx = idx[keep].reshape(x.shape[0], k)
    return F.normalize(x + database[idx].sum(dim=1), dim=1)


def query_expansion(q_feats: ArrayLike, g_feats: ArrayLike, k_query: int = 5, k_db: int = 10,
                    chunk_size: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Seed 001's re-ranking: database-side augmentation with ``k_db`` neighbours, then query expansion
    with ``k_query`` neighbours in the augmented gallery (see the module docstring).

    Args:
        q_feats: ``(Q, D)`` query descriptors. g_feats: ``(G, D)`` gallery descriptors. Both are
            L2-normalised here first (the paper's descriptors already are).
        k_query, k_db: 5 and 10 in the paper.
        chunk_size: gallery rows per distance block.

    Returns:
        ``(q_expanded, g_expanded)``, L2-normalised ``(Q, D)`` and ``(G, D)`` float tensors, to be ranked
        like the originals (e.g. with :func:`reidlib.evaluation.features.evaluate_features`).

    Raises:
        NonFiniteError: (a ``ValueError``) a query or gallery row holds NaN or inf (the message names
            the rows); averaged into its neighbours it would spread NaN through the gallery.
    """
    q_raw = as_float_matrix(q_feats, "q_feats")
    g_raw = as_float_matrix(g_feats, "g_feats", q_raw.device)
    check_finite(q_raw, "q_feats", "query")
    check_finite(g_raw, "g_feats", "gallery", hint="such rows would be averaged into their neighbours")
    q, g = F.normalize(q_raw, dim=1), F.normalize(g_raw, dim=1)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"q_feats and g_feats: feature dimensions differ ({q.shape[1]} vs {g.shape[1]})")
    g_aug = average_neighbours(g, g, k_db, exclude_self=True, chunk_size=chunk_size)
    q_exp = average_neighbours(q, g_aug, k_query, chunk_size=chunk_size)
    return q_exp, g_aug
