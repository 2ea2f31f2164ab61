"""Class activation maps (Zhou et al., 2016), as used by seed 000 (CAMA), Eq. 4.

For a model whose class scores are a linear layer over the global average pooling of feature maps,
``S_c = sum_k W_{c,k} GAP(F_k)``, the score splits over spatial positions:

    M_c(x, y) = sum_k W_{c,k} F_k(x, y),        S_c = 1/(h w) sum_{x,y} M_c(x, y)      (seed 000, Eq. 4)

``M_c(x, y)`` is the part of the score of class ``c`` that the local feature at ``(x, y)`` contributes.
For IDE+BN the BatchNorm is moved onto the maps (seed 000, Eq. 3), so ``F`` is the map after BN.

reidlib's models expose ``model.classifiers`` (one bias-free ``nn.Linear`` per branch) whose input is
``GAP(output.feature_maps[i])``; :func:`model_cam` checks that this holds on the batch it explains,
because a map computed from the wrong tensor would still look plausible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reidlib.explain.model_state import as_batch, explaining, forward, model_device

__all__ = ["class_activation_maps", "CAMResult", "model_cam", "classifier_weights"]


def class_activation_maps(feature_maps: Tensor, weight: Tensor, classes: Tensor | None = None) -> Tensor:
    """CAM of seed 000's Eq. 4: ``M_c(x, y) = sum_k W_{c,k} F_k(x, y)``.

    Args:
        feature_maps: ``(B, d, h, w)`` maps ``F`` whose global average pooling the classifier sees.
        weight: ``(C, d)`` classifier weights ``W`` (``nn.Linear.weight``, bias-free).
        classes: ``(B,)`` class of each sample, or ``None`` for the maps of all classes.

    Returns:
        ``(B, h, w)`` map of each sample's class, or ``(B, C, h, w)`` when ``classes`` is ``None``;
        in score units (their spatial mean is the class score).
    """
    if feature_maps.dim() != 4:
        raise ValueError(f"feature_maps must be (B, d, h, w); got {tuple(feature_maps.shape)}")
    if weight.dim() != 2 or weight.shape[1] != feature_maps.shape[1]:
        raise ValueError(
            f"classifier weight must be (num_classes, d={feature_maps.shape[1]}); got {tuple(weight.shape)}"
        )
    if classes is None:
        return torch.einsum("cd,bdhw->bchw", weight, feature_maps)
    classes = torch.as_tensor(classes, device=weight.device).long().reshape(-1)
    if classes.numel() != feature_maps.shape[0]:
        raise ValueError(f"need one class per sample ({feature_maps.shape[0]}); got {classes.numel()}")
    num_classes = weight.shape[0]
    bad = (classes < 0) | (classes >= num_classes)
    if bool(bad.any()):
        raise ValueError(
            f"class index {int(classes[bad][0])} out of range for a classifier with {num_classes} classes"
        )
    return torch.einsum("bd,bdhw->bhw", weight[classes], feature_maps)


def classifier_weights(model: nn.Module, num_branches: int) -> list[Tensor]:
    """The ``(C, d)`` weights of ``model.classifiers``, checked against reidlib's CAM contract."""
    classifiers = getattr(model, "classifiers", None)
    if not isinstance(classifiers, nn.ModuleList):
        raise ValueError(
            f"{type(model).__name__} has no `classifiers` nn.ModuleList; CAM needs one bias-free nn.Linear "
            "per branch over GAP(feature_maps[i])"
        )
    if len(classifiers) != num_branches:
        raise ValueError(
            f"{type(model).__name__} has {len(classifiers)} classifiers but returns {num_branches} "
            "feature maps; CAM needs one classifier per branch"
        )
    weights = []
    for i, layer in enumerate(classifiers):
        if not isinstance(layer, nn.Linear) or layer.bias is not None:
            raise ValueError(
                f"classifiers[{i}] of {type(model).__name__} must be a bias-free nn.Linear for CAM "
                f"(got {layer!r})"
            )
        weights.append(layer.weight)
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
        model: a reidlib model (``ReIDOutput`` with ``feature_maps`` and ``model.classifiers``).
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
        weights = classifier_weights(model, len(output.feature_maps))
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
                        f"branch {i}: classifiers[{i}](GAP(feature_maps[{i}])) differs from logits[{i}]; "
                        "the model does not follow the CAM contract (a BN or other layer sits between "
                        "the pooled maps and the classifier?)"
                    )
            cam = class_activation_maps(fmap, weight, classes)
            maps.append(cam)
            scores.append(cam.mean(dim=(1, 2)))
        return CAMResult(maps=maps, classes=classes, scores=scores)
