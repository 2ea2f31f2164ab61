"""One call from embeddings to metrics: distances, optional re-ranking, CMC/mAP."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from tqdm.auto import tqdm

from reidlib.evaluation.arrays import (
    ArrayLike,
    as_float_matrix,
    as_id_vector,
    check_finite,
    cpu_threads,
)
from reidlib.evaluation.distance import PreparedGallery, check_metric, pairwise_distance
from reidlib.evaluation.memory import MemoryBoundError, format_bytes, parse_memory
from reidlib.evaluation.rank import QueryChunkRanker, RankResult, evaluate_blocks
from reidlib.evaluation.rerank import rerank_feature_blocks


def evaluate_features(
    q_feats: ArrayLike,
    g_feats: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    metric: str = "euclidean",
    rerank: bool = False,
    k1: int = 20,
    k2: int = 6,
    lambda_: float = 0.3,
    max_rank: int = 50,
    ap_mode: str = "full",
    junk_pid: int | None = -1,
    gallery_chunk: int | None = None,
    progress: bool = False,
    max_memory: int | str | None = None,
) -> RankResult:
    """CMC/mAP of query and gallery embeddings (Market-1501 protocol, see :mod:`.rank`).

    The ``(Q, G)`` distance matrix is never held whole: distances are computed for a chunk of queries,
    ranked (:class:`.rank.QueryChunkRanker`) and dropped, so MSMT17's 11,659 x 82,161 (3.8 GB in float32)
    needs only what the chunk size allows (``benchmarks/bench_msmt17.py`` records the time and memory).
    The numbers are those of :func:`.rank.evaluate` on the full matrix.

    Args:
        q_feats: ``(Q, D)`` query embeddings (numpy or tensor; the work happens on their device).
        g_feats: ``(G, D)`` gallery embeddings.
        q_pids, g_pids, q_camids, g_camids: identity and camera labels.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.
        rerank: apply k-reciprocal re-ranking (:func:`.rerank.rerank_feature_blocks`, with ``k1``, ``k2``,
            ``lambda_``), streamed into the ranking a chunk of queries at a time; needs ``metric``
            ``"euclidean"`` or ``"cosine"``.
        max_rank, ap_mode, junk_pid: as in :func:`.rank.evaluate`.
        gallery_chunk: if set (and ``rerank`` is off), distances are computed for this many gallery
            items at a time (:func:`.rank.evaluate_blocks`; the blocks are computed twice), for galleries
            so large that even one query row is too much, such as Market-1501 + 500k distractors.
        progress: tqdm bars over the query chunks and the re-ranking passes.
        max_memory: bound on the memory the evaluation holds beyond the inputs: bytes or a size such as
            ``"6GB"`` (``None``: query chunks of about 1 GB of distances). The query chunks are sized to
            fit it; what must be held whatever the chunk (the centred gallery copy, one query row; for
            re-ranking also the neighbour lists and sparse vectors) is checked before it is allocated.

    Returns:
        :class:`.rank.RankResult`.

    Raises:
        MemoryBoundError: (a ``ValueError``) ``max_memory`` is below what the evaluation must hold; the
            message names the sizes.
        NonFiniteError: (a ``ValueError``) a query or gallery row holds NaN or inf, checked before any
            distance is computed; the message names the rows (``q_feats: 1 of 30 query rows holds NaN
            (row 3); ...``).
    """
    metric = check_metric(metric)
    bound = None if max_memory is None else parse_memory(max_memory)
    qt = as_float_matrix(q_feats, "q_feats")
    gt = as_float_matrix(g_feats, "g_feats", qt.device)
    if qt.shape[1] != gt.shape[1]:
        raise ValueError(f"q_feats and g_feats: feature dimensions differ ({qt.shape[1]} vs {gt.shape[1]})")
    check_finite(qt, "q_feats", "query")
    check_finite(gt, "g_feats", "gallery")
    num_q, num_g = qt.shape[0], gt.shape[0]
    if num_q == 0 or num_g == 0:
        raise ValueError(f"q_feats, g_feats: expected >= 1 row each, got {num_q} and {num_g}")
    dev = qt.device
    labels = (as_id_vector(q_pids, "q_pids", num_q, dev), as_id_vector(g_pids, "g_pids", num_g, dev),
              as_id_vector(q_camids, "q_camids", num_q, dev), as_id_vector(g_camids, "g_camids", num_g, dev))
    if rerank:
        blocks = rerank_feature_blocks(qt, gt, k1=k1, k2=k2, lambda_=lambda_, metric=metric,
                                       progress=progress, max_memory=bound)
        return _rank_chunks(blocks, labels, max_rank, ap_mode, junk_pid, dev)
    if gallery_chunk is not None:
        return _evaluate_gallery_blocks(qt, gt, labels, metric, gallery_chunk, max_rank, ap_mode, junk_pid,
                                        progress)
    dtype = torch.promote_types(qt.dtype, gt.dtype)
    rows = query_chunk_rows(num_q, num_g, qt.shape[1], torch.finfo(dtype).bits // 8, bound)
    prepared = PreparedGallery(gt.to(dtype), metric, qt.to(dtype).mean(0))
    starts = range(0, num_q, rows)

    def chunks() -> Iterator[tuple[int, int, torch.Tensor]]:
        for s in tqdm(starts, desc="evaluate: query chunks", unit="chunk", disable=not progress):
            yield s, min(s + rows, num_q), prepared.rows(qt[s : s + rows])

    return _rank_chunks(chunks(), labels, max_rank, ap_mode, junk_pid, dev)


# Default size of one query chunk's distance rows when no memory bound is given.
DEFAULT_CHUNK_BYTES = 2**30


def query_chunk_rows(num_q: int, num_g: int, dim: int, item: int, max_memory: int | None) -> int:
    """Queries per chunk of :func:`evaluate_features` within ``max_memory`` bytes (``item``: bytes per
    value). Per query row: its distances and up to three row-sized temporaries of the ranking; once: the
    centred gallery copy and the labels.

    Raises:
        MemoryBoundError: not even one query row fits beside the gallery copy; the message names the sizes.
    """
    per_row = 4 * num_g * item + dim * item
    if max_memory is None:
        return max(1, min(num_q, DEFAULT_CHUNK_BYTES // per_row))
    fixed = num_g * (dim + 1) * item + 8 * 8 * (num_q + num_g)
    if fixed + per_row > max_memory:
        raise MemoryBoundError(
            f"max_memory={format_bytes(max_memory)}: evaluating {num_q} queries against {num_g} gallery "
            f"items of dimension {dim} needs at least {format_bytes(fixed + per_row)} (the centred gallery "
            f"{format_bytes(num_g * (dim + 1) * item)} and one query row {format_bytes(per_row)}); raise the "
            "bound or pass gallery_chunk")
    return max(1, min(num_q, (max_memory - fixed) // per_row))


def _rank_chunks(chunks: Iterable[tuple[int, int, torch.Tensor]], labels: tuple[torch.Tensor, ...],
                 max_rank: int, ap_mode: str, junk_pid: int | None, dev: torch.device) -> RankResult:
    ranker = QueryChunkRanker(*labels, max_rank=max_rank, ap_mode=ap_mode, junk_pid=junk_pid)
    for i0, _, block in chunks:  # distances of finite features: finite
        with cpu_threads(1, dev):  # the ranking's torch calls are small; the products between use all threads
            ranker.add(i0, block)
    with cpu_threads(1, dev):
        return ranker.result()


def _evaluate_gallery_blocks(qt: torch.Tensor, gt: torch.Tensor, labels: tuple[torch.Tensor, ...],
                             metric: str, gallery_chunk: int, max_rank: int, ap_mode: str,
                             junk_pid: int | None, progress: bool) -> RankResult:
    if gallery_chunk < 1:
        raise ValueError(f"gallery_chunk: expected a positive number of gallery items, got {gallery_chunk}")
    starts = range(0, gt.shape[0], gallery_chunk)

    def blocks() -> Iterator[torch.Tensor]:
        for s in tqdm(starts, desc="gallery blocks", unit="block", disable=not progress):
            yield pairwise_distance(qt, gt[s : s + gallery_chunk], metric)

    qp, gp, qc, gc = labels
    return evaluate_blocks(blocks, qp, gp, qc, gc, max_rank=max_rank, ap_mode=ap_mode, junk_pid=junk_pid)
