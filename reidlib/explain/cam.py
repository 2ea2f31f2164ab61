"""Class activation maps (Zhou et al., 2016), as used by seed 000 (CAMA), Eq. 4.

For a model whose class scores are a linear layer over the global average pooling of feature maps,
``S_c = sum_k W_{c,k} GAP(F_k)``, the score splits over spatial positions:

    M_c(x, y) = sum_k W_{c,k} F_k(x, y),        S_c = 1/(h w) sum_{x,y} M_c(x, y)      (seed 000, Eq. 4)

``M_c(x, y)`` is the part of the score of class ``c`` that the local feature at ``(x, y)`` contributes.
For IDE+BN the BatchNorm is moved onto the maps (seed 000, Eq. 3), so ``F`` is the map after BN.
:func:`class_activation_maps` is the library's one CAM, :func:`reidlib.layers.cam.class_activation_map`
(the OAP loss trains on the same function).

reidlib's models return ``output.class_weights`` (per branch the ``(C, d)`` weight of a bias-free
classifier) whose input should be ``GAP(output.feature_maps[i])``; :func:`model_cam` checks that this holds
on the batch it explains, because a map computed from the wrong tensor would still look plausible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reidlib.explain.model_state import as_batch, explaining, forward, model_device
from reidlib.layers.cam import class_activation_map
from reidlib.models.output import ReIDOutput

__all__ = ["class_activation_maps", "CAMResult", "model_cam", "classifier_weights"]

#: ``class_activation_maps(feature_maps (B, d, h, w), weight (C, d), classes (B,) | None)``: seed 000's
#: Eq. 4, ``(B, h, w)`` (or ``(B, C, h, w)`` for every class); see
#: :func:`reidlib.layers.cam.class_activation_map`.
class_activation_maps = class_activation_map


def classifier_weights(output: ReIDOutput, model_name: str = "the model") -> list[Tensor]:
    """The ``(C, d_i)`` class weights of every branch (``output.class_weights``), checked against the maps.

    Raises:
        ValueError: the output has no class weights (no classifier), not one per branch of
            ``feature_maps``, or weights whose ``d`` differs from the maps' channels.
    """
    weights = list(output.class_weights)
    if not weights:
        raise ValueError(
            f"{model_name} returned no class_weights; CAM needs the weights of its classifiers (one "
            "bias-free nn.Linear per branch over GAP(feature_maps[i]), in ReIDOutput.class_weights)"
        )
    if len(weights) != len(output.feature_maps):
        raise ValueError(
            f"{model_name} returns {len(weights)} class_weights but {len(output.feature_maps)} feature maps; "
            "CAM needs one classifier per branch"
        )
    for i, (weight, fmap) in enumerate(zip(weights, output.feature_maps, strict=True)):
        if weight.dim() != 2 or weight.shape[1] != fmap.shape[1]:
            raise ValueError(f"class_weights[{i}] of {model_name} is {tuple(weight.shape)}; the classifier "
                             f"over feature_maps[{i}] {tuple(fmap.shape)} must be (C, {fmap.shape[1]})")
    return weights


@dataclass
class CAMResult:
    """CAMs of one batch.

    Attributes:
        maps: per branch, ``(B, h_i, w_i)`` map of each sample's class (score units, Eq. 4).
        classes: ``(B,)`` the class each map explains.
        scores: per branch, ``(B,)`` the class score ``S^i_c`` (the spatial mean of ``maps[i]``).
    """

    maps: list[Tensor]
    classes: Tensor
    scores: list[Tensor]

    def combined(self) -> Tensor:
        """``(B, h, w)`` sum of the branches' maps: the CAM of the summed score ``sum_i S^i_c``."""
        sizes = {tuple(m.shape[1:]) for m in self.maps}
        if len(sizes) != 1:
            raise ValueError(f"branch maps have different sizes {sorted(sizes)}; they cannot be summed")
        return torch.stack(self.maps).sum(dim=0)


@torch.no_grad()
def model_cam(
    model: nn.Module,
    images: Tensor,
    classes: Tensor | None = None,
    *,
    check: bool = True,
    rtol: float = 1e-3,
) -> CAMResult:
    """CAM of every branch of a reidlib model for a batch of images (seed 000, Eq. 4; Fig. 1c).

    Args:
        model: a reidlib model (``ReIDOutput`` with ``feature_maps`` and ``class_weights``).
        images: ``(B, 3, H, W)`` normalised images (or one ``(3, H, W)``), any device.
        classes: ``(B,)`` classes to explain (training identities, ``0..C-1``); ``None`` takes the
            class with the highest summed score ``sum_i S^i``, so all branches explain the same class
            (as in the paper, where every branch is shown for the target class).
        check: verify that the classifier sees ``GAP(feature_maps[i])``, i.e. that the spatial mean of
            the maps equals the model's logits (relative tolerance ``rtol``).

    Returns:
        :class:`CAMResult` on the model's device. The model's mode, hooks and gradients are unchanged.
    """
    with explaining(model):
        device = model_device(model)
        output = forward(model, as_batch(images, device))
        weights = classifier_weights(output, type(model).__name__)
        if classes is None:
            if not output.logits:
                raise ValueError(f"{type(model).__name__} returned no logits; pass `classes` explicitly")
            classes = torch.stack(output.logits).sum(dim=0).argmax(dim=1)
        classes = torch.as_tensor(classes, device=device).long().reshape(-1)
        maps, scores = [], []
        for i, (fmap, weight) in enumerate(zip(output.feature_maps, weights, strict=True)):
            if check and output.logits:
                pooled = fmap.mean(dim=(2, 3)) @ weight.T
                logits = output.logits[i]
                tol = rtol * logits.abs().max().clamp_min(1e-6)
                if pooled.shape != logits.shape or not bool(((pooled - logits).abs() <= tol).all()):
                    raise ValueError(
                        f"branch {i}: GAP(feature_maps[{i}]) @ class_weights[{i}].T differs from "
                        f"logits[{i}]; "
                        "the model does not follow the CAM contract (a BN or other layer sits between "
                        "the pooled maps and the classifier?)"
                    )
            cam = class_activation_maps(fmap, weight, classes)
            maps.append(cam)
            scores.append(cam.mean(dim=(1, 2)))
        return CAMResult(maps=maps, classes=classes, scores=scores)
