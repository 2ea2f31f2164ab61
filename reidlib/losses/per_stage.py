"""The loss of BDB and PMM (seed 004): per branch or stage, a label-smoothed identity loss plus a batch-hard
triplet loss with soft margin, summed over the stages without weights (the public code's; the paper:
"all the three stages are supervised by ID loss and the triplet loss").

``L = sum_s [ CE_eps(S_s, y) + L_tp(f_s, y) ]`` with ``S_s`` the stage's logits and ``f_s`` its reduced
feature (``ReIDOutput.logits[s]``, ``features[s]``). Image-level CutMix variants (PMM's Table 3) mix two
images, so their labels are mixed by area: when ``output.extras`` holds ``"mix_pids"`` ``(B,)`` (the
partner's identity) and ``"mix_keep"`` ``(B,)`` (the share of the anchor's own pixels), the identity term
is ``keep * CE_eps(S, y) + (1 - keep) * CE_eps(S, y_partner)`` per sample, and the triplet term keeps
the anchor's identity (the larger share of every mixed image is the anchor's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from reidlib.losses.triplet import TRIPLET_METRICS, batch_hard_triplet_loss
from reidlib.models.output import ReIDOutput

__all__ = ["PerStageLoss", "mixed_cross_entropy"]


def mixed_cross_entropy(logits: Tensor, targets: Tensor, partner_targets: Tensor, keep: Tensor,
                        epsilon: float = 0.0) -> Tensor:
    """Mean over the batch of ``keep * CE_eps(logits, t) + (1 - keep) * CE_eps(logits, t')`` (CutMix's
    label mixing, Yun et al. 2019): ``logits`` ``(B, C)``, ``targets``, ``partner_targets`` ``(B,)``
    int64, ``keep`` ``(B,)`` in ``[0, 1]``."""
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
    keep = keep.to(logits.device, torch.float32)
    if bool(((keep < 0) | (keep > 1)).any()):
        raise ValueError("keep must be in [0, 1]")
    own = F.cross_entropy(logits.float(), targets, label_smoothing=epsilon, reduction="none")
    other = F.cross_entropy(logits.float(), partner_targets.to(targets.device), label_smoothing=epsilon,
                            reduction="none")
    return (keep * own + (1 - keep) * other).mean()


class PerStageLoss:
    """The per-stage loss in the Trainer's contract (module docstring).

    Args:
        label_smoothing: ``eps`` of every cross-entropy (0.1 in the public code).
        margin: the triplet margin; ``None`` = soft margin (the public code's).
        metric: the triplet distance (Euclidean).
        triplet_weight: weight of every triplet term (1; 0 drops it).

    ``loss_fn(output, batch)`` returns ``(loss, {"id": summed CE, "triplet": summed triplet loss, "acc":
    stage I's training accuracy})``.
    """

    def __init__(self, label_smoothing: float = 0.1, margin: float | None = None,
                 metric: str = "euclidean", triplet_weight: float = 1.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label smoothing epsilon must be in [0, 1), got {label_smoothing}")
        if margin is not None and margin < 0:
            raise ValueError(f"margin must be >= 0 or None (soft margin), got {margin}")
        if metric not in TRIPLET_METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {TRIPLET_METRICS}")
        if triplet_weight < 0:
            raise ValueError(f"triplet_weight must be >= 0, got {triplet_weight}")
        self.label_smoothing, self.margin, self.metric = label_smoothing, margin, metric
        self.triplet_weight = triplet_weight

    def __call__(self, output: ReIDOutput, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        pids = batch["pid"]
        if not output.logits or len(output.logits) != len(output.features):
            raise ValueError("PerStageLoss needs one logit and one feature per stage; got "
                             f"{len(output.logits)} logits and {len(output.features)} features")
        mixed = "mix_pids" in output.extras
        ids = []
        for logits in output.logits:
            if mixed:
                ids.append(mixed_cross_entropy(logits, pids, output.extras["mix_pids"],
                                               output.extras["mix_keep"], self.label_smoothing))
            else:
                ids.append(F.cross_entropy(logits.float(), pids, label_smoothing=self.label_smoothing))
        loss_id = torch.stack(ids).sum()
        logs = {"id": float(loss_id.detach()),
                "acc": float((output.logits[0].argmax(dim=1) == pids).float().mean())}
        total = loss_id
        if self.triplet_weight > 0:
            tps = [batch_hard_triplet_loss(f.float(), pids, margin=self.margin, metric=self.metric)[0]
                   for f in output.features]
            loss_tp = torch.stack(tps).sum()
            logs["triplet"] = float(loss_tp.detach())
            total = total + self.triplet_weight * loss_tp
        return total, logs

    def __repr__(self) -> str:
        return (f"PerStageLoss(label_smoothing={self.label_smoothing}, margin={self.margin}, "
                f"metric={self.metric!r}, triplet_weight={self.triplet_weight})")
