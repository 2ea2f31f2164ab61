"""Triplet mining from a pool of pre-computed descriptors (seed 001, Sec. 3.2, "Hard Triplet Mining").

The paper follows Gordo et al.: "we extract the features for a set of N randomly selected examples using
the current model and compute the loss of all possible triplets. Then, to select triplets, we randomly
select an image as a query and randomly pick a triplet for that query from among the 25 triplets with
the largest loss." The pool is renewed after ``k`` model updates (N = 5,000, k = 16).

For one query ``q`` the loss of triplet ``(q, p, n)`` is Eq. 1 on the pool's descriptors,
``max(0, m + q.n - q.p)``. It grows as ``q.p`` falls and as ``q.n`` rises, so the ``h`` largest losses
over all ``P x N_neg`` pairs lie among the ``h`` least similar positives and the ``h`` most similar
negatives: :func:`hardest_triplets` ranks that ``h x h`` block only, which is exact and costs
``O(N + h^2)`` per query instead of ``O(P N_neg)``.

:class:`TripletPool` holds one pool and draws triplets from it, hard (the paper) or uniformly at random
(the comparison of the chapter).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["MINING_MODES", "TripletPool", "hardest_triplets", "query_triplet_losses"]

MINING_MODES = ("hard", "random")


def _check_pool(feats: Tensor, pids: Tensor) -> None:
    if feats.dim() != 2:
        raise ValueError(f"feats must be (N, D), got shape {tuple(feats.shape)}")
    if pids.dim() != 1 or pids.shape[0] != feats.shape[0]:
        raise ValueError(f"pids must be ({feats.shape[0]},), got shape {tuple(pids.shape)}")


def _query_split(feats: Tensor, pids: Tensor, query: int) -> tuple[Tensor, Tensor, Tensor]:
    """Similarities ``(N,)`` of the pool to ``query``, its positives (query excluded) and its negatives."""
    _check_pool(feats, pids)
    sims = feats @ feats[query]
    same = pids == pids[query]
    same[query] = False
    return sims, torch.nonzero(same).squeeze(1), torch.nonzero(pids != pids[query]).squeeze(1)


def query_triplet_losses(feats: Tensor, pids: Tensor, query: int, margin: float = 0.1
                         ) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. 1 for every triplet of one query of the pool (all positives x all negatives).

    Args:
        feats: ``(N, D)`` descriptors (L2-normalised in the paper, so dot products are cosines).
        pids: ``(N,)`` identities.
        query: index of the query in the pool.
        margin: ``m``.

    Returns:
        ``(losses, pos, neg)``: ``losses`` ``(P, N_neg)``, and the pool indices of the positives ``(P,)``
        (the query excluded) and negatives ``(N_neg,)``.
    """
    sims, pos, neg = _query_split(feats, pids, query)
    losses = (margin + sims[neg][None, :] - sims[pos][:, None]).clamp_min(0)
    return losses, pos, neg


def hardest_triplets(feats: Tensor, pids: Tensor, query: int, num_hard: int = 25, margin: float = 0.1
                     ) -> tuple[Tensor, Tensor]:
    """The ``num_hard`` triplets of ``query`` with the largest loss (Eq. 1), hardest first.

    Args:
        feats: ``(N, D)`` pool descriptors. pids: ``(N,)`` identities. query: pool index of the query.
        num_hard: how many triplets to keep (25 in the paper); fewer when the query has fewer triplets.
        margin: ``m`` of Eq. 1.

    Returns:
        ``(triplets, losses)``: ``triplets`` ``(h, 2)`` int64 pool indices ``(positive, negative)``,
        ``losses`` ``(h,)``, sorted by decreasing loss (ties by positive, then negative index).
        Empty (``h = 0``) when the query has no positive or no negative in the pool.
    """
    if num_hard < 1:
        raise ValueError(f"num_hard must be >= 1, got {num_hard}")
    sims, pos, neg = _query_split(feats, pids, query)
    if len(pos) == 0 or len(neg) == 0:
        return torch.zeros((0, 2), dtype=torch.int64), torch.zeros(0, dtype=feats.dtype)
    # The num_hard largest losses use only the num_hard least similar positives and most similar negatives.
    hp = min(num_hard, len(pos))
    hn = min(num_hard, len(neg))
    pos_sim, pos_order = torch.sort(sims[pos], stable=True)
    neg_sim, neg_order = torch.sort(sims[neg], descending=True, stable=True)
    pos_c, pos_s = pos[pos_order[:hp]], pos_sim[:hp]
    neg_c, neg_s = neg[neg_order[:hn]], neg_sim[:hn]
    block = (margin + neg_s[None, :] - pos_s[:, None]).clamp_min(0)  # (hp, hn)
    flat = block.reshape(-1)
    h = min(num_hard, flat.numel())
    # Sort by loss (descending), ties by (positive, negative) pool index for a deterministic choice.
    p_idx = pos_c[:, None].expand(hp, hn).reshape(-1)
    n_idx = neg_c[None, :].expand(hp, hn).reshape(-1)
    key_order = torch.argsort(p_idx * (int(pids.numel()) + 1) + n_idx, stable=True)
    order = key_order[torch.argsort(flat[key_order], descending=True, stable=True)][:h]
    return torch.stack([p_idx[order], n_idx[order]], dim=1), flat[order]


