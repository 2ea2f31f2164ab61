"""The stage-2 objective of FMN (seed 002, Ding et al., 2017, Sec. 3.3, Algorithm 1).

Stage 2 trains the Mixing and Locally Attentive Networks of :class:`reidlib.models.fmn.FMN` with the
GRN fixed, on the sum of

* Eq. 4, the cross-entropy of the LAN's scores ``S^L`` (``output.logits[1]``), and
* Eq. 5, ``L_rank = max(0, p^G_t - p^L_t + m)``: a hinge on the softmax probability of the true class
  ``t``, which asks the LAN to be more confident than the GRN by a margin ``m``.

Readings (the paper gives the formulas only):

* ``p^G_t`` is a fixed reference: the GRN is frozen in stage 2, so its probability is detached and
  the gradient of Eq. 5 reaches only the LAN's logits (and through them the LAN and the MN).
* Eq. 5 is per image; we average it over the batch, as Eq. 4 is.
* The two terms are added with weight 1 (Algorithm 1: "using both Eq. (4) and Eq. (5)");
  ``rank_weight`` scales Eq. 5, and ``rank_weight=0`` is the "without the ranking loss" arm.
* **The margin is not given.** Probabilities lie in ``[0, 1]``, so ``m`` is a share of that range, and
  the hinge can only be satisfied where ``p^G_t < 1 - m``. A GRN fine-tuned to convergence is very
  confident on its own training images (``p^G_t`` often above 0.9), so a large ``m`` turns Eq. 5 into an
  always-active push of ``p^L_t`` towards 1, i.e. a second, differently-weighted cross-entropy, rather
  than the "better than the GRN by a margin" the paper describes. We default to :data:`DEFAULT_MARGIN`
  ``= 0.05``: five points of probability, satisfiable wherever the GRN is below 95% confident; the
  chapter sweeps it. ``active_fraction`` (the share of images with a positive hinge) shows how often
  it acts.
* Note how little Eq. 5 does early on: its gradient on the true-class logit is
  ``-p^L_t (1 - p^L_t)``, about ``1/C`` while the LAN's freshly initialised classifier is near uniform,
  so the cross-entropy drives the start of stage 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from reidlib.losses.cross_entropy import cross_entropy_label_smoothing
from reidlib.models.output import ReIDOutput

__all__ = ["DEFAULT_MARGIN", "FMNStage2Loss", "probability_ranking_loss", "true_class_probability"]

#: The default ``m`` of Eq. 5 (the paper gives none; see the module docstring).
DEFAULT_MARGIN = 0.05


def _check_margin(margin: float) -> None:
    if not 0.0 <= margin <= 1.0:
        raise ValueError(f"the margin of Eq. 5 is a difference of probabilities, in [0, 1]; got {margin}")


def true_class_probability(logits: Tensor, targets: Tensor) -> Tensor:
    """``p_t = softmax(logits)_t`` per sample: ``(B, C), (B,) -> (B,)``, computed in float32.

    Raises:
        ValueError: shapes that do not fit, or a class index outside ``0..C-1``.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, C), got {tuple(logits.shape)}")
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"targets must be ({logits.shape[0]},) class indices, got {tuple(targets.shape)}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]):
        raise ValueError(f"targets must lie in 0..{logits.shape[1] - 1}, got min {int(targets.min())} "
                         f"max {int(targets.max())}")
    probs = F.softmax(logits.float(), dim=1)
    return probs.gather(1, targets.long().unsqueeze(1)).squeeze(1)


