"""Overlapped Activation Penalty (OAP) of CAMA (seed 000, Yang et al., CVPR 2019, Sec. 3.2-3.3).

Each of the N branches of a CAMA model produces a class activation map ``M^i_t`` of the image's own
identity ``t`` (Eq. 4). The penalty binarises each map softly around its k-th largest value (Eq. 5)
and sums the product of the N soft masks over the map (Eq. 6): it is large where *all* branches look
at the same cells, so minimising it spreads the branches over different parts of the person.

Two readings of "ordered branches" are implemented, because the paper does not say whether the
gradient of the product reaches the earlier branches:

* ``"symmetric"``: plain autograd through Eq. 6; every branch is pushed away from the others.
* ``"ordered"``: the reported value is still Eq. 6, but branch ``i`` receives only the gradient of the
  overlap with the branches before it, ``(1/N) sum_{x,y} a_i * prod_{j<i} sg(a_j)`` (``sg`` = stop
  gradient); the first branch is never moved by the penalty and no branch is moved by a later one.
  For N = 2 this is exactly ``(1/N) sum sg(a_1) a_2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from reidlib.layers.cam import class_activation_map
from reidlib.losses.cross_entropy import branch_cross_entropies
from reidlib.models.output import ReIDOutput

__all__ = [
    "OAP_MODES",
    "CamaLoss",
    "activation_masks",
    "k_from_fraction",
    "overlapped_activation_penalty",
    "target_class_maps",
]

OapMode = Literal["symmetric", "ordered"]
OAP_MODES: tuple[str, ...] = ("symmetric", "ordered")


def k_from_fraction(fraction: float, num_cells: int) -> int:
    """Turn a share of the map's grid cells into the ``k`` of Eq. 5 (at least 1, at most ``num_cells``).

    The paper uses 16x8 = 128-cell maps; keeping ``k / (h*w)`` fixed carries its ``k`` over to other
    input sizes (e.g. ``13/128`` of a 8x4 map gives ``k = 3``).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"k fraction must be in (0, 1], got {fraction}")
    if num_cells < 1:
        raise ValueError(f"num_cells must be >= 1, got {num_cells}")
    return int(min(num_cells, max(1, round(fraction * num_cells))))


def target_class_maps(
    feature_maps: Sequence[Tensor], classifier_weights: Tensor | Sequence[Tensor], targets: Tensor
) -> Tensor:
    """Class activation maps of each image's own class, per branch (Eq. 4 at ``c = t``).

    Args:
        feature_maps: N tensors ``F^i`` of shape ``(B, C, h, w)`` (after the per-branch BN of Eq. 3).
        classifier_weights: the bias-free classifier ``W^i`` of each branch: N tensors
            ``(num_classes, C)`` (``ReIDOutput.class_weights``) or one ``(N, num_classes, C)``.
        targets: ``(B,)`` integer class indices ``t``.

    Returns:
        ``(B, N, h, w)``: ``M^i_t(x, y) = sum_k W^i_{t,k} F^i_k(x, y)``
        (:func:`reidlib.layers.cam.class_activation_map` of each branch).
    """
    if isinstance(classifier_weights, Tensor) and classifier_weights.dim() != 3:
        raise ValueError(f"classifier_weights must be (N={len(feature_maps)}, num_classes, C), "
                         f"got {tuple(classifier_weights.shape)}")
    if len(classifier_weights) != len(feature_maps):
        shape = (tuple(classifier_weights.shape) if isinstance(classifier_weights, Tensor)
                 else f"{len(classifier_weights)} weights")
        raise ValueError(f"classifier_weights must be (N={len(feature_maps)}, num_classes, C), got {shape}")
    maps = []
    for i, (fmap, weight) in enumerate(zip(feature_maps, classifier_weights, strict=True)):
        if fmap.dim() != 4 or weight.dim() != 2 or fmap.shape[1] != weight.shape[1]:
            raise ValueError(
                f"feature_maps[{i}] must be (B, {weight.shape[-1]}, h, w) to match classifier_weights[{i}] "
                f"{tuple(weight.shape)}, got {tuple(fmap.shape)}"
            )
        maps.append(class_activation_map(fmap, weight, targets))
    return torch.stack(maps, dim=1)


def activation_masks(target_maps: Tensor, k: int) -> Tensor:
    """Soft masks ``a_i = sigmoid(M^i_t - sigma_i)`` with ``sigma_i`` the k-th largest cell (Eq. 5).

    Args:
        target_maps: ``(B, N, h, w)`` target-class CAMs.
        k: rank of the threshold, ``1 <= k <= h*w``. ``k = 1`` thresholds at the maximum (every mask
            value <= 0.5); ``k = h*w`` at the minimum (every value >= 0.5).

    Returns:
        ``(B, N, h, w)`` masks in ``(0, 1)``. The threshold is a differentiable function of the map
        (``topk`` passes gradient to the selected cell), as in the paper's definition.
    """
    if target_maps.dim() != 4:
        raise ValueError(f"target_maps must be (B, N, h, w), got {tuple(target_maps.shape)}")
    cells = target_maps.shape[2] * target_maps.shape[3]
    if not 1 <= k <= cells:
        raise ValueError(f"k must be in [1, h*w={cells}], got {k}")
    flat = target_maps.flatten(2)
    sigma = flat.topk(k, dim=2).values[..., -1:]  # (B, N, 1): k-th largest per image and branch
    return torch.sigmoid(flat - sigma).view_as(target_maps)


