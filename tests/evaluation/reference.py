"""Plain reference implementations the fast evaluation code is checked against.

Written for clarity, not speed: one query at a time for CMC/mAP, dense (N, N) numpy arrays for the
k-reciprocal re-ranking. The benchmarks import them too, so the timed baseline is the tested one.
"""

from __future__ import annotations

import numpy as np


def evaluate_per_query(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, ap_mode="full", junk_pid=-1):
    """Per-query loop: stable-sort the row, drop junk, read CMC and AP off the match vector.

    Returns ``(mAP, cmc, ap_per_valid_query, first_rank_per_valid_query, num_valid, num_skipped)``.
    """
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    aps, cmcs, firsts = [], [], []
    skipped = 0
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        pids, cams = g_pids[order], g_camids[order]
        junk = (pids == q_pids[i]) & (cams == q_camids[i])
        if junk_pid is not None:
            junk |= pids == junk_pid
        matches = pids[~junk] == q_pids[i]
        if not matches.any():
            skipped += 1
            continue
        hits = np.flatnonzero(matches)  # 0-based ranks of the true matches
        n = len(hits)
        precision = np.arange(1, n + 1) / (hits + 1)
        if ap_mode == "full":
            ap = precision.sum() / n
        elif ap_mode == "trapezoid":
            ap = 0.0
            for k in range(n):
                before = k / hits[k] if hits[k] != 0 else 1.0
                ap += (before + precision[k]) / 2 / n
        elif ap_mode == "truncated50":
            ap = precision[hits < 50].sum() / n
        else:
            raise ValueError(ap_mode)
        cmc = np.zeros(max_rank)
        if hits[0] < max_rank:
            cmc[hits[0] :] = 1.0
        aps.append(ap)
        cmcs.append(cmc)
        firsts.append(hits[0])
    return (
        float(np.mean(aps)),
        np.mean(cmcs, axis=0),
        np.array(aps),
        np.array(firsts),
        len(aps),
        skipped,
    )


def rerank_dense(
    q_g, q_q, g_g, k1=20, k2=6, lambda_=0.3, squared=False, dtype=np.float64, sort_kind="stable"
):
    """k-reciprocal re-ranking (Zhong et al., CVPR 2017) on dense (N, N) arrays, N = Q + G.

    The authors' released algorithm, step by step: squared distances, each column divided by its
    maximum (then transposed), a full argsort of every row, k-reciprocal sets with the 1/2 k1
    expansion (strictly more than 2/3 overlap), Gaussian weights normalised per row, query expansion
    over k2 neighbours, and the Jaccard distance summed over the columns where the query's vector is
    non-zero (an inverted index over the dense V), then the lambda mix. ``dtype`` and ``sort_kind``
    let the benchmark mirror the released code (float32, quicksort); the tests use float64, stable.
    """
    q_g, q_q, g_g = (np.asarray(x, dtype=dtype) for x in (q_g, q_q, g_g))
    num_q = q_g.shape[0]
    dist = np.concatenate([np.concatenate([q_q, q_g], axis=1), np.concatenate([q_g.T, g_g], axis=1)])
    if not squared:
        dist = dist**2
    n = dist.shape[0]
    dist = np.transpose(dist / np.max(dist, axis=0))
    rank = np.argsort(dist, axis=1, kind=sort_kind).astype(np.int32)
    half = int(np.around(k1 / 2))

    def reciprocal(i, k):
        forward = rank[i, : k + 1]
        backward = rank[forward, : k + 1]
        return forward[np.any(backward == i, axis=1)]

    V = np.zeros((n, n), dtype=dtype)
    for i in range(n):
        r = reciprocal(i, k1)
        expanded = list(r)
        for c in r:
            rc = reciprocal(c, half)
            if len(np.intersect1d(rc, r)) > 2.0 / 3.0 * len(rc):
                expanded.extend(rc)
        expanded = np.unique(expanded)
        w = np.exp(-dist[i, expanded])
        V[i, expanded] = w / w.sum()
    if k2 != 1:
        V_qe = np.zeros_like(V)
        for i in range(n):
            V_qe[i] = np.mean(V[rank[i, :k2]], axis=0)
        V = V_qe
    orig = dist[:num_q, num_q:].copy()
    del dist
    sums = V.sum(axis=1)
    gallery_rows = [np.flatnonzero(V[num_q:, j]) for j in range(n)]  # inverted index over columns
    jaccard = np.zeros((num_q, n - num_q), dtype=dtype)
    for i in range(num_q):
        mins = np.zeros(n - num_q, dtype=dtype)
        for j in np.flatnonzero(V[i]):
            rows = gallery_rows[j]
            mins[rows] += np.minimum(V[i, j], V[num_q + rows, j])
        maxs = sums[i] + sums[num_q:] - mins  # sum of max = sum a + sum b - sum of min
        jaccard[i] = 1.0 - mins / maxs
    return (1 - lambda_) * jaccard + lambda_ * orig
