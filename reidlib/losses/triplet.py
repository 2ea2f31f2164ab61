"""Triplet losses: batch-hard mining (Hermans et al., 2017) and the dot-product ranking loss of seed 001.

**Batch hard** (used by seeds 003 and 004 with PxK batches): for every anchor ``a`` of the batch, take
its farthest positive and its nearest negative *within the batch*::

    L = 1/|A| sum_a max(0, m + max_{p: y_p = y_a, p != a} D(a, p) - min_{n: y_n != y_a} D(a, n))

or, with the soft margin (``margin=None``), ``log(1 + exp(d_ap - d_an))`` in place of the hinge. ``A`` is
the set of anchors that have at least one positive and one negative in the batch.

**Ranking triplet loss** of "Re-ID done right" (seed 001, Eq. 1): with L2-normalised descriptors and
dot-product similarity, ``L(q, d+, d-) = max(0, m + q.d- - q.d+)`` for explicit triplets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["TRIPLET_METRICS", "batch_hard_triplet_loss", "pairwise_distances", "ranking_triplet_loss"]

TRIPLET_METRICS = ("euclidean", "sqeuclidean", "cosine")


def pairwise_distances(x: Tensor, metric: str = "euclidean") -> Tensor:
    """All-pairs distances ``(B, B)`` between the rows of ``x`` ``(B, D)``.

    ``"euclidean"`` is ``|x_i - x_j|`` (clamped at 1e-12 under the root so the gradient stays finite
    on the diagonal), ``"sqeuclidean"`` its square, ``"cosine"`` is ``1 - cos(x_i, x_j)``.
    """
    if metric not in TRIPLET_METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {TRIPLET_METRICS}")
    if metric == "cosine":
        xn = F.normalize(x, dim=1)
        return 1.0 - xn @ xn.t()
    sq = x.pow(2).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())).clamp_min(0.0)
    if metric == "sqeuclidean":
        return d2
    return d2.clamp_min(1e-12).sqrt()


def batch_hard_triplet_loss(
    features: Tensor,
    pids: Tensor,
    margin: float | None = 0.3,
    normalize: bool = False,
    metric: str = "euclidean",
) -> tuple[Tensor, dict[str, float]]:
    """Batch-hard triplet loss over one batch.

    Args:
        features: ``(B, D)`` embeddings.
        pids: ``(B,)`` identity labels.
        margin: hinge margin ``m`` (in the units of the distance); ``None`` selects the soft margin.
        normalize: L2-normalise the features first.
        metric: ``"euclidean"`` (Hermans et al.), ``"sqeuclidean"`` or ``"cosine"``.

    Returns:
        ``(loss, stats)``: the mean loss over valid anchors (scalar tensor), and floats
        ``active_fraction`` (share of anchors whose hardest triplet still violates the margin, for the
        soft margin: whose hardest negative is not farther than the hardest positive),
        ``mean_pos_dist`` / ``mean_neg_dist`` (mean hardest positive / negative distance) and
        ``num_anchors``.

    Raises:
        ValueError: on shape mismatches, or when no anchor has both a positive and a negative (a batch
            that was not sampled as P identities x K >= 2 instances).
    """
    if features.dim() != 2:
        raise ValueError(f"features must be (B, D), got shape {tuple(features.shape)}")
    if pids.dim() != 1 or pids.shape[0] != features.shape[0]:
        raise ValueError(f"pids must be ({features.shape[0]},), got shape {tuple(pids.shape)}")
    if margin is not None and margin < 0:
        raise ValueError(f"margin must be >= 0 or None (soft margin), got {margin}")
    if normalize:
        features = F.normalize(features, dim=1)
    dist = pairwise_distances(features, metric)
    pids = pids.to(features.device)
    same = pids[:, None] == pids[None, :]
    eye = torch.eye(len(pids), dtype=torch.bool, device=features.device)
    pos_mask = same & ~eye
    neg_mask = ~same
    valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
    if not bool(valid.any()):
        raise ValueError(
            "batch-hard triplet loss needs anchors with at least one positive and one negative in the batch; "
            f"got {len(pids)} samples of {int(torch.unique(pids).numel())} identities with no such anchor. "
            "Sample batches with RandomIdentitySampler (num_instances >= 2, at least 2 identities)."
        )
    # Masked-out entries are pushed to -inf/+inf so max/min pick only real positives/negatives.
    hardest_pos = dist.masked_fill(~pos_mask, float("-inf")).amax(dim=1)[valid]
    hardest_neg = dist.masked_fill(~neg_mask, float("inf")).amin(dim=1)[valid]
    gap = hardest_pos - hardest_neg
    if margin is None:
        losses = F.softplus(gap)
        active = gap >= 0
    else:
        losses = F.relu(gap + margin)
        active = losses > 0
    stats = {
        "active_fraction": float(active.float().mean()),
        "mean_pos_dist": float(hardest_pos.detach().mean()),
        "mean_neg_dist": float(hardest_neg.detach().mean()),
        "num_anchors": float(valid.sum()),
    }
    return losses.mean(), stats


def ranking_triplet_loss(
    q: Tensor, pos: Tensor, neg: Tensor, margin: float = 0.1, reduction: str = "mean"
) -> Tensor:
    """Seed 001's ranking triplet loss (Eq. 1): ``max(0, m + q.d- - q.d+)`` for explicit triplets.

    Args:
        q, pos, neg: ``(B, D)`` descriptors of the query, positive and negative images (the paper's are
            L2-normalised, so the dot product is a cosine similarity in ``[-1, 1]``).
        margin: ``m`` (0.1 in the paper).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)`` per-triplet losses).
    """
    if q.dim() != 2 or q.shape != pos.shape or q.shape != neg.shape:
        raise ValueError(
            f"q, pos and neg must be (B, D) of equal shape, got {tuple(q.shape)}, {tuple(pos.shape)}, "
            f"{tuple(neg.shape)}"
        )
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    losses = F.relu(margin + (q * neg).sum(dim=1) - (q * pos).sum(dim=1))
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
