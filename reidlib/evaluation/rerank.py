"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), on the k-nearest-neighbour structure instead of dense (N, N) arrays.

The algorithm, for the N = Q + G probe and gallery images together, in the paper's notation (it is
not one of the five seed papers, so its equation numbers are not cited here):

1. ``d(p, g)``: the original distance. As in the authors' released code, the input distances are
   squared and every row is divided by its maximum, so ``d`` lies in ``[0, 1]``.
2. ``N(p, k)``: the ``k`` nearest neighbours of ``p`` (``p`` itself included, so ``k + 1`` entries);
   ``R(p, k) = {g in N(p, k) : p in N(g, k)}``, the k-reciprocal nearest neighbours.
3. ``R*(p, k) = R(p, k) ∪ R(q, k/2)`` for every ``q in R(p, k)`` whose half-size set overlaps
   ``R(p, k)`` in more than 2/3 of its elements (``k/2`` rounded half-to-even as the released code's
   ``np.around``; the paper writes the condition with ``>=``, the released code with ``>``, which we
   follow since the published numbers come from it).
4. ``V_p``: a sparse vector over all N images with ``V_{p,g} = exp(-d(p, g))`` on ``R*(p, k1)`` (a
   Gaussian kernel of the distance), zero elsewhere, normalised to sum 1 as in the released code.
5. Local query expansion: ``V_p <- mean of V_g over g in N(p, k2)`` (skipped when k2 = 1).
6. Jaccard distance: ``d_J(p, g) = 1 - sum_j min(V_pj, V_gj) / sum_j max(V_pj, V_gj)``; with
   ``max = V_p + V_g - min`` only the entries where both are non-zero are ever touched - the
   "sparse V" trick, done here with an inverted index over V's columns.
7. Final distance: ``d* = (1 - lambda) d_J + lambda d``.

Memory is O(N k) for the neighbour lists, O(nnz(V)) for the sparse vectors, and one chunk of distance
rows at a time, instead of the several dense (N, N) arrays of the released numpy code (about 10 GB
at Market-1501 size).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import scipy.sparse
import torch
from tqdm.auto import tqdm

from reidlib.evaluation.arrays import (
    ArrayLike,
    as_float_matrix,
    check_finite,
    check_finite_distances,
    like_input,
    use_numpy,
)
from reidlib.evaluation.distance import check_metric
from reidlib.evaluation.memory import MemoryBoundError, format_bytes
from reidlib.evaluation.search import collect_at_most, lexsort_rows, smallest_k


