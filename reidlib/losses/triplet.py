"""Triplet losses: batch-hard mining (Hermans et al., 2017) and the dot-product ranking loss of seed 001.

**Batch hard** (used by seeds 003 and 004 with PxK batches): for every anchor ``a`` of the batch, take
its farthest positive and its nearest negative *within the batch*::

    L = 1/|A| sum_a max(0, m + max_{p: y_p = y_a, p != a} D(a, p) - min_{n: y_n != y_a} D(a, n))

or, with the soft margin (``margin=None``), ``log(1 + exp(d_ap - d_an))`` in place of the hinge. ``A`` is
the set of anchors that have at least one positive and one negative in the batch.

**Ranking triplet loss** of "Re-ID done right" (seed 001, Eq. 1): with L2-normalised descriptors and
dot-product similarity, ``L(q, d+, d-) = max(0, m + q.d- - q.d+)`` for explicit triplets.

On unit vectors the two agree: ``|q - d|^2 = 2 - 2 q.d``, so a squared-Euclidean hinge with margin
``2m``, halved, is Eq. 1: ``0.5 max(0, 2m + |q - d+|^2 - |q - d-|^2) = max(0, m + q.d- - q.d+)``.
Seed 001's batch-hard comparison is therefore ``BatchHardTripletLoss(margin=2 * m,
metric="sqeuclidean", on="embedding", scale=0.5)``: Eq. 1 on each anchor's hardest positive and negative.

:class:`BatchHardTripletLoss` and :class:`TripletRankingLoss` are the Trainer-contract forms
(``loss_fn(output, batch) -> (loss, logs)``) of the two functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from reidlib.losses.gather import gather_across_ranks
from reidlib.models.output import ReIDOutput

__all__ = [
    "TRIPLET_METRICS",
    "BatchHardTripletLoss",
    "TripletRankingLoss",
    "batch_hard_triplet_loss",
    "pairwise_distances",
    "ranking_triplet_loss",
]

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


TRIPLET_INPUTS = ("features", "embedding")


class BatchHardTripletLoss:
    """Batch-hard triplet loss in the Trainer's contract: ``scale * batch_hard_triplet_loss(x, pid)``.

    Args:
        margin: hinge margin (units of the distance); ``None`` for the soft margin.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"`` (:func:`pairwise_distances`).
        on: ``"features"`` (``output.features[0]``, ``(B, D)``, what BNNeck gives the metric loss) or
            ``"embedding"`` (``output.embedding``, ``(B, D)``, the test descriptor).
        scale: factor on the loss; ``margin=2m, metric="sqeuclidean", on="embedding", scale=0.5`` is
            seed 001's Eq. 1 on the hardest triplets of unit descriptors (see the module docstring).

    Under ``torchrun`` the rows of every rank are gathered first (:func:`reidlib.losses.gather.
    gather_across_ranks`), so the loss and its gradient are those of the global batch.

    ``loss_fn(output, batch)`` with ``batch["pid"]`` ``(B,)`` returns ``(loss, {"triplet": loss,
    "active_fraction": share of anchors whose hardest triplet violates the margin})``. The batch needs
    P identities x K >= 2 images (:class:`reidlib.data.samplers.RandomIdentitySampler`).
    """

    def __init__(self, margin: float | None = 0.3, metric: str = "euclidean", on: str = "features",
                 scale: float = 1.0) -> None:
        if margin is not None and margin < 0:
            raise ValueError(f"margin must be >= 0 or None (soft margin), got {margin}")
        if metric not in TRIPLET_METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {TRIPLET_METRICS}")
        if on not in TRIPLET_INPUTS:
            raise ValueError(f"on must be one of {TRIPLET_INPUTS}, got {on!r}")
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.margin = margin
        self.metric = metric
        self.on = on
        self.scale = scale

    def __call__(self, output: ReIDOutput, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        if self.on == "features":
            if not output.features:
                raise ValueError("BatchHardTripletLoss(on='features') needs output.features; the model "
                                 "returns none (use on='embedding')")
            x = output.features[0]
        else:
            x = output.embedding
        # Under torchrun the hardest triplets are mined in the global batch, as in one process.
        x, pids = gather_across_ranks(x.float(), batch["pid"])
        loss, stats = batch_hard_triplet_loss(x, pids, margin=self.margin, metric=self.metric)
        loss = self.scale * loss  # exact for 1.0 and 0.5 (powers of two), so no number moves
        return loss, {"triplet": float(loss.detach()), "active_fraction": stats["active_fraction"]}

    def __repr__(self) -> str:
        return (f"BatchHardTripletLoss(margin={self.margin}, metric={self.metric!r}, on={self.on!r}, "
                f"scale={self.scale})")


class TripletRankingLoss:
    """Seed 001's Eq. 1 in the Trainer's contract, on explicit triplets.

    The model embeds the images of ``T`` triplets in one batch, interleaved: rows ``3t, 3t+1, 3t+2`` of
    ``output.embedding`` ``(3T, D)`` are the query, positive and negative of triplet ``t`` (L2-normalised
    descriptors, as :class:`reidlib.models.global_descriptor.GlobalDescriptor` gives). The loss is the
    mean of :func:`ranking_triplet_loss` over the ``T`` triplets; the logs are ``ranking`` (that mean)
    and ``active`` (the share of triplets with a positive loss, i.e. that still violate the margin).

    Args:
        margin: ``m`` (0.1 in the paper).

    When ``batch`` has ``"pid"`` ``(3T,)`` the layout is checked (query and positive share an identity,
    the negative does not), because a shuffled batch would silently train on wrong triplets.
    """

    def __init__(self, margin: float = 0.1) -> None:
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = margin

    def __call__(self, output: ReIDOutput, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        d = output.embedding
        if d.dim() != 2 or d.shape[0] == 0 or d.shape[0] % 3:
            raise ValueError(f"TripletRankingLoss needs embeddings (3T, D) of interleaved (query, positive, "
                             f"negative) rows, got {tuple(d.shape)}")
        pids = batch.get("pid")
        if pids is not None:
            q, p, n = pids[0::3], pids[1::3], pids[2::3]
            if not bool(((q == p) & (q != n)).all()):
                raise ValueError("TripletRankingLoss: batch['pid'] is not laid out as (query, positive, "
                                 "negative) triplets: rows 3t and 3t+1 must share an identity, 3t+2 not")
        losses = ranking_triplet_loss(d[0::3], d[1::3], d[2::3], self.margin, reduction="none")
        loss = losses.mean()
        return loss, {"ranking": float(loss.detach()), "active": float((losses.detach() > 0).float().mean())}

    def __repr__(self) -> str:
        return f"TripletRankingLoss(margin={self.margin})"