@dataclass
class TripletPool:
    """A pool of ``N`` training images with their current descriptors, and the triplets drawn from it.

    Attributes:
        indices: ``(N,)`` dataset indices of the pool's images.
        feats: ``(N, D)`` their descriptors under the current model.
        pids: ``(N,)`` their identities.
        mode: ``"hard"`` (a random query, then one of its ``num_hard`` highest-loss triplets: the paper)
            or ``"random"`` (a random query, a random positive and a random negative).
        num_hard: 25 in the paper. margin: ``m`` of Eq. 1.
    """

    indices: Tensor
    feats: Tensor
    pids: Tensor
    mode: str = "hard"
    num_hard: int = 25
    margin: float = 0.1

    def __post_init__(self) -> None:
        if self.mode not in MINING_MODES:
            raise ValueError(f"mode must be one of {MINING_MODES}, got {self.mode!r}")
        _check_pool(self.feats, self.pids)
        if self.indices.shape != self.pids.shape:
            raise ValueError(f"indices {tuple(self.indices.shape)} and pids {tuple(self.pids.shape)} differ")
        _, inverse, counts = torch.unique(self.pids, return_inverse=True, return_counts=True)
        self.queries = torch.nonzero(counts[inverse] >= 2).squeeze(1)
        if len(self.queries) == 0 or len(counts) < 2:
            raise ValueError("the pool has no query with a positive and a negative: sample more images "
                             "(at least two identities, one of them twice)")
        self._hard: dict[int, tuple[Tensor, Tensor]] = {}

    def hard_for(self, query: int) -> tuple[Tensor, Tensor]:
        """:func:`hardest_triplets` of pool index ``query`` (cached: the pool's descriptors are fixed)."""
        if query not in self._hard:
            self._hard[query] = hardest_triplets(self.feats, self.pids, query, self.num_hard, self.margin)
        return self._hard[query]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` triplets ``(n, 3)`` of dataset indices ``(query, positive, negative)``."""
        out = torch.empty((n, 3), dtype=torch.int64)
        for i in range(n):
            q = int(self.queries[torch.randint(len(self.queries), (1,), generator=generator)])
            if self.mode == "hard":
                triplets, _ = self.hard_for(q)
                p, ng = triplets[int(torch.randint(len(triplets), (1,), generator=generator))].tolist()
            else:
                same = self.pids == self.pids[q]
                same[q] = False
                pos = torch.nonzero(same).squeeze(1)
                neg = torch.nonzero(self.pids != self.pids[q]).squeeze(1)
                p = int(pos[torch.randint(len(pos), (1,), generator=generator)])
                ng = int(neg[torch.randint(len(neg), (1,), generator=generator)])
            out[i] = torch.stack([self.indices[q], self.indices[p], self.indices[ng]])
        return out

    def mean_hard_loss(self, num_queries: int = 200, generator: torch.Generator | None = None) -> float:
        """Mean loss of the ``num_hard`` hardest triplets over up to ``num_queries`` random queries (a
        training-curve statistic: how hard the pool still is for the current model)."""
        pick = torch.randperm(len(self.queries), generator=generator)[:num_queries]
        losses = [self.hard_for(int(self.queries[i]))[1] for i in pick]
        return float(torch.cat(losses).mean()) if losses else 0.0
