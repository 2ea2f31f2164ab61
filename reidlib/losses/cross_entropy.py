"""Identity (cross-entropy) loss with label smoothing (Szegedy et al., 2016).

The target distribution puts ``1 - epsilon`` on the true class and spreads ``epsilon`` uniformly over
all ``C`` classes: ``q_c = (1 - epsilon) [c = y] + epsilon / C``, and the loss is
``-sum_c q_c log p_c`` averaged over the batch. ``epsilon = 0`` is the plain cross-entropy of the IDE
baseline; the hybrid-attention paper (seed 003) and most BNNeck-style baselines use ``epsilon = 0.1``.

:func:`branch_cross_entropies` is the identity term of every reidlib objective (one cross-entropy per
branch of a :class:`~reidlib.models.output.ReIDOutput`); :class:`IdentityLoss` is its Trainer-contract
form (mean over branches), :class:`reidlib.losses.oap.CamaLoss` sums it (seed 000, Eq. 7).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from reidlib.models.output import ReIDOutput

__all__ = ["CrossEntropyLabelSmoothing", "IdentityLoss", "branch_cross_entropies",
           "cross_entropy_label_smoothing"]


def _check(logits: Tensor, targets: Tensor, epsilon: float) -> None:
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, C), got shape {tuple(logits.shape)}")
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets must be ({logits.shape[0]},) class indices, got shape {tuple(targets.shape)}"
        )
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]):
        raise ValueError(
            f"targets must lie in 0..{logits.shape[1] - 1} (the classifier's classes), "
            f"got min {int(targets.min())} max {int(targets.max())}; are the train pids relabelled?"
        )


def cross_entropy_label_smoothing(logits: Tensor, targets: Tensor, epsilon: float = 0.1) -> Tensor:
    """Mean label-smoothed cross-entropy.

    Args:
        logits: ``(B, C)`` unnormalised class scores.
        targets: ``(B,)`` int64 class indices in ``0..C-1``.
        epsilon: smoothing mass in ``[0, 1)``.

    Returns:
        A scalar tensor (nats).
    """
    _check(logits, targets, epsilon)
    # torch's label_smoothing uses exactly q_c = (1 - eps) [c = y] + eps / C.
    return F.cross_entropy(logits, targets, label_smoothing=epsilon)


class CrossEntropyLabelSmoothing(nn.Module):
    """Module form of :func:`cross_entropy_label_smoothing`: ``forward(logits, targets) -> scalar``."""

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
        self.epsilon = epsilon

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return cross_entropy_label_smoothing(logits, targets, self.epsilon)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"


def branch_cross_entropies(logits: Sequence[Tensor], targets: Tensor, epsilon: float = 0.0) -> list[Tensor]:
    """One label-smoothed cross-entropy per branch: ``[CE_eps(S^1, t), ..., CE_eps(S^N, t)]``.

    Args:
        logits: per branch ``(B, C)`` scores (``ReIDOutput.logits``); computed in float32 even when the
            model ran in half precision.
        targets: ``(B,)`` class indices.
        epsilon: smoothing mass in ``[0, 1)`` (0: plain cross-entropy).

    Raises:
        ValueError: no logits (a model without classifier), or shapes / class indices that do not fit.
    """
    if not logits:
        raise ValueError("an identity loss needs logits; the model output has none (no classifier?)")
    return [cross_entropy_label_smoothing(s.float(), targets, epsilon) for s in logits]


class IdentityLoss:
    """Identity loss in the Trainer's contract: the mean over branches of ``CE_eps(logits_i, pid)``.

    ``loss_fn(output, batch) -> (loss, {"ce": loss, "acc": training accuracy of branch 0})``, with
    ``output.logits`` per branch ``(B, C)`` and ``batch["pid"]`` ``(B,)``.

    Args:
        label_smoothing: ``epsilon`` in ``[0, 1)`` (the module docstring's ``q_c``).
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label smoothing epsilon must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def __call__(self, output: ReIDOutput, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        pids = batch["pid"]
        losses = branch_cross_entropies(output.logits, pids, self.label_smoothing)
        ce = sum(losses) / len(losses)
        acc = float((output.logits[0].argmax(dim=1) == pids).float().mean())
        return ce, {"ce": float(ce.detach()), "acc": acc}

    def __repr__(self) -> str:
        return f"IdentityLoss(label_smoothing={self.label_smoothing})"
