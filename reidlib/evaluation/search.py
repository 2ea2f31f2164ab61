"""Nearest-neighbour search that never holds the whole query x gallery distance matrix, and the
row-wise selection helpers it shares with the rank metrics and the re-ranking.

Exact ``(value, index)`` order everywhere: the result is what a stable sort of each row would give.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from reidlib.evaluation.arrays import ArrayLike, as_float_matrix, check_finite, use_numpy
from reidlib.evaluation.distance import check_metric, pairwise_distance


def collect_at_most(
    block: torch.Tensor, cutoff: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row, column and value of every entry of ``block`` (R, B) with ``block[r, c] <= cutoff[r]``.

    Rows with a NaN cutoff collect nothing (NaN compares false); NaN entries are never collected.
    """
    if use_numpy(block) and block.shape[0] > 1 and block.stride(0) == 1 and block.stride(1) != 1:
        # A transposed view (columns of a row-major matrix): scan it in memory order instead.
        c, r, v = collect_at_most_columns(block.T, cutoff)
        rows, order = torch.sort(r, stable=True)  # back to row-major order
        return rows, c[order], v[order]
    if use_numpy(block):
        # numpy's comparison and flatnonzero are 4-5x faster than torch's on CPU (single-threaded, so
        # also robust on a shared machine); sub-blocks of ~2**20 entries keep the mask in cache.
        dn = block.numpy()
        cut = cutoff.numpy()[:, None]
        step = max(1, 2**20 // max(dn.shape[1], 1))
        mask = np.empty((min(step, dn.shape[0]), dn.shape[1]), dtype=bool)
        parts = []
        for s in range(0, dn.shape[0], step):
            m = mask[: min(step, dn.shape[0] - s)]
            np.less_equal(dn[s : s + step], cut[s : s + step], out=m)
            parts.append(np.flatnonzero(m) + s * dn.shape[1])
        flat = np.concatenate(parts) if len(parts) > 1 else parts[0]
        rows_np, cols_np = np.divmod(flat, dn.shape[1])
        vals = torch.from_numpy(dn[rows_np, cols_np])
        return torch.from_numpy(rows_np), torch.from_numpy(cols_np), vals
    idx = torch.nonzero(block <= cutoff[:, None])
    rows, cols = idx[:, 0], idx[:, 1]
    return rows, cols, block[rows, cols]


def collect_at_most_columns(
    block: torch.Tensor, cutoff: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Like :func:`collect_at_most` with the cutoff applying per column: entries of ``block`` (B, R)
    with ``block[b, r] <= cutoff[r]``, returned as ``(b, r, value)`` in row-major order of ``block``."""
    if not use_numpy(block):
        idx = torch.nonzero(block <= cutoff[None, :])
        return idx[:, 0], idx[:, 1], block[idx[:, 0], idx[:, 1]]
    dn = block.numpy()
    cut = cutoff.numpy()[None, :]
    step = max(1, 2**20 // max(dn.shape[1], 1))
    mask = np.empty((min(step, dn.shape[0]), dn.shape[1]), dtype=bool)
    parts = []
    for s in range(0, dn.shape[0], step):
        m = mask[: min(step, dn.shape[0] - s)]
        np.less_equal(dn[s : s + step], cut, out=m)
        parts.append(np.flatnonzero(m) + s * dn.shape[1])
    flat = np.concatenate(parts) if len(parts) > 1 else parts[0]
    b_np, r_np = np.divmod(flat, dn.shape[1])
    return torch.from_numpy(b_np), torch.from_numpy(r_np), torch.from_numpy(dn[b_np, r_np])


def _sort_int64(keys: torch.Tensor) -> torch.Tensor:
    if use_numpy(keys):
        return torch.from_numpy(np.sort(keys.numpy()))  # AVX2 sort, several times faster than torch's
    return torch.sort(keys).values


def lexsort_rows(
    rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, num_rows: int, num_cols: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, cols)`` ordered by ``(row, value, column)`` - a stable per-row sort of the values."""
    col_bits = max(1, math.ceil(math.log2(max(num_cols, 2))))
    row_bits = max(1, math.ceil(math.log2(max(num_rows, 2))))
    if vals.dtype == torch.float32 and row_bits + 32 + col_bits <= 63:
        # Pack (row, value, column) into one int64 whose integer order is the lexicographic order:
        # float32 bits map to an order-preserving signed int32 (negative floats have their magnitude
        # bits flipped); +0.0 is added first so -0.0 and 0.0 tie, as they do in a float comparison.
        bits = (vals + 0.0).contiguous().view(torch.int32)
        ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64) + 2**31
        keys = (rows << (32 + col_bits)) | (ordered << col_bits) | cols
        keys = _sort_int64(keys)
        return keys >> (32 + col_bits), keys & ((1 << col_bits) - 1)
    if use_numpy(rows):
        order = torch.from_numpy(np.lexsort((cols.numpy(), vals.numpy(), rows.numpy())))
    else:
        order = torch.argsort(cols, stable=True)
        order = order[torch.argsort(vals[order], stable=True)]
        order = order[torch.argsort(rows[order], stable=True)]
    return rows[order], cols[order]


def count_at_most(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``(R,)`` number of entries of each row of ``x`` (R, B) that are ``<= t[r]``."""
    if use_numpy(x) and x.dtype != torch.bfloat16:
        # numpy's count_nonzero is ~10x faster than torch's bool sum on CPU; row blocks of ~2**20
        # entries keep the comparison mask in cache.
        xn, tn = x.numpy(), t.numpy()[:, None]
        step = max(1, 2**20 // max(x.shape[1], 1))
        mask = np.empty((min(step, x.shape[0]), x.shape[1]), dtype=bool)
        out = np.empty(x.shape[0], dtype=np.int64)
        for s in range(0, x.shape[0], step):
            m = mask[: min(step, x.shape[0] - s)]
            np.less_equal(xn[s : s + step], tn[s : s + step], out=m)
            out[s : s + step] = np.count_nonzero(m, axis=1)
        return torch.from_numpy(out)
    return (x <= t[:, None]).sum(1)


def smallest_k(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` smallest entries of each row in ``(value, column)`` order - what the first ``k``
    columns of a stable ascending sort give, ties broken by column index, NaN last.

    Args:
        x: ``(R, B)`` values.
        k: ``1 <= k <= B``.

    Returns:
        ``(values, columns)``, both ``(R, k)``.
    """
    if not 1 <= k <= x.shape[1]:
        raise ValueError(f"k: expected 1 <= k <= {x.shape[1]} (row length), got {k}")
    if k == x.shape[1]:
        vals, cols = torch.sort(x, dim=1, stable=True)
        return vals, cols
    vals, cols = torch.topk(x, k, dim=1, largest=False, sorted=True)
    # topk may pick any of several entries tied with the k-th value; rows where more than k entries
    # are <= the k-th value (or the k-th value is NaN) are redone with a stable sort.
    redo = count_at_most(x, vals[:, -1]) != k
    if bool(redo.any()):
        rows = torch.nonzero(redo).squeeze(1)
        v, c = torch.sort(x[rows], dim=1, stable=True)
        vals[rows], cols[rows] = v[:, :k], c[:, :k]
    # Within the k, equal values must appear in column order.
    if bool((vals[:, 1:] == vals[:, :-1]).any()):
        cols, perm = torch.sort(cols, dim=1)
        vals, perm2 = torch.sort(vals.gather(1, perm), dim=1, stable=True)
        cols = cols.gather(1, perm2)
    return vals, cols


def topk_search(
    q: ArrayLike,
    g: ArrayLike | Iterable[ArrayLike],
    k: int,
    metric: str = "euclidean",
    chunk_size: int = 8192,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest gallery items of every query, streaming the gallery in chunks.

    Memory is ``O(Q x (k + chunk_size))`` distances: the ``(Q, G)`` matrix is never built, so this
    scales to seed 001's Market-1501 + 500k distractors experiment.

    Args:
        q: ``(Q, D)`` query embeddings (the work happens on their device).
        g: ``(G, D)`` gallery embeddings, or an iterable of ``(B_i, D)`` chunks (e.g. read from disk)
            in gallery order.
        k: neighbours per query (``k <= G``).
        metric: as in :func:`reidlib.evaluation.distance.pairwise_distance`.
        chunk_size: gallery rows per distance block when ``g`` is one array.
        progress: show a tqdm bar over the chunks.

    Returns:
        ``(distances, indices)``, both ``(Q, k)``: ascending distances and int64 gallery indices,
        ties broken by gallery index (the first ``k`` of a stable sort of the full row).

    Raises:
        NonFiniteError: (a ``ValueError``) a query row, or a row of a gallery chunk, holds NaN or inf;
            the message names the rows (gallery rows by their index in the whole gallery).
    """
    metric = check_metric(metric)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive integer, got {k!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected >= 1, got {chunk_size}")
    qt = as_float_matrix(q, "q")
    check_finite(qt, "q", "query")
    if isinstance(g, (torch.Tensor, np.ndarray)):
        gt = as_float_matrix(g, "g")
        check_finite(gt, "g", "gallery")
        chunks: Iterable[ArrayLike] = (gt[s : s + chunk_size] for s in range(0, gt.shape[0], chunk_size))
        total = -(-gt.shape[0] // chunk_size)
    else:
        chunks, total = g, None
    best_v = best_i = None
    offset = 0
    for n, chunk in enumerate(
        tqdm(chunks, total=total, desc="top-k search", unit="chunk", disable=not progress)
    ):
        gc = as_float_matrix(chunk, "g chunk", qt.device)
        # Checked here, not in pairwise_distance, so that the message numbers rows in the whole gallery.
        check_finite(gc, f"g chunk {n}", "gallery", offset=offset)
        d = pairwise_distance(qt, gc, metric)
        v, i = smallest_k(d, min(k, d.shape[1]))
        i = i + offset
        offset += d.shape[1]
        if best_v is None:
            best_v, best_i = v, i
            continue
        # Earlier chunks hold smaller gallery indices, so a stable sort of [best, new] by value keeps
        # (value, index) order.
        v = torch.cat([best_v, v], 1)
        i = torch.cat([best_i, i], 1)
        v, order = torch.sort(v, dim=1, stable=True)
        best_v, best_i = v[:, :k], i.gather(1, order)[:, :k]
    if best_v is None or offset < k:
        raise ValueError(f"k: the gallery has {offset} items, fewer than k={k}")
    return best_v, best_i
