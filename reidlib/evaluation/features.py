"""One call from embeddings to metrics: distances, optional re-ranking, CMC/mAP."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from tqdm.auto import tqdm

from reidlib.evaluation.arrays import ArrayLike, as_float_matrix, check_finite
from reidlib.evaluation.distance import check_metric, pairwise_distance
from reidlib.evaluation.rank import RankResult, evaluate, evaluate_blocks
from reidlib.evaluation.rerank import rerank_features


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
) -> RankResult:
    """CMC/mAP of query and gallery embeddings (Market-1501 protocol, see :mod:`.rank`).

    Args:
        q_feats: ``(Q, D)`` query embeddings (numpy or tensor; the work happens on their device).
        g_feats: ``(G, D)`` gallery embeddings.
        q_pids, g_pids, q_camids, g_camids: identity and camera labels.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.
        rerank: apply k-reciprocal re-ranking (:func:`.rerank.rerank_features`, with ``k1``, ``k2``,
            ``lambda_``) before ranking; needs ``metric`` ``"euclidean"`` or ``"cosine"``.
        max_rank, ap_mode, junk_pid: as in :func:`.rank.evaluate`.
        gallery_chunk: if set (and ``rerank`` is off), distances are computed for this many gallery
            items at a time and never held as a whole (:func:`.rank.evaluate_blocks`; the blocks are
            computed twice). Use it for very large galleries such as Market-1501 + 500k distractors:
            memory is ``Q x gallery_chunk`` plus the items ranked above each query's last match.
        progress: tqdm bars for the chunked/re-ranking passes.

    Returns:
        :class:`.rank.RankResult`.

    Raises:
        NonFiniteError: (a ``ValueError``) a query or gallery row holds NaN or inf, checked before any
            distance is computed; the message names the rows (``q_feats: 1 of 30 query rows holds NaN
            (row 3); ...``).
    """
    metric = check_metric(metric)
    qt = as_float_matrix(q_feats, "q_feats")
    gt = as_float_matrix(g_feats, "g_feats", qt.device)
    check_finite(qt, "q_feats", "query")
    check_finite(gt, "g_feats", "gallery")
    if rerank:
        dist = rerank_features(
            qt, gt, k1=k1, k2=k2, lambda_=lambda_, metric=metric, progress=progress
        )
        return evaluate(dist, q_pids, g_pids, q_camids, g_camids, max_rank, ap_mode, junk_pid)
    if gallery_chunk is None:
        dist = pairwise_distance(qt, gt, metric)
        return evaluate(dist, q_pids, g_pids, q_camids, g_camids, max_rank, ap_mode, junk_pid)
    if gallery_chunk < 1:
        raise ValueError(f"gallery_chunk: expected a positive number of gallery items, got {gallery_chunk}")
    if qt.shape[1] != gt.shape[1]:
        raise ValueError(f"q_feats and g_feats: feature dimensions differ ({qt.shape[1]} vs {gt.shape[1]})")
    starts = range(0, gt.shape[0], gallery_chunk)

    def blocks() -> Iterator[torch.Tensor]:
        for s in tqdm(starts, desc="gallery blocks", unit="block", disable=not progress):
            yield pairwise_distance(qt, gt[s : s + gallery_chunk], metric)

    return evaluate_blocks(
        blocks, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, ap_mode=ap_mode, junk_pid=junk_pid
    )