def probability_ranking_loss(
    grn_logits: Tensor,
    lan_logits: Tensor,
    targets: Tensor,
    margin: float = DEFAULT_MARGIN,
    reduction: Literal["mean", "none"] = "mean",
) -> Tensor:
    """Eq. 5: ``max(0, p^G_t - p^L_t + m)`` on the true-class softmax probabilities.

    Args:
        grn_logits: ``(B, C)`` GRN scores; detached here (the GRN is a fixed reference in stage 2).
        lan_logits: ``(B, C)`` LAN scores; the only input that receives gradient.
        targets: ``(B,)`` class indices ``t``.
        margin: ``m`` in ``[0, 1]``.
        reduction: ``"mean"`` over the batch (a scalar) or ``"none"`` (``(B,)``, one hinge per image).

    Returns:
        A scalar (``"mean"``) or ``(B,)`` tensor, float32, each value in ``[0, 1 + m]``.
    """
    _check_margin(margin)
    if grn_logits.shape != lan_logits.shape:
        raise ValueError(f"GRN and LAN logits must have the same shape (B, C), got {tuple(grn_logits.shape)} "
                         f"and {tuple(lan_logits.shape)}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    p_grn = true_class_probability(grn_logits.detach(), targets)
    p_lan = true_class_probability(lan_logits, targets)
    hinge = F.relu(p_grn - p_lan + margin)
    return hinge.mean() if reduction == "mean" else hinge


class FMNStage2Loss:
    """Stage 2 of Algorithm 1: ``CE_eps(S^L, t) + rank_weight * L_rank`` (Eq. 4 + Eq. 5).

    Follows the Trainer's loss contract ``loss_fn(output, batch) -> (loss, logs)``; reads
    ``output.logits == [S^G, S^L]`` (each ``(B, C)``, as :class:`reidlib.models.fmn.FMN` returns) and
    ``batch["pid"]`` ``(B,)``. Logs ``ce`` (Eq. 4 on the LAN), ``rank`` (Eq. 5, also when its weight is
    0), ``acc`` (the LAN's training accuracy), ``active_fraction`` (share of images with a positive
    hinge), ``p_grn`` / ``p_lan`` (mean true-class probabilities), ``mask_clamped`` (when the output
    carries it: share of mask cells where the exponential's guard acts) and ``loss`` (the total).

    Args:
        margin: ``m`` of Eq. 5, in ``[0, 1]`` (default :data:`DEFAULT_MARGIN` = 0.05; the module
            docstring says why).
        rank_weight: weight of Eq. 5 (``>= 0``; the paper adds it with weight 1; 0 = without it).
        label_smoothing: ``epsilon`` of the cross-entropy (the paper: 0).
    """

    def __init__(self, margin: float = DEFAULT_MARGIN, rank_weight: float = 1.0,
                 label_smoothing: float = 0.0) -> None:
        _check_margin(margin)
        if rank_weight < 0:
            raise ValueError(f"rank_weight must be >= 0, got {rank_weight}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label smoothing epsilon must be in [0, 1), got {label_smoothing}")
        self.margin = margin
        self.rank_weight = rank_weight
        self.label_smoothing = label_smoothing

    def __call__(self, output: ReIDOutput, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        if len(output.logits) != 2:
            raise ValueError(f"FMNStage2Loss needs the FMN's two logits [GRN, LAN], got {len(output.logits)}")
        grn_logits, lan_logits = output.logits
        pids = batch["pid"]
        ce = cross_entropy_label_smoothing(lan_logits.float(), pids, self.label_smoothing)
        hinge = probability_ranking_loss(grn_logits, lan_logits, pids, self.margin, reduction="none")
        rank = hinge.mean()
        total = ce + self.rank_weight * rank if self.rank_weight > 0 else ce
        with torch.no_grad():
            logs = {
                "ce": float(ce),
                "rank": float(rank),
                "acc": float((lan_logits.argmax(dim=1) == pids).float().mean()),
                "active_fraction": float((hinge > 0).float().mean()),
                "p_grn": float(true_class_probability(grn_logits, pids).mean()),
                "p_lan": float(true_class_probability(lan_logits, pids).mean()),
            }
            if "mask_clamped" in output.extras:
                logs["mask_clamped"] = float(output.extras["mask_clamped"])
            logs["loss"] = float(total)
        return total, logs

    def __repr__(self) -> str:
        return (f"FMNStage2Loss(margin={self.margin}, rank_weight={self.rank_weight}, "
                f"label_smoothing={self.label_smoothing})")