def rerank(
    q_g: ArrayLike,
    q_q: ArrayLike,
    g_g: ArrayLike,
    k1: int = 20,
    k2: int = 6,
    lambda_: float = 0.3,
    squared: bool = False,
    chunk_elements: int = 2**24,
    progress: bool = False,
) -> ArrayLike:
    """k-reciprocal re-ranked query-gallery distances (see the module docstring for the algorithm).

    Args:
        q_g: ``(Q, G)`` query-gallery distances.
        q_q: ``(Q, Q)`` query-query distances (symmetric).
        g_g: ``(G, G)`` gallery-gallery distances (symmetric).
        k1, k2, lambda_: the paper's parameters (20, 6, 0.3 on Market-1501).
        squared: **what the inputs are.** ``False`` (default): plain distances such as Euclidean
            ``||x - y||``; they are squared here, as the released code does. ``True``: the inputs are
            already squared Euclidean distances and are used as they are. Passing squared distances
            with ``squared=False`` squares them twice (as some public pipelines do, whose distance
            helper already returns ``||x - y||^2``): the neighbour sets are unchanged but the weights
            ``exp(-d)`` and the ``lambda`` term change, and so do the numbers.
        chunk_elements: distance rows are processed in chunks of about this many entries.
        progress: show tqdm bars for the long passes.

    Returns:
        ``(Q, G)`` re-ranked distances, numpy if ``q_g`` is numpy, else a tensor on its device, in the
        inputs' floating dtype. Equal to the dense algorithm's up to rounding (<= 1e-6 in float64).

    Raises:
        NonFiniteError: (a ``ValueError``) an input distance is NaN or inf; the message names the
            matrix, its rows and columns. Every row is scaled by its maximum, so one bad entry would
            otherwise turn the whole result into NaN. (Mask items out after re-ranking instead.)
    """
    qg = as_float_matrix(q_g, "q_g")
    dev = qg.device
    qq = as_float_matrix(q_q, "q_q", dev)
    gg = as_float_matrix(g_g, "g_g", dev)
    num_q, num_g = qg.shape
    if num_q == 0 or num_g == 0:
        raise ValueError(f"q_g: expected at least one query and one gallery item, got {tuple(qg.shape)}")
    if qq.shape != (num_q, num_q):
        raise ValueError(f"q_q: expected shape ({num_q}, {num_q}) to match q_g, got {tuple(qq.shape)}")
    if gg.shape != (num_g, num_g):
        raise ValueError(f"g_g: expected shape ({num_g}, {num_g}) to match q_g, got {tuple(gg.shape)}")
    check_finite_distances(qg, "q_g", ("query", "gallery"))
    check_finite_distances(qq, "q_q", ("query", "query"))
    check_finite_distances(gg, "g_g", ("gallery", "gallery"))
    dtype = torch.promote_types(torch.promote_types(qg.dtype, qq.dtype), gg.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    qg, qq, gg = qg.to(dtype), qq.to(dtype), gg.to(dtype)

    source = _MatrixSource(qg, qq, gg, squared)
    final = _collect(_rerank_core(source, k1, k2, lambda_, chunk_elements, progress), num_q)
    return like_input(final, q_g)


def rerank_features(
    q_feats: ArrayLike,
    g_feats: ArrayLike,
    k1: int = 20,
    k2: int = 6,
    lambda_: float = 0.3,
    metric: str = "euclidean",
    chunk_elements: int = 2**24,
    progress: bool = False,
) -> torch.Tensor:
    """:func:`rerank` from embeddings, computing distance rows on the fly: neither the
    ``(G, G)`` nor the ``(N, N)`` matrix is ever built (memory O(N k + nnz(V)) plus the ``(Q, G)``
    result).

    ``metric="euclidean"`` equals ``rerank`` on Euclidean distance matrices (``squared=False``); the
    squared distances are computed directly. ``metric="cosine"`` squares the cosine distance, as
    ``rerank`` would.

    Args:
        q_feats: ``(Q, D)`` query embeddings; the work happens on their device.
        g_feats: ``(G, D)`` gallery embeddings.
        k1, k2, lambda_, chunk_elements, progress: as in :func:`rerank`.
        metric: ``"euclidean"`` or ``"cosine"``.

    Returns:
        ``(Q, G)`` re-ranked distances (tensor).

    Raises:
        NonFiniteError: (a ``ValueError``) a query or gallery row holds NaN or inf; the message names
            the rows. Every image's neighbour weights depend on the others, so one such row would
            otherwise turn the whole result into NaN.
    """
    blocks = rerank_feature_blocks(q_feats, g_feats, k1, k2, lambda_, metric, chunk_elements, progress)
    return _collect(blocks, as_float_matrix(q_feats, "q_feats").shape[0])


def rerank_feature_blocks(
    q_feats: ArrayLike,
    g_feats: ArrayLike,
    k1: int = 20,
    k2: int = 6,
    lambda_: float = 0.3,
    metric: str = "euclidean",
    chunk_elements: int = 2**24,
    progress: bool = False,
    max_memory: int | None = None,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """:func:`rerank_features` one chunk of queries at a time: yields ``(i0, i1, rows)`` with ``rows`` the
    ``(i1 - i0, G)`` re-ranked distances of queries ``i0 .. i1 - 1``, in query order, so that a caller can
    rank them and drop them (:func:`reidlib.evaluation.features.evaluate_features` does). Memory then
    grows with ``(Q + G) x k1`` (neighbour lists and sparse vectors), never with ``(Q + G)^2`` or
    ``Q x G``.

    The k-nearest-neighbour lists of pass 1 come from ``(Q + G)^2 D`` multiply-adds done block by block,
    each ``(b, b)`` block of the symmetric distance matrix computed once and used for the rows on both
    of its sides (half the products of a row-by-row search).

    Args:
        q_feats, g_feats, k1, k2, lambda_, metric, chunk_elements, progress: as in :func:`rerank_features`.
        max_memory: bytes the re-ranking may hold beyond its inputs (``None``: no bound). The parts it
            must hold are checked against it before they are allocated - the centred copy of the
            features, the neighbour lists, the sparse vectors once their size is known, one chunk of rows.

    Raises:
        MemoryBoundError: (a ``ValueError``) ``max_memory`` is below what a part needs; the message names
            the sizes.
        NonFiniteError: (a ``ValueError``) a query or gallery row holds NaN or inf.
    """
    metric = check_metric(metric)
    if metric == "sqeuclidean":
        raise ValueError(
            "metric: 'sqeuclidean' would be squared a second time; use 'euclidean' (squared internally)"
        )
    qf = as_float_matrix(q_feats, "q_feats")
    gf = as_float_matrix(g_feats, "g_feats", qf.device)
    if qf.shape[1] != gf.shape[1]:
        raise ValueError(f"q_feats and g_feats: feature dimensions differ ({qf.shape[1]} vs {gf.shape[1]})")
    if qf.shape[0] == 0 or gf.shape[0] == 0:
        raise ValueError(f"q_feats, g_feats: expected >= 1 row each, got {qf.shape[0]} and {gf.shape[0]}")
    check_finite(qf, "q_feats", "query", hint="the re-ranked distances would all be NaN")
    check_finite(gf, "g_feats", "gallery", hint="the re-ranked distances would all be NaN")
    dtype = torch.promote_types(qf.dtype, gf.dtype)
    budget = _Budget(max_memory, qf.shape[0], gf.shape[0], qf.shape[1], k1, torch.finfo(dtype).bits // 8)
    budget.check_start()
    feats = torch.cat([qf, gf]).to(dtype)
    source = _FeatureSource(feats, qf.shape[0], metric)
    yield from _rerank_core(source, k1, k2, lambda_, chunk_elements, progress, budget)


def _collect(blocks: Iterable[tuple[int, int, torch.Tensor]], num_q: int) -> torch.Tensor:
    """The ``(Q, G)`` matrix of the query chunks ``(i0, i1, rows)``, allocated like the first chunk."""
    final = None
    for i0, i1, rows in blocks:
        if final is None:
            final = rows.new_empty(num_q, rows.shape[1])
        final[i0:i1] = rows
    assert final is not None  # there is at least one query
    return final


class _Budget:
    """What the re-ranking of ``Q + G`` images must hold, checked against ``max_memory`` (bytes)."""

    def __init__(self, max_memory: int | None, num_q: int, num_g: int, dim: int, k1: int, item: int) -> None:
        self.max, self.num_q, self.num_g, self.dim = max_memory, num_q, num_g, dim
        self.k1, self.item = k1, item
        self.n = num_q + num_g
        self.sparse = 0

    def _sizes(self) -> str:
        return f"{self.num_q} queries + {self.num_g} gallery items of dimension {self.dim}, k1 = {self.k1}"

    def fixed(self) -> int:
        """The centred feature copy, the ``(N, k1 + 1)`` neighbour lists (and two reciprocal copies), a
        pair of ``(b, b)`` distance blocks and one chunk of query rows."""
        lists = 3 * self.n * (self.k1 + 1) * 8
        block = min(NEIGHBOUR_BLOCK, self.n)
        return self.n * (self.dim + 2) * self.item + lists + 4 * block**2 * self.item

    def check_start(self) -> None:
        if self.max is None:
            return
        need = self.fixed() + 3 * self.num_g * self.item
        if need > self.max:
            raise MemoryBoundError(
                f"max_memory={format_bytes(self.max)}: re-ranking {self._sizes()} needs at least "
                f"{format_bytes(need)} (the centred copy of the features "
                f"{format_bytes(self.n * self.dim * self.item)}, the neighbour lists and one row of output)")

    def query_rows(self, chunk_rows: int) -> int:
        """Query rows per chunk of the last pass within the bound (at most ``chunk_rows``)."""
        per_row = 3 * self.num_g * self.item  # original distances, output, Jaccard minima
        if self.max is None:
            return chunk_rows
        room = self.max - self.fixed() - self.sparse
        return max(1, min(chunk_rows, room // per_row))

    def check_sparse(self, nnz: int, k2: int) -> None:
        """Before building the sparse vectors from the ``nnz`` entries of the sets ``R*``: the vectors,
        their query expansion and its inverted index (each at most ``k2 x nnz`` entries), 16 bytes each."""
        self.sparse = (1 + 2 * k2) * nnz * (8 + 8)
        if self.max is None:
            return
        need = self.fixed() + self.sparse + 3 * self.num_g * self.item
        if need > self.max:
            raise MemoryBoundError(
                f"max_memory={format_bytes(self.max)}: re-ranking {self._sizes()} needs about "
                f"{format_bytes(need)} once the k-reciprocal sets are known ({nnz} sparse entries, "
                f"{nnz / self.n:.0f} per image, take {format_bytes(self.sparse)}); raise the bound or "
                "lower k1")


# --------------------------------------------------------------------------------------------------


def _check_params(k1: int, k2: int, lambda_: float, num_all: int) -> None:
    if not isinstance(k1, int) or k1 < 1:
        raise ValueError(f"k1: expected a positive integer, got {k1!r}")
    if not isinstance(k2, int) or not 1 <= k2 <= k1 + 1:
        raise ValueError(f"k2: expected an integer in [1, k1 + 1] = [1, {k1 + 1}], got {k2!r}")
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda_: expected a value in [0, 1], got {lambda_!r}")
    if num_all < k1 + 1:
        raise ValueError(f"k1: needs at least k1 + 1 = {k1 + 1} images in total, got Q + G = {num_all}")


class _MatrixSource:
    """Squared distances ``D`` of the (N, N) matrix ``[[q_q, q_g], [q_g^T, g_g]]`` without building it."""

    def __init__(self, qg: torch.Tensor, qq: torch.Tensor, gg: torch.Tensor, squared: bool) -> None:
        self.qg, self.qq, self.gg, self.squared = qg, qq, gg, squared
        self.num_q, self.n = qg.shape[0], qg.shape[0] + qg.shape[1]
        self.dtype, self.device = qg.dtype, qg.device

    def _sq(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.squared else x * x

    def neighbours(self, i0: int, i1: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row maxima of ``D`` and the ``k`` nearest columns of rows ``i0:i1`` (on one side of the
        query/gallery boundary), ranked on the input distances: squaring and the row scaling are
        monotone, so this is the released code's order up to exact ties (which its unstable sort
        leaves arbitrary; here they go by column index)."""
        q = self.num_q
        if i1 <= q:
            qpart, gpart = self.qq[i0:i1], self.qg[i0:i1]
        else:
            qpart, gpart = self.qg[:, i0 - q : i1 - q].T, self.gg[i0 - q : i1 - q]
        row_max = torch.maximum(qpart.amax(1), gpart.amax(1))
        # top-k of the (larger) gallery part, then only the query-part entries that can beat its
        # k-th value join a small exact merge - cheaper than a second top-k over every row.
        n = i1 - i0
        kg = min(k, gpart.shape[1])
        g_vals, g_cols = smallest_k(gpart, kg)
        if kg == k:
            cut = g_vals[:, -1]
        else:
            cut = torch.full((n,), torch.inf, dtype=self.dtype, device=self.device)
        q_rows, q_cols, q_vals = collect_at_most(qpart, cut)
        rows = torch.cat([q_rows.to(self.device), torch.arange(n, device=self.device).repeat_interleave(kg)])
        cols = torch.cat([q_cols.to(self.device), (g_cols + q).reshape(-1)])
        vals = torch.cat([q_vals.to(self.device), g_vals.reshape(-1)])
        rows, cols = lexsort_rows(rows, cols, vals, n, self.n)
        counts = torch.bincount(rows, minlength=n)
        first = torch.cumsum(counts, 0) - counts
        rank_in_row = torch.arange(rows.numel(), device=self.device) - first[rows]
        return self._sq(row_max), cols[rank_in_row < k].view(n, k)

    def all_neighbours(self, k: int, progress: bool, chunk_elements: int = 2**24) -> tuple[torch.Tensor,
                                                                                            torch.Tensor]:
        """Row maxima of ``D`` and the ``k`` nearest columns of every row (chunks of rows that never
        straddle the query/gallery boundary)."""
        step = max(1, chunk_elements // self.n)
        bounds = [(s, min(s + step, self.num_q)) for s in range(0, self.num_q, step)]
        bounds += [(s, min(s + step, self.n)) for s in range(self.num_q, self.n, step)]
        row_max = torch.empty(self.n, dtype=self.dtype, device=self.device)
        top = torch.empty(self.n, k, dtype=torch.int64, device=self.device)
        for i0, i1 in tqdm(bounds, desc="re-rank: neighbours", disable=not progress):
            row_max[i0:i1], top[i0:i1] = self.neighbours(i0, i1, k)
        return row_max, top

    def pairs(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """``D[i, j]`` for index vectors ``i``, ``j``."""
        q = self.num_q
        out = torch.empty(i.shape, dtype=self.dtype, device=self.device)
        iq, jq = i < q, j < q
        for m, block, a, b in (
            (iq & jq, self.qq, i, j),
            (iq & ~jq, self.qg, i, j - q),
            (~iq & jq, self.qg, j, i - q),
            (~iq & ~jq, self.gg, i - q, j - q),
        ):
            out[m] = block[a[m], b[m]]
        return self._sq(out)

    def query_gallery(self, i0: int, i1: int) -> torch.Tensor:
        """``D`` between queries ``i0:i1`` and the whole gallery (a new tensor: callers write into it)."""
        rows = self.qg[i0:i1]
        return rows.clone() if self.squared else rows * rows


class _FeatureSource:
    """Squared distances between embeddings, computed one block at a time.

    ``feats`` ``(N, D)`` is the caller's own copy: it is centred (Euclidean) or normalised (cosine) in
    place, once.
    """

    def __init__(self, feats: torch.Tensor, num_q: int, metric: str) -> None:
        if metric == "cosine":
            feats = torch.nn.functional.normalize(feats, dim=1, out=feats)
            self.sq_norms = None
        else:
            feats -= feats.mean(0)  # shrinks the norms and the cancellation error of |a|^2 + |b|^2 - 2 a.b
            self.sq_norms = (feats * feats).sum(1)
        self.feats, self.num_q, self.metric = feats, num_q, metric
        self.n = feats.shape[0]
        self.dtype, self.device = feats.dtype, feats.device

    def block(self, i0: int, i1: int, j0: int, j1: int) -> torch.Tensor:
        """``D`` between images ``i0:i1`` and ``j0:j1``."""
        out = torch.mm(self.feats[i0:i1], self.feats[j0:j1].T)
        if self.metric == "cosine":
            return out.neg_().add_(1.0).clamp_(0.0, 2.0).square_()
        assert self.sq_norms is not None
        out.mul_(-2.0).add_(self.sq_norms[None, j0:j1]).add_(self.sq_norms[i0:i1, None])
        return out.clamp_(min=0.0)

    def all_neighbours(self, k: int, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Row maxima of ``D`` and the ``k`` nearest columns of every row, in ``(value, column)`` order.

        The ``(b, b)`` blocks above the diagonal are computed once and serve the rows on both sides
        (``D`` is then exactly symmetric, as the dense algorithm's input is); a row receives its column
        blocks in increasing column order, so a stable merge keeps ties in column order.
        """
        n, b = self.n, NEIGHBOUR_BLOCK
        row_max = torch.full((n,), -torch.inf, dtype=self.dtype, device=self.device)
        best_v = torch.empty(n, 0, dtype=self.dtype, device=self.device)
        best = [[best_v[i : i + b], best_v[i : i + b].long()] for i in range(0, n, b)]
        starts = list(range(0, n, b))
        pairs = [(bi, bj) for bi in range(len(starts)) for bj in range(bi, len(starts))]
        for bi, bj in tqdm(pairs, desc="re-rank: neighbours", unit="block", disable=not progress):
            i0, j0 = starts[bi], starts[bj]
            i1, j1 = min(n, i0 + b), min(n, j0 + b)
            d = self.block(i0, i1, j0, j1)
            if bi == bj:
                d = (d + d.T).mul_(0.5)
                d.fill_diagonal_(0.0)  # the matrix-product formula leaves rounding noise there
            row_max[i0:i1] = torch.maximum(row_max[i0:i1], d.amax(1))
            _merge(best[bi], d, j0, k)
            if bi != bj:
                row_max[j0:j1] = torch.maximum(row_max[j0:j1], d.amax(0))
                _merge(best[bj], d.T.contiguous(), i0, k)
        return row_max, torch.cat([cols for _, cols in best])

    def pairs(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        out = torch.empty(i.shape, dtype=self.dtype, device=self.device)
        step = max(1, 2**22 // self.feats.shape[1])
        for s in range(0, i.numel(), step):
            a, b = self.feats[i[s : s + step]], self.feats[j[s : s + step]]
            if self.metric == "cosine":
                out[s : s + step] = (1.0 - (a * b).sum(1)).clamp(0.0, 2.0) ** 2
            else:
                out[s : s + step] = ((a - b) ** 2).sum(1)
        return out

    def query_gallery(self, i0: int, i1: int) -> torch.Tensor:
        return self.block(i0, i1, self.num_q, self.n)


# Rows and columns of the distance blocks of the neighbour pass: large enough for an efficient matrix
# product, small enough that a pair of blocks stays far below any memory bound (2 x 16 MB in float32).
NEIGHBOUR_BLOCK = 2048


def _merge(best: list[torch.Tensor], d: torch.Tensor, col0: int, k: int) -> None:
    """Merge the ``k`` smallest entries of each row of ``d`` (columns ``col0 ..``, all above the columns
    already in ``best``) into ``best = [values, columns]``, keeping ``(value, column)`` order."""
    v, c = smallest_k(d, min(k, d.shape[1]))
    v = torch.cat([best[0], v], 1)
    c = torch.cat([best[1], c + col0], 1)
    if v.shape[1] > k:
        v, order = torch.sort(v, dim=1, stable=True)  # earlier columns first among equal values
        v, c = v[:, :k], c.gather(1, order[:, :k])
    best[0], best[1] = v, c


def _rerank_core(
    source: _MatrixSource | _FeatureSource,
    k1: int,
    k2: int,
    lambda_: float,
    chunk_elements: int,
    progress: bool,
    budget: _Budget | None = None,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    num_q, n, dtype, dev = source.num_q, source.n, source.dtype, source.device
    _check_params(k1, k2, lambda_, n)

    # Pass 1: row maxima of D and the (k1 + 1) nearest neighbours of every image (N(p, k1), self first).
    if isinstance(source, _MatrixSource):
        row_max, top = source.all_neighbours(k1 + 1, progress, chunk_elements)
    else:
        row_max, top = source.all_neighbours(k1 + 1, progress)
    row_max.clamp_(min=torch.finfo(dtype).tiny)

    # Pass 2: k-reciprocal sets R(p, k1), R(p, k1/2), and the expansion R*(p, k1).
    half = int(np.around(k1 / 2))
    v_rows, v_cols = _expanded_sets(_reciprocal(top, k1), _reciprocal(top, half), max(1, chunk_elements // n))
    if budget is not None:
        budget.check_sparse(v_rows.numel(), k2)

    # Pass 3: Gaussian weights on R*, normalised per row; d = D / row max.
    w = torch.exp(-source.pairs(v_rows, v_cols) / row_max[v_rows])
    w_sum = torch.zeros(n, dtype=dtype, device=dev).index_add_(0, v_rows, w)
    V = _csr(v_rows, v_cols, w / w_sum[v_rows], n, n)
    del v_rows, v_cols, w

    # Pass 4: local query expansion over the k2 nearest neighbours.
    if k2 != 1:
        qe_rows = torch.arange(n, device=dev).repeat_interleave(k2)
        qe_cols = top[:, :k2].reshape(-1)
        qe_vals = torch.full((n * k2,), 1.0 / k2, dtype=dtype, device=dev)
        V = _csr_matmul(_csr(qe_rows, qe_cols, qe_vals, n, n), V)
    del top

    # Pass 5: Jaccard distance between queries and gallery, then the lambda mix.
    rows = max(1, chunk_elements // max(n - num_q, 1))
    if budget is not None:
        rows = budget.query_rows(rows)
    yield from _jaccard_mix(V, source, row_max, lambda_, rows, progress)


def _reciprocal(top: torch.Tensor, k: int) -> torch.Tensor:
    """``(N, k+1)`` neighbour indices of ``R(p, k)`` in ``N(p, k)`` order, -1 where not reciprocal."""
    forward = top[:, : k + 1]
    n = top.shape[0]
    out = torch.empty_like(forward)
    step = max(1, 2**22 // ((k + 1) ** 2))
    for s in range(0, n, step):
        f = forward[s : s + step]
        back = forward[f]  # (b, k+1, k+1): neighbours of each neighbour
        me = torch.arange(s, s + f.shape[0], device=top.device)[:, None, None]
        out[s : s + step] = torch.where((back == me).any(-1), f, torch.full_like(f, -1))
    return out


def _expanded_sets(
    recip: torch.Tensor, recip_half: torch.Tensor, step: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """COO ``(rows, cols)`` of ``R*(p, k1)`` for every ``p``, each row's columns sorted and unique."""
    n, width = recip.shape
    half_w = recip_half.shape[1]
    all_rows, all_cols = [], []
    step = max(1, min(step, 2**22 // (width * half_w)))
    for s in range(0, n, step):
        r = recip[s : s + step]  # (b, k1+1) candidates q in R(p, k1)
        b = r.shape[0]
        valid_r = r >= 0
        rh = recip_half[r.clamp(min=0)]  # (b, k1+1, half+1): R(q, k1/2) of each candidate
        valid_h = (rh >= 0) & valid_r[..., None]
        size = valid_h.sum(-1)
        # Membership of every R(q, k1/2) element in R(p, k1): binary search in the sorted R(p, k1).
        r_sorted, _ = torch.sort(torch.where(valid_r, r, torch.full_like(r, n)), dim=1)
        flat = rh.reshape(b, -1).contiguous()
        pos = torch.searchsorted(r_sorted, flat).clamp(max=width - 1)
        in_r = (r_sorted.gather(1, pos) == flat).view(rh.shape)
        overlap = (in_r & valid_h).sum(-1)
        accept = (3 * overlap > 2 * size) & valid_r  # |R(p,k) ∩ R(q,k/2)| > 2/3 |R(q,k/2)|
        added = torch.where(accept[..., None] & valid_h, rh, torch.full_like(rh, -1))
        cand = torch.cat([r, added.flatten(1)], 1)
        cand, _ = torch.sort(cand, dim=1)
        keep = cand >= 0
        keep[:, 1:] &= cand[:, 1:] != cand[:, :-1]
        b_rows, b_pos = torch.nonzero(keep, as_tuple=True)
        all_rows.append(b_rows + s)
        all_cols.append(cand[b_rows, b_pos])
    return torch.cat(all_rows), torch.cat(all_cols)


# Sparse helpers: scipy on CPU (several times faster than torch's sparse kernels there), torch.sparse
# (COO) on CUDA. A matrix is a tuple (indptr, indices, data, shape) of tensors on the working device.
Csr = tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]


def _csr(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n_rows: int, n_cols: int) -> Csr:
    """CSR of the COO entries (duplicates summed, columns sorted within rows)."""
    if use_numpy(rows):
        m = scipy.sparse.csr_matrix((vals.numpy(), (rows.numpy(), cols.numpy())), shape=(n_rows, n_cols))
        m.sum_duplicates()
        return _from_scipy(m, rows.device)
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n_rows, n_cols), check_invariants=False)
    return _from_torch_coo(coo.coalesce())


def _from_torch_coo(coo: torch.Tensor) -> Csr:
    rows, cols = coo.indices()
    n_rows = coo.shape[0]
    counts = torch.bincount(rows, minlength=n_rows)
    indptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    return indptr, cols, coo.values(), (n_rows, coo.shape[1])


def _from_scipy(m: scipy.sparse.csr_matrix, dev: torch.device) -> Csr:
    m.sort_indices()
    return (
        torch.from_numpy(m.indptr.astype(np.int64)).to(dev),
        torch.from_numpy(m.indices.astype(np.int64)).to(dev),
        torch.from_numpy(m.data).to(dev),
        m.shape,
    )


def _to_scipy(a: Csr) -> scipy.sparse.csr_matrix:
    return scipy.sparse.csr_matrix((a[2].numpy(), a[1].numpy(), a[0].numpy()), shape=a[3])


def _to_torch_coo(a: Csr) -> torch.Tensor:
    idx = torch.stack([_row_ids(a[0]), a[1]])
    return torch.sparse_coo_tensor(idx, a[2], a[3], check_invariants=False).coalesce()


def _csr_matmul(a: Csr, b: Csr) -> Csr:
    if use_numpy(a[0]):
        return _from_scipy((_to_scipy(a) @ _to_scipy(b)).tocsr(), a[0].device)
    with warnings.catch_warnings():
        # torch.sparse.mm goes through CSR internally and warns that CSR is "beta" on every call.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        product = torch.sparse.mm(_to_torch_coo(a), _to_torch_coo(b))
    return _from_torch_coo(product.coalesce())


def _row_ids(indptr: torch.Tensor) -> torch.Tensor:
    counts = indptr[1:] - indptr[:-1]
    return torch.arange(counts.numel(), device=indptr.device).repeat_interleave(counts)


def _jaccard_mix(
    V: Csr,
    source: _MatrixSource | _FeatureSource,
    row_max: torch.Tensor,
    lambda_: float,
    chunk_rows: int,
    progress: bool,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(i0, i1, rows)``: the final distances of queries ``i0:i1``, ``chunk_rows`` queries at a time."""
    indptr, indices, data, _ = V
    num_q, n = source.num_q, source.n
    dev, dtype = data.device, data.dtype
    num_g = n - num_q
    row_sum = torch.zeros(n, dtype=dtype, device=dev).index_add_(0, _row_ids(indptr), data)

    # Inverted index: for every column j of V, the gallery images with V[g, j] > 0.
    g_start = int(indptr[num_q])
    g_rows = _row_ids(indptr[num_q:] - g_start)
    inv = _csr(indices[g_start:], g_rows, data[g_start:], n, num_g)
    inv_ptr, inv_g, inv_val = inv[0], inv[1], inv[2]
    col_count = inv_ptr[1:] - inv_ptr[:-1]

    # Small query blocks keep the (block, G) temporaries in cache; all arithmetic is in place.
    block = max(1, min(chunk_rows, 2**20 // max(num_g, 1)))
    buf = torch.empty(block * num_g, dtype=dtype, device=dev)
    chunks = [(c0, min(c0 + chunk_rows, num_q)) for c0 in range(0, num_q, chunk_rows)]
    for c0, c1 in tqdm(chunks, desc="re-rank: Jaccard", disable=not progress):
        # The original distances of the whole chunk in one product (computed, not stored, for features).
        final = source.query_gallery(c0, c1).div_(row_max[c0:c1, None]).mul_(lambda_)
        for i0 in range(c0, c1, block):
            i1 = min(i0 + block, c1)
            e0, e1 = int(indptr[i0]), int(indptr[i1])
            e_col, e_val = indices[e0:e1], data[e0:e1]
            e_flat = _row_ids(indptr[i0 : i1 + 1] - e0) * num_g  # where each entry's query row starts
            per_entry = col_count[e_col]
            ends = torch.cumsum(per_entry, 0)
            # pair p of entry e reads the inverted list at inv_ptr[col] + (p - first pair of e)
            e_base = inv_ptr[e_col] - (ends - per_entry)
            mins = buf[: (i1 - i0) * num_g].zero_()
            # Pairs (query entry, gallery entry sharing its column), in slices of ~2**22 pairs.
            a = 0
            while a < e_col.numel():
                first = int(ends[a - 1]) if a > 0 else 0
                b = max(a + 1, int(torch.searchsorted(ends, torch.tensor(first + 2**22, device=dev),
                                                      right=True)))
                src = torch.arange(a, b, device=dev).repeat_interleave(per_entry[a:b])
                pos = torch.arange(first, first + src.numel(), device=dev) + e_base[src]
                mins.index_add_(0, e_flat[src] + inv_g[pos], torch.minimum(e_val[src], inv_val[pos]))
                a = b
            mins = mins.view(i1 - i0, num_g)
            out = final[i0 - c0 : i1 - c0]
            # out = (1 - lambda) * (1 - min / max) + lambda * d, with sum max = sum a + sum b - sum min;
            # the jaccard term is built in `tmp` and added to the lambda * d already in `out`.
            tmp = torch.add(row_sum[i0:i1, None], row_sum[None, num_q:])
            tmp.sub_(mins)
            torch.div(mins, tmp, out=tmp)
            tmp.mul_(lambda_ - 1.0).add_(1.0 - lambda_)
            out.add_(tmp)
        yield c0, c1, final
