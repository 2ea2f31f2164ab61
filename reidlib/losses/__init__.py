"""Losses. Identity and metric losses shared by the chapters; paper-specific ones live beside them
(``reidlib.losses.oap`` for CAMA)."""

from reidlib.losses.cross_entropy import CrossEntropyLabelSmoothing, cross_entropy_label_smoothing
from reidlib.losses.triplet import batch_hard_triplet_loss, pairwise_distances, ranking_triplet_loss

__all__ = [
    "CrossEntropyLabelSmoothing",
    "batch_hard_triplet_loss",
    "cross_entropy_label_smoothing",
    "pairwise_distances",
    "ranking_triplet_loss",
]
