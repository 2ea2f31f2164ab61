"""The multiple loss function of the hybrid-attention network (seed 003, Sec. 3.5, Eq. 4).

``L_all = (1/N) sum_{i=1..N} L_id^i + (1/M) sum_{j=1..M} L_tp^j``: the mean of the ``N`` identity losses
(one per classifier, i.e. per part; label-smoothed cross-entropy, epsilon 0.1, Sec. 4.1) plus the mean of
the ``M`` batch-hard triplet losses (margin 1.0, Sec. 4.1). The paper does not say what ``M`` counts; the
public code computes one triplet loss per pyramid level of MGO, on the concatenation of that level's
part features (6 losses for the 21 parts of 6 stripes). That is the default here (``triplet_on="levels"``),
read from ``output.extras["part_levels"]`` (:class:`reidlib.models.hybrid_attention.HybridAttentionNet`);
the alternatives are one triplet loss per part (``"parts"``) and one on the test descriptor
(``"embedding"``). An output without ``part_levels`` under ``"levels"`` gets one group per feature.

Distances are Euclidean on the raw (unnormalised) features, as in Hermans et al.; the paper's margin 1.0
is in those units.

The maths is reidlib's: :func:`reidlib.losses.cross_entropy.branch_cross_entropies` and
:func:`reidlib.losses.triplet.batch_hard_triplet_loss`. The loss objects :class:`~reidlib.losses.IdentityLoss`
(the mean over branches, so exactly the first term) and :class:`~reidlib.losses.BatchHardTripletLoss`
(which reads ``features[0]`` or the embedding only) are not combined with
:class:`~reidlib.losses.LossSum` because the second term needs the grouping by level and the log names
are this chapter's (``id``, ``triplet``, ``acc``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from reidlib.losses.cross_entropy import branch_cross_entropies
from reidlib.losses.triplet import TRIPLET_METRICS, batch_hard_triplet_loss
from reidlib.models.output import ReIDOutput

__all__ = ["TRIPLET_GROUPINGS", "MultiPartLoss", "group_by_level", "triplet_groups"]

#: What the ``M`` triplet losses of Eq. 4 are computed on (:func:`triplet_groups`).
TRIPLET_GROUPINGS = ("levels", "parts", "embedding")


def group_by_level(features: Sequence[Tensor], part_levels: Sequence[int] | Tensor) -> list[Tensor]:
    """Concatenate the features of each level's parts: one ``(B, sum_i D_i)`` tensor per level, levels in
    increasing order, parts in their order within a level.

    Args:
        features: per part ``(B, D_i)`` (``ReIDOutput.features``).
        part_levels: the level of each part (``extras["part_levels"]``), same length.
    """
    levels = [int(v) for v in (part_levels.tolist() if torch.is_tensor(part_levels) else part_levels)]
    if len(levels) != len(features):
        raise ValueError(f"{len(features)} features but {len(levels)} part levels")
    return [torch.cat([f for f, lv in zip(features, levels, strict=True) if lv == level], dim=1)
            for level in sorted(set(levels))]


def triplet_groups(output: ReIDOutput, on: str = "levels") -> list[Tensor]:
    """The ``M`` feature tensors ``(B, D_j)`` of Eq. 4's triplet term (module docstring).

    ``"levels"``: :func:`group_by_level` over ``extras["part_levels"]`` (one per feature when absent);
    ``"parts"``: every ``output.features[i]``; ``"embedding"``: ``[output.embedding]``.
    """
    if on not in TRIPLET_GROUPINGS:
        raise ValueError(f"on must be one of {TRIPLET_GROUPINGS}, got {on!r}")
    if on == "embedding":
        return [output.embedding]
    if not output.features:
        raise ValueError("a triplet loss on features needs output.features; the model returns none "
                         "(use on='embedding')")
    if on == "levels" and "part_levels" in output.extras:
        return group_by_level(output.features, output.extras["part_levels"])
    return list(output.features)


class MultiPartLoss:
    """Eq. 4 in the Trainer's contract: ``(1/N) sum_i CE_eps(S_i, y) + w (1/M) sum_j L_tp(G_j, y)``.

    Args:
        label_smoothing: ``eps`` of every cross-entropy (0.1 in the paper).
        margin: the triplet hinge margin (1.0 in the paper); ``None`` = soft margin.
        triplet_on: the triplet groups ``G_j`` (:data:`TRIPLET_GROUPINGS`, :func:`triplet_groups`).
        metric: the triplet distance (:data:`reidlib.losses.triplet.TRIPLET_METRICS`; Euclidean).
        triplet_weight: ``w`` (1 in Eq. 4); 0 drops the triplet term (not computed, so batches need no
            P x K sampling).

    ``loss_fn(output, batch)`` with ``output.logits`` per part ``(B, C)``, ``batch["pid"]`` ``(B,)``
    returns ``(loss, {"id": mean CE, "triplet": mean triplet loss (when computed), "acc": the training
    accuracy averaged over the classifiers})``.
    """

    def __init__(self, label_smoothing: float = 0.1, margin: float | None = 1.0, triplet_on: str = "levels",
                 metric: str = "euclidean", triplet_weight: float = 1.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label smoothing epsilon must be in [0, 1), got {label_smoothing}")
        if margin is not None and margin < 0:
            raise ValueError(f"margin must be >= 0 or None (soft margin), got {margin}")
        if triplet_on not in TRIPLET_GROUPINGS:
            raise ValueError(f"triplet_on must be one of {TRIPLET_GROUPINGS}, got {triplet_on!r}")
        if metric not in TRIPLET_METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {TRIPLET_METRICS}")
        if triplet_weight < 0:
            raise ValueError(f"triplet_weight must be >= 0, got {triplet_weight}")
        self.label_smoothing = label_smoothing
        self.margin = margin
        self.triplet_on = triplet_on
        self.metric = metric
        self.triplet_weight = triplet_weight

    def __call__(self, output: ReIDOutput, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        pids = batch["pid"]
        id_losses = branch_cross_entropies(output.logits, pids, self.label_smoothing)
        loss_id = torch.stack(id_losses).mean()
        acc = sum(float((s.argmax(dim=1) == pids).float().mean()) for s in output.logits) / len(output.logits)
        logs = {"id": float(loss_id.detach()), "acc": acc}
        total = loss_id
        if self.triplet_weight > 0:
            # Float32 even under mixed precision: the hinge compares distances that can be close.
            losses = [batch_hard_triplet_loss(g.float(), pids, margin=self.margin, metric=self.metric)[0]
                      for g in triplet_groups(output, self.triplet_on)]
            loss_tp = torch.stack(losses).mean()
            logs["triplet"] = float(loss_tp.detach())
            total = total + self.triplet_weight * loss_tp
        return total, logs

    def __repr__(self) -> str:
        return (f"MultiPartLoss(label_smoothing={self.label_smoothing}, margin={self.margin}, "
                f"triplet_on={self.triplet_on!r}, metric={self.metric!r}, "
                f"triplet_weight={self.triplet_weight})")