def overlapped_activation_penalty(target_maps: Tensor, k: int, mode: OapMode = "symmetric") -> Tensor:
    """L_oap of Eq. 6, averaged over the batch: ``(1/N) sum_{x,y} prod_i a_i(x, y)``.

    Args:
        target_maps: ``(B, N, h, w)`` target-class CAMs ``M^i_t`` (see :func:`target_class_maps`).
        k: rank of the threshold in Eq. 5 (see :func:`activation_masks`).
        mode: ``"symmetric"`` (autograd through the product) or ``"ordered"`` (same value; branch ``i``
            gets the gradient of its overlap with branches ``< i`` only; see the module docstring).

    Returns:
        A scalar: the per-image penalty (a sum over ``h*w`` cells, so between 0 and ``h*w / N``)
        averaged over the ``B`` images.
    """
    if mode not in OAP_MODES:
        raise ValueError(f"OAP mode must be one of {OAP_MODES}, got {mode!r}")
    masks = activation_masks(target_maps, k)
    n = masks.shape[1]
    value = masks.prod(dim=1).sum(dim=(1, 2)).mean() / n
    if mode == "symmetric" or n == 1:
        return value
    # Ordered: a surrogate whose gradient is the prefix overlap; its value is swapped for Eq. 6's.
    prefix = masks[:, :1].detach()
    surrogate = masks.new_zeros(())
    for i in range(1, n):
        surrogate = surrogate + (masks[:, i] * prefix[:, 0]).sum(dim=(1, 2)).mean() / n
        prefix = prefix * masks[:, i : i + 1].detach()
    return value.detach() + surrogate - surrogate.detach()


class CamaLoss:
    """The CAMA objective, Eq. 7-8: ``L = sum_i CE(S^i, t) + alpha * L_oap``.

    Follows the Trainer's loss contract ``loss_fn(output, batch) -> (loss, logged terms)``. Reads the
    per-branch logits ``S^i`` ``(B, num_classes)``, feature maps ``F^i`` ``(B, C, h, w)`` and classifier
    weights ``output.class_weights`` (``W^i``, ``(num_classes, C)``) of a
    :class:`reidlib.models.cama.CAMA` output. Logs ``loss_id`` (the sum), ``loss_id_<i>`` (branch ``i``,
    from 1), ``loss_oap`` (Eq. 6, also when ``alpha = 0``) and ``loss`` (the total).

    Args:
        k: rank of the threshold of Eq. 5 on the model's ``h x w`` maps.
        alpha: weight of the penalty (the paper: 1). ``0`` gives "MltB + L_id" of Table 4.
        mode: ``"symmetric"`` or ``"ordered"`` (see :func:`overlapped_activation_penalty`).
        label_smoothing: passed to the cross-entropy (the paper: 0).

    With one branch there is nothing to overlap: the penalty is skipped and the loss is IDE+BN's.
    """

    def __init__(self, k: int, alpha: float = 1.0, mode: OapMode = "symmetric", label_smoothing: float = 0.0):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if mode not in OAP_MODES:
            raise ValueError(f"OAP mode must be one of {OAP_MODES}, got {mode!r}")
        self.k = k
        self.alpha = alpha
        self.mode = mode
        self.label_smoothing = label_smoothing

    def __call__(self, output: ReIDOutput, batch: dict) -> tuple[Tensor, dict[str, float]]:
        targets = batch["pid"]
        if not output.logits:
            raise ValueError("CamaLoss needs per-branch logits; the model output has none")
        id_losses = branch_cross_entropies(output.logits, targets, self.label_smoothing)
        loss_id = torch.stack(id_losses).sum()  # Eq. 7: summed over branches, not averaged
        logs = {"loss_id": float(loss_id.detach())}
        for i, li in enumerate(id_losses):
            logs[f"loss_id_{i + 1}"] = float(li.detach())
        total = loss_id
        if len(output.feature_maps) > 1:
            if not output.class_weights:
                raise ValueError("CamaLoss needs output.class_weights (each branch's (num_classes, C) "
                                 "classifier weight) to build the class activation maps of Eq. 4")
            maps = target_class_maps(output.feature_maps, output.class_weights, targets)
            loss_oap = overlapped_activation_penalty(maps, self.k, self.mode)
            logs["loss_oap"] = float(loss_oap.detach())
            if self.alpha > 0:
                total = total + self.alpha * loss_oap
        logs["loss"] = float(total.detach())
        return total, logs
