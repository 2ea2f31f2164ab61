"""CMC and mAP for re-ID retrieval (the Market-1501 protocol), vectorised and exact.

Protocol (the one the common re-ID toolboxes use):

* for each query, gallery items with the query's identity AND camera are removed (same-camera views
  are too easy);
* gallery items whose identity is ``junk_pid`` (-1 by default: Market-1501's "junk" detections) are
  removed for every query; identity 0 (Market-1501's distractors) stays and simply never matches;
* the remaining gallery is ranked by ascending distance, ties broken by gallery index (a stable sort);
* a query with no remaining gallery item of its identity is skipped and counted in ``num_skipped``;
* CMC at rank ``k`` is the fraction of valid queries whose first true match is within the top ``k``;
* AP follows ``ap_mode`` (see :func:`average_precision_from_ranks`).

How it is fast without sorting every row: a query's AP and CMC only depend on the ranks of its true
matches, and everything ranked before its farthest true match has a distance ``<= t_max`` (that
match's distance). So per query we collect only the gallery items with ``d <= t_max`` (one vectorised
comparison over the row), sort those few lexicographically by ``(query, distance, gallery index)`` with
one flat sort of packed 64-bit keys, and read every true match's rank off a cumulative count. With a
trained model that is about 1 % of the matrix. Rows where a column sample says more than
``DENSE_ROW_FRACTION`` of the gallery would be collected (an uninformative ranking) are instead
sorted whole (values only) and each true match's rank is found by binary search, ties resolved by
gallery index - so a random matrix costs one row sort, still several times less than a per-query
argsort loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from reidlib.evaluation.arrays import (
    ArrayLike,
    as_float_matrix,
    as_id_vector,
    as_tensor,
    check_finite_distances,
    cpu_threads,
    use_numpy,
)
from reidlib.evaluation.search import collect_at_most, count_at_most, lexsort_rows

AP_MODES = ("full", "trapezoid", "truncated50")
TRUNCATION_RANK = 50  # BDB/PMM's evaluation keeps the top-50 ranks only


@dataclass
class RankResult:
    """Retrieval metrics of one evaluation. Rates are fractions in ``[0, 1]``.

    Attributes:
        mAP: mean of ``ap`` over the valid queries.
        cmc: ``(max_rank,)`` CMC curve; ``cmc[k-1]`` is the rank-``k`` matching rate.
        rank1, rank5, rank10, rank20: CMC at those ranks (computed even when ``max_rank`` is smaller).
        num_valid: queries with at least one true match left after the junk removal.
        num_skipped: queries without one (not part of any average).
        ap: ``(num_valid,)`` average precision per valid query, in query order.
        query_index: ``(num_valid,)`` index of each valid query in the query list.
        ap_mode: which AP definition produced ``ap`` (``"full"``, ``"trapezoid"``, ``"truncated50"``).
    """

    mAP: float
    cmc: np.ndarray
    rank1: float
    rank5: float
    rank10: float
    rank20: float
    num_valid: int
    num_skipped: int
    ap: np.ndarray
    query_index: np.ndarray
    ap_mode: str = "full"

    def as_dict(self) -> dict[str, float | int | str | list[float]]:
        """Plain Python values (JSON-serialisable): rates as fractions, ``cmc`` as a list of floats."""
        return {
            "mAP": float(self.mAP),
            "rank1": float(self.rank1),
            "rank5": float(self.rank5),
            "rank10": float(self.rank10),
            "rank20": float(self.rank20),
            "num_valid": int(self.num_valid),
            "num_skipped": int(self.num_skipped),
            "ap_mode": self.ap_mode,
            "cmc": [float(x) for x in self.cmc],
        }

    def metrics(self, max_rank: int = 20) -> dict[str, float | int | list[float]]:
        """What a results file stores of a ranking: ``mAP``, ``rank1/5/10/20``, ``num_valid``,
        ``num_skipped`` and ``cmc`` up to ``max_rank`` (rates as fractions)."""
        d = self.as_dict()
        keys = ("mAP", "rank1", "rank5", "rank10", "rank20", "num_valid", "num_skipped")
        return {k: d[k] for k in keys} | {"cmc": d["cmc"][:max_rank]}

    def __str__(self) -> str:
        return (
            f"mAP {100 * self.mAP:.1f} | R1 {100 * self.rank1:.1f} R5 {100 * self.rank5:.1f} "
            f"R10 {100 * self.rank10:.1f} R20 {100 * self.rank20:.1f} "
            f"({self.num_valid} valid / {self.num_skipped} skipped)"
        )


def average_precision_from_ranks(
    ranks: torch.Tensor, hit: torch.Tensor, rows: torch.Tensor, num_rel: torch.Tensor, ap_mode: str
) -> torch.Tensor:
    """AP per query from the 0-based ranks of its true matches.

    Args:
        ranks: ``(H,)`` 0-based rank ``r`` of each true match in its query's filtered list.
        hit: ``(H,)`` 0-based index ``k`` of that match among its query's matches (``k``-th hit).
        rows: ``(H,)`` query (row) each match belongs to, in ``[0, R)``.
        num_rel: ``(R,)`` number of true matches ``n`` per row (all of them, also beyond rank 50).
        ap_mode: the definition, with precision ``p_k = (k+1)/(r_k+1)`` at the ``k``-th hit:

            * ``"full"``: ``AP = (1/n) sum_k p_k`` - non-interpolated AP over the full ranked list;
            * ``"trapezoid"``: ``AP = (1/n) sum_k (p_k^- + p_k)/2`` where ``p_k^- = k / r_k`` is the
              precision at the list position just before the hit, and ``1`` when the hit is at rank 1
              (``r_k = 0``). This is the original Market-1501 / seed 003 evaluation code's trapezoid
              rule. Note ``p_k^-`` is not the precision at the previous hit: for a first hit at rank
              ``r+1 > 1`` it is ``0``, so this AP is never above the full AP;
            * ``"truncated50"``: ``AP = (1/n) sum_{k: r_k < 50} p_k`` - only the top 50 ranks count
              but the divisor is still all ``n`` matches (BDB/PMM code), which understates mAP.

    Returns:
        ``(R,)`` float64 AP per row.
    """
    ranks = ranks.to(torch.float64)
    k = hit.to(torch.float64)
    prec = (k + 1.0) / (ranks + 1.0)
    if ap_mode == "full":
        terms = prec
    elif ap_mode == "trapezoid":
        before = torch.where(ranks > 0, k / ranks.clamp(min=1.0), torch.ones_like(ranks))
        terms = 0.5 * (before + prec)
    elif ap_mode == "truncated50":
        terms = torch.where(ranks < TRUNCATION_RANK, prec, torch.zeros_like(prec))
    else:
        raise ValueError(f"ap_mode: expected one of {AP_MODES}, got {ap_mode!r}")
    total = torch.zeros(num_rel.numel(), dtype=torch.float64, device=ranks.device)
    total.index_add_(0, rows, terms)
    return total / num_rel.to(torch.float64)


def _half_to_float(d: torch.Tensor) -> torch.Tensor:
    return d.float() if d.dtype in (torch.float16, torch.bfloat16) else d


@dataclass
class _Hits:
    """Ranks of the true matches of a group of queries (rows)."""

    rows: torch.Tensor  # (H,) row of each true match
    hit: torch.Tensor  # (H,) k: its index among the row's matches
    ranks: torch.Tensor  # (H,) r: its 0-based rank in the row's filtered list
    num_rel: torch.Tensor  # (R,) true matches per row


def _hits_from_candidates(
    rows: torch.Tensor,
    cols: torch.Tensor,
    num_rows: int,
    q_pids: torch.Tensor,
    q_cams: torch.Tensor,
    g_pids: torch.Tensor,
    g_cams: torch.Tensor,
    junk_pid: int | None,
    expected: torch.Tensor,
) -> _Hits:
    """Ranks of the true matches, from candidates already sorted by ``(row, distance, column)``."""
    pid_c = g_pids[cols]
    same = pid_c == q_pids[rows]
    junk = same & (g_cams[cols] == q_cams[rows])
    if junk_pid is not None:
        junk |= pid_c == junk_pid
    good = same & ~junk
    kept = (~junk).to(torch.int64)
    kept_cum = torch.cumsum(kept, 0)
    kept_per_row = torch.zeros(num_rows, dtype=torch.int64, device=rows.device).index_add_(0, rows, kept)
    kept_before = torch.cumsum(kept_per_row, 0) - kept_per_row
    rank = kept_cum - 1 - kept_before[rows]

    where = torch.nonzero(good).squeeze(1)
    g_rows = rows[where]
    good_i = good.to(torch.int64)
    good_per_row = torch.zeros(num_rows, dtype=torch.int64, device=rows.device).index_add_(0, rows, good_i)
    if not torch.equal(good_per_row, expected):
        bad = int(torch.nonzero(good_per_row != expected)[0, 0])
        raise ValueError(
            f"distance cutoff of query row {bad} lies below one of its true matches "
            f"({int(good_per_row[bad])} of {int(expected[bad])} collected): the cutoff must be >= the "
            "distance of its farthest true match (and not NaN)"
        )
    good_before = torch.cumsum(good_per_row, 0) - good_per_row
    hit = torch.cumsum(good_i, 0)[where] - 1 - good_before[g_rows]
    return _Hits(rows=g_rows, hit=hit, ranks=rank[where], num_rel=expected)


# --------------------------------------------------------------------------------------------------
# True matches of each query, found through identity groups (no pass over the whole matrix)


class _GalleryIndex:
    """Gallery items grouped by identity, to list each query's same-identity items quickly."""

    def __init__(self, g_pids: torch.Tensor, g_cams: torch.Tensor, junk_pid: int | None) -> None:
        self.g_pids, self.g_cams, self.junk_pid = g_pids, g_cams, junk_pid
        self.order = torch.argsort(g_pids, stable=True)
        self.uniq, self.counts = torch.unique_consecutive(g_pids[self.order], return_counts=True)
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def good_columns(
        self, q_pids: torch.Tensor, q_cams: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(cols, good, junk)``, all ``(R, W)``: same-identity gallery columns per query (ascending),
        which of them are true matches (other camera) and which are junk (same camera). Padding
        entries are neither."""
        pos = torch.searchsorted(self.uniq, q_pids).clamp(max=self.uniq.numel() - 1)
        found = self.uniq[pos] == q_pids
        if self.junk_pid is not None:
            found &= q_pids != self.junk_pid
        count = torch.where(found, self.counts[pos], torch.zeros_like(pos))
        width = max(int(count.max()) if count.numel() else 0, 1)
        j = torch.arange(width, device=q_pids.device)
        valid = j[None, :] < count[:, None]
        flat = (self.starts[pos][:, None] + j[None, :]).clamp(max=self.order.numel() - 1)
        cols = self.order[flat]
        same_cam = self.g_cams[cols] == q_cams[:, None]
        return cols, valid & ~same_cam, valid & same_cam


def _summarise(
    first_rank: torch.Tensor,
    ap: torch.Tensor,
    valid_index: torch.Tensor,
    num_queries: int,
    max_rank: int,
    ap_mode: str,
) -> RankResult:
    num_valid = int(valid_index.numel())
    if num_valid == 0:
        raise ValueError(
            "no query has a true match in the gallery (after removing same-camera and junk items); "
            "check that query and gallery identities overlap"
        )
    first = first_rank.cpu()
    hist = torch.bincount(first.clamp(max=max_rank), minlength=max_rank + 1)[:max_rank]
    cmc = (torch.cumsum(hist, 0).to(torch.float64) / num_valid).numpy()

    def rate(k: int) -> float:
        return float((first < k).sum()) / num_valid

    ap_np = ap.cpu().numpy()
    return RankResult(
        mAP=float(ap_np.mean()),
        cmc=cmc,
        rank1=rate(1),
        rank5=rate(5),
        rank10=rate(10),
        rank20=rate(20),
        num_valid=num_valid,
        num_skipped=num_queries - num_valid,
        ap=ap_np,
        query_index=valid_index.cpu().numpy(),
        ap_mode=ap_mode,
    )


def _check_options(max_rank: int, ap_mode: str) -> None:
    if ap_mode not in AP_MODES:
        raise ValueError(f"ap_mode: expected one of {AP_MODES}, got {ap_mode!r}")
    if not isinstance(max_rank, int) or max_rank < 1:
        raise ValueError(f"max_rank: expected a positive integer, got {max_rank!r}")


def _first_and_ap(hits: _Hits, ap_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    ap = average_precision_from_ranks(hits.ranks, hits.hit, hits.rows, hits.num_rel, ap_mode)
    first = torch.full_like(hits.num_rel, -1)
    is_first = hits.hit == 0
    first[hits.rows[is_first]] = hits.ranks[is_first]
    return first, ap


def evaluate(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    ap_mode: str = "full",
    junk_pid: int | None = -1,
    chunk_elements: int | None = None,
) -> RankResult:
    """CMC and mAP of a query-gallery distance matrix under the Market-1501 protocol.

    Args:
        distmat: ``(Q, G)`` distances, smaller = more similar (numpy array or tensor, CPU or CUDA; the
            work happens on its device). Integer matrices are treated as float64. ``+inf`` entries
            rank last (ties by gallery index), so they can mask gallery items out for a query; NaN
            and ``-inf`` raise :class:`~reidlib.evaluation.arrays.NonFiniteError` (a ``ValueError``)
            naming the query rows and gallery columns, before anything is averaged.
        q_pids, g_pids: ``(Q,)``/``(G,)`` identity labels. Gallery items with ``junk_pid`` are
            removed for every query (``None`` keeps them); pid 0 distractors stay.
        q_camids, g_camids: ``(Q,)``/``(G,)`` camera labels.
        max_rank: length of the returned CMC curve (not clipped to the gallery size).
        ap_mode: ``"full"`` (default), ``"trapezoid"`` or ``"truncated50"``; see
            :func:`average_precision_from_ranks`.
        chunk_elements: queries are processed in chunks of about this many matrix entries (default
            ``2**24`` on CPU, ``2**26`` on CUDA); memory is ``O(chunk)`` plus the collected candidates.

    Returns:
        :class:`RankResult`. Identical (to rounding, <= 1e-12) to a per-query loop that stable-sorts
        every row, removes the junk, and averages.
    """
    _check_options(max_rank, ap_mode)
    d = as_float_matrix(distmat, "distmat")
    num_q, num_g = d.shape
    if num_q == 0 or num_g == 0:
        raise ValueError(f"distmat: expected a non-empty matrix, got shape {tuple(d.shape)}")
    check_finite_distances(d, "distmat", allow_posinf=True)
    dev = d.device
    qp = as_id_vector(q_pids, "q_pids", num_q, dev)
    gp = as_id_vector(g_pids, "g_pids", num_g, dev)
    qc = as_id_vector(q_camids, "q_camids", num_q, dev)
    gc = as_id_vector(g_camids, "g_camids", num_g, dev)
    if chunk_elements is None:
        chunk_elements = 2**24 if dev.type == "cpu" else 2**26
    rows_per_chunk = max(1, chunk_elements // num_g)

    with cpu_threads(1, dev):
        return _evaluate_chunks(d, qp, gp, qc, gc, rows_per_chunk, max_rank, ap_mode, junk_pid)


# Rows whose cutoff admits more than this fraction of the gallery (an uninformative ranking) are
# sorted whole instead of going through the candidate path, whose per-candidate cost is higher.
DENSE_ROW_FRACTION = 1 / 16


def _evaluate_chunks(
    d: torch.Tensor,
    qp: torch.Tensor,
    gp: torch.Tensor,
    qc: torch.Tensor,
    gc: torch.Tensor,
    rows_per_chunk: int,
    max_rank: int,
    ap_mode: str,
    junk_pid: int | None,
) -> RankResult:
    ranker = QueryChunkRanker(qp, gp, qc, gc, max_rank, ap_mode, junk_pid)
    for s in range(0, d.shape[0], rows_per_chunk):
        ranker.add(s, d[s : s + rows_per_chunk])
    return ranker.result()


class QueryChunkRanker:
    """CMC and mAP from distance rows that arrive a chunk of queries at a time (Market-1501 protocol).

    A query's AP and first-match rank only depend on its own row, so the ``(Q, G)`` matrix never needs to
    exist: each chunk is ranked when it is added and only ``(Q,)`` results are kept. The numbers equal
    :func:`evaluate` on the whole matrix exactly (it ranks its matrix through this class).

    Args:
        q_pids, g_pids, q_camids, g_camids: ``(Q,)``/``(G,)`` labels, as in :func:`evaluate`; their
            device is where the ranking works.
        max_rank, ap_mode, junk_pid: as in :func:`evaluate`.

    Call :meth:`add` with consecutive chunks covering queries ``0..Q-1`` in order, then :meth:`result`.
    """

    def __init__(self, q_pids: torch.Tensor, g_pids: torch.Tensor, q_camids: torch.Tensor,
                 g_camids: torch.Tensor, max_rank: int = 50, ap_mode: str = "full",
                 junk_pid: int | None = -1) -> None:
        _check_options(max_rank, ap_mode)
        self.qp, self.gp, self.qc, self.gc = q_pids, g_pids, q_camids, g_camids
        self.max_rank, self.ap_mode, self.junk_pid = max_rank, ap_mode, junk_pid
        self.num_q, self.num_g = q_pids.numel(), g_pids.numel()
        self.index = _GalleryIndex(g_pids, g_camids, junk_pid)
        self.sample = slice(None, None, max(1, self.num_g // 256))
        self.done = 0
        self.firsts: list[torch.Tensor] = []
        self.aps: list[torch.Tensor] = []
        self.valid: list[torch.Tensor] = []

    def add(self, start: int, block: torch.Tensor) -> None:
        """Rank queries ``start .. start + R - 1`` from their ``(R, G)`` finite-or-+inf distance rows."""
        if start != self.done:
            raise ValueError(f"query chunks must arrive in order: expected the chunk starting at query "
                             f"{self.done}, got {start}")
        s, e = start, start + block.shape[0]
        if e > self.num_q or block.shape[1] != self.num_g:
            raise ValueError(f"distance chunk of shape {tuple(block.shape)} at query {start} does not fit "
                             f"{self.num_q} queries x {self.num_g} gallery items")
        dev = block.device
        block = _half_to_float(block)
        qp, qc, gp, gc, junk_pid = self.qp[s:e], self.qc[s:e], self.gp, self.gc, self.junk_pid
        cols, good, junk = self.index.good_columns(qp, qc)
        good_d = torch.gather(block, 1, cols)
        num_rel = good.sum(1)
        neg_inf = torch.tensor(-math.inf, dtype=block.dtype, device=dev)
        cutoff = torch.where(good, good_d, neg_inf).amax(1)
        cutoff = torch.where(num_rel > 0, cutoff, torch.full_like(cutoff, math.nan))

        # Route each row by the fraction of a column sample it would collect.
        sampled = block[:, self.sample]
        dense = count_at_most(sampled, cutoff).to(dev) > DENSE_ROW_FRACTION * sampled.shape[1]
        # Candidate path on the whole block (dense rows get a NaN cutoff: they collect nothing), so
        # no rows are copied; the few dense rows are copied and sorted.
        nan = torch.full_like(cutoff, math.nan)
        rows, c, v = collect_at_most(block, torch.where(dense, nan, cutoff))
        rows, c = lexsort_rows(rows, c, v, e - s, self.num_g)
        expected = torch.where(dense, torch.zeros_like(num_rel), num_rel)
        hits = _hits_from_candidates(rows, c, e - s, qp, qc, gp, gc, junk_pid, expected)
        first, ap = _first_and_ap(hits, self.ap_mode)
        if bool(dense.any()):
            idx = torch.nonzero(dense).squeeze(1)
            if idx.numel() == e - s:
                sub = block
            elif use_numpy(block):
                sub = torch.from_numpy(block.numpy()[idx.numpy()])  # numpy's row gather is faster
            else:
                sub = block[idx]
            hits = _hits_sorting_rows(sub, cols[idx], good[idx], junk[idx], good_d[idx], gp, junk_pid)
            first[idx], ap[idx] = _first_and_ap(hits, self.ap_mode)
        ok = torch.nonzero(num_rel > 0).squeeze(1)
        self.firsts.append(first[ok])
        self.aps.append(ap[ok])
        self.valid.append(ok + s)
        self.done = e

    def result(self) -> RankResult:
        """The :class:`RankResult` of all queries (every one must have been added)."""
        if self.done != self.num_q:
            raise ValueError(f"only {self.done} of {self.num_q} queries were ranked")
        return _summarise(torch.cat(self.firsts), torch.cat(self.aps), torch.cat(self.valid), self.num_q,
                          self.max_rank, self.ap_mode)


def _hits_sorting_rows(
    block: torch.Tensor,
    cols: torch.Tensor,
    good: torch.Tensor,
    junk: torch.Tensor,
    vals: torch.Tensor,
    gp: torch.Tensor,
    junk_pid: int | None,
) -> _Hits:
    """Ranks of the true matches by sorting whole rows (values only) and binary-searching each true
    match's distance - for rows where most of the gallery ranks above the last true match.

    ``cols``/``good``/``junk``/``vals``: ``(R, W)`` same-identity columns, their true-match and
    same-camera-junk masks and their distances (from :meth:`_GalleryIndex.good_columns`).
    """
    dev = block.device
    rows_d = block
    if junk_pid is not None:
        keep = gp != junk_pid
        if not bool(keep.all()):
            rows_d = block[:, keep]  # global junk never ranks; column order (tie order) is kept
            new_col = torch.cumsum(keep.to(torch.int64), 0) - 1
            cols = torch.where(good | junk, new_col[cols], cols)
    if use_numpy(rows_d):
        sorted_t = torch.from_numpy(np.sort(rows_d.numpy(), axis=1))
    else:
        sorted_t = torch.sort(rows_d, dim=1).values
    # No NaN reaches this point (evaluate rejects it), so the binary search below is well defined;
    # +inf entries sort last and ties at +inf are resolved by column like any other tie.

    # True matches of each row in (distance, column) order, padding last: the columns ascend, so a
    # stable sort by distance and then a stable sort by "is padding" give that order.
    order = torch.argsort(vals, dim=1, stable=True)
    order = order.gather(1, torch.argsort((~good).gather(1, order).to(torch.int8), dim=1, stable=True))
    tg = good.gather(1, order)
    t = torch.where(tg, vals.gather(1, order), torch.zeros_like(vals))  # padding: any finite value
    tc = cols.gather(1, order)
    before = torch.searchsorted(sorted_t, t)  # entries with a strictly smaller distance
    equal = torch.searchsorted(sorted_t, t, right=True) - before
    # Ties with other entries (beyond the match itself): count the tied entries left of the match.
    tie_r, tie_k = torch.nonzero((equal > 1) & tg, as_tuple=True)
    step = max(1, 2**24 // max(rows_d.shape[1], 1))
    col_ids = torch.arange(rows_d.shape[1], device=dev)
    for a in range(0, tie_r.numel(), step):
        rr, kk = tie_r[a : a + step], tie_k[a : a + step]
        left = (rows_d[rr] == t[rr, kk, None]) & (col_ids[None, :] < tc[rr, kk, None])
        before[rr, kk] += left.sum(1)
    # Same-camera junk ranked before a match does not count.
    jv, jc = vals[:, None, :], cols[:, None, :]
    ahead = (jv < t[..., None]) | ((jv == t[..., None]) & (jc < tc[..., None]))
    rank = before - (ahead & junk[:, None, :]).sum(-1)
    g_rows, g_k = torch.nonzero(tg, as_tuple=True)
    return _Hits(rows=g_rows, hit=g_k, ranks=rank[g_rows, g_k], num_rel=tg.sum(1))


def _round_up(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` in ``dtype``, rounded towards +inf so that a cutoff never drops below its float64 value."""
    y = x.to(dtype)
    return torch.where(y.to(x.dtype) < x, torch.nextafter(y, torch.full_like(y, math.inf)), y)


def evaluate_blocks(
    blocks: Iterable[ArrayLike] | Callable[[], Iterable[ArrayLike]],
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    cutoff: ArrayLike | None = None,
    max_rank: int = 50,
    ap_mode: str = "full",
    junk_pid: int | None = -1,
    device: torch.device | str | None = None,
) -> RankResult:
    """:func:`evaluate` for a gallery that arrives in column blocks, never holding the whole matrix.

    Exact mAP needs every true match's rank in the full ranked list, but a match's rank only depends
    on the items closer than it. So, given for each query a bound ``cutoff[q]`` on the distance of its
    farthest true match, each block only contributes its entries ``<= cutoff[q]``.

    Args:
        blocks: ``(Q, B_i)`` distance blocks covering the gallery columns in order (``sum B_i = G``):
            an iterable, or a zero-argument callable returning a fresh iterable. With
            ``cutoff=None`` it must be the callable: it is iterated twice, first to find each query's
            farthest true match exactly, then to collect; the two passes must produce identical
            blocks (recomputing them with the same code does).
        q_pids, g_pids, q_camids, g_camids, max_rank, ap_mode, junk_pid: as in :func:`evaluate`.
        cutoff: optional ``(Q,)`` bounds ``>=`` the distance to each query's farthest true match
            (other camera, not junk); a larger value only costs memory. If a bound is too small a
            ``ValueError`` names the query.
        device: where the ranking work happens (default: the blocks' device, or the cutoff's when
            one is given).

    Distances follow :func:`evaluate`'s rules: ``+inf`` ranks last, NaN and ``-inf`` raise
    :class:`~reidlib.evaluation.arrays.NonFiniteError` naming the query rows and (whole-gallery)
    columns of the first block that holds them, before anything is averaged.

    Memory: one block plus the collected candidates, ``sum_q #{g : d(q, g) <= cutoff[q]}`` entries of
    3 x 8 bytes, i.e. ``Q x`` (mean rank of the last true match): 0.7 M entries (17 MB) for the
    Market-1501-like benchmark. Added distractors cost memory only where they outrank a query's last
    true match, so for Market + 500k distractors expect up to ~25x that; an uninformative ranking
    (random distances) collects nearly everything (use :func:`evaluate` there).
    """
    _check_options(max_rank, ap_mode)
    if cutoff is None and not callable(blocks):
        raise ValueError(
            "blocks: without a cutoff, pass a callable returning the blocks (they are read twice)"
        )
    num_q = as_tensor(q_pids, "q_pids").numel()
    qp = as_id_vector(q_pids, "q_pids", num_q)
    qc = as_id_vector(q_camids, "q_camids", num_q)
    num_g = as_tensor(g_pids, "g_pids").numel()
    gp = as_id_vector(g_pids, "g_pids", num_g)
    gc = as_id_vector(g_camids, "g_camids", num_g)
    if num_g == 0:
        raise ValueError("g_pids: the gallery is empty")

    def iterate() -> Iterator[tuple[int, torch.Tensor]]:
        offset = 0
        for i, b in enumerate(blocks() if callable(blocks) else blocks):
            block = _half_to_float(as_float_matrix(b, f"blocks[{i}]", device))
            if block.shape[0] != num_q:
                raise ValueError(f"blocks[{i}]: expected {num_q} rows (one per query), got {block.shape[0]}")
            if offset + block.shape[1] > num_g:
                raise ValueError(f"blocks: more columns than the {num_g} gallery labels")
            check_finite_distances(block, f"blocks[{i}]", allow_posinf=True, col_offset=offset)
            yield offset, block
            offset += block.shape[1]
        if offset != num_g:
            raise ValueError(f"blocks: covered {offset} gallery columns, expected {num_g}")

    if cutoff is None:
        cut = None
        for offset, block in iterate():
            dev = block.device
            cols = slice(offset, offset + block.shape[1])
            good = (gp[cols].to(dev)[None, :] == qp.to(dev)[:, None]) & (
                gc[cols].to(dev)[None, :] != qc.to(dev)[:, None]
            )
            if junk_pid is not None:
                good &= gp[cols].to(dev)[None, :] != junk_pid
            m = torch.where(good, block, torch.tensor(-math.inf, dtype=block.dtype, device=dev)).amax(1)
            cut = m if cut is None else torch.maximum(cut, m)
        assert cut is not None
    else:
        cut = as_tensor(cutoff, "cutoff", device)
        if cut.shape != (num_q,):
            raise ValueError(
                f"cutoff: expected shape ({num_q},), one bound per query, got {tuple(cut.shape)}"
            )

    rows_l, cols_l, vals_l = [], [], []
    dev = cut.device
    with cpu_threads(1, dev):
        qp, qc, gp, gc = qp.to(dev), qc.to(dev), gp.to(dev), gc.to(dev)
        _, good, _ = _GalleryIndex(gp, gc, junk_pid).good_columns(qp, qc)
        num_rel = good.sum(1)
        cut64 = torch.where(
            num_rel > 0, cut.to(torch.float64), torch.full_like(cut, math.nan, dtype=torch.float64)
        )
        for offset, block in iterate():
            rows, cols, vals = collect_at_most(block.to(dev), _round_up(cut64, block.dtype))
            rows_l.append(rows)
            cols_l.append(cols + offset)
            vals_l.append(vals)
        if len({v.dtype for v in vals_l}) > 1:
            raise ValueError("blocks: all blocks must have the same dtype")
        rows, cols = lexsort_rows(torch.cat(rows_l), torch.cat(cols_l), torch.cat(vals_l), num_q, num_g)
        hits = _hits_from_candidates(rows, cols, num_q, qp, qc, gp, gc, junk_pid, num_rel)
        first, ap = _first_and_ap(hits, ap_mode)
        ok = torch.nonzero(num_rel > 0).squeeze(1)
        return _summarise(first[ok], ap[ok], ok, num_q, max_rank, ap_mode)
