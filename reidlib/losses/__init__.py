"""Losses. Identity and metric losses shared by the chapters; paper-specific ones live beside them
(``reidlib.losses.oap`` for CAMA, ``reidlib.losses.fmn_rank`` for FMN, ``reidlib.losses.multi_part`` for
the hybrid-attention network, ``reidlib.losses.per_stage`` for BDB and PMM).

Tensor functions (``cross_entropy_label_smoothing``, ``batch_hard_triplet_loss``, ``ranking_triplet_loss``)
do the maths; the loss objects (:class:`IdentityLoss`, :class:`BatchHardTripletLoss`,
:class:`TripletRankingLoss`, :class:`CamaLoss`) follow the Trainer's contract
``loss_fn(output: ReIDOutput, batch: dict) -> (scalar, {name: float})`` and add up with :class:`LossSum`.
"""

from reidlib.losses.combine import LossFn, LossSum
from reidlib.losses.cross_entropy import (
    CrossEntropyLabelSmoothing,
    IdentityLoss,
    branch_cross_entropies,
    cross_entropy_label_smoothing,
)
from reidlib.losses.oap import CamaLoss
from reidlib.losses.triplet import (
    BatchHardTripletLoss,
    TripletRankingLoss,
    batch_hard_triplet_loss,
    pairwise_distances,
    ranking_triplet_loss,
)

__all__ = [
    "BatchHardTripletLoss",
    "CamaLoss",
    "CrossEntropyLabelSmoothing",
    "IdentityLoss",
    "LossFn",
    "LossSum",
    "TripletRankingLoss",
    "batch_hard_triplet_loss",
    "branch_cross_entropies",
    "cross_entropy_label_smoothing",
    "pairwise_distances",
    "ranking_triplet_loss",
]
