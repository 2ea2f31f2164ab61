"""The class activation map (Zhou et al., 2016) in the form of seed 000 (CAMA), Eq. 4.

For a model whose class scores are a bias-free linear layer over the global average pooling of feature
maps, ``S_c = sum_k W_{c,k} GAP(F_k)``, the score splits over spatial positions::

    M_c(x, y) = sum_k W_{c,k} F_k(x, y),        S_c = 1/(h w) sum_{x,y} M_c(x, y)      (seed 000, Eq. 4)

``M_c(x, y)`` is the part of the score of class ``c`` that the local feature at ``(x, y)`` contributes.
This is the one implementation: the Overlapped Activation Penalty (:mod:`reidlib.losses.oap`) trains on
it and the explainer (:mod:`reidlib.explain.cam`) draws it.

Models hand their classifier weights to both through
:attr:`reidlib.models.output.ReIDOutput.class_weights`, filled with :func:`bias_free_weights`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["bias_free_weights", "class_activation_map"]


def class_activation_map(feature_maps: Tensor, weight: Tensor, classes: Tensor | None = None) -> Tensor:
    """CAM of seed 000's Eq. 4: ``M_c(x, y) = sum_k W_{c,k} F_k(x, y)``.

    Args:
        feature_maps: ``(B, d, h, w)`` maps ``F`` whose global average pooling the classifier sees.
        weight: ``(C, d)`` classifier weights ``W`` (``nn.Linear.weight``, bias-free).
        classes: ``(B,)`` class of each sample, or ``None`` for the maps of all classes.

    Returns:
        ``(B, h, w)`` map of each sample's class, or ``(B, C, h, w)`` when ``classes`` is ``None``; in
        score units (their spatial mean is the class score ``S_c``). Differentiable in both inputs.

    Raises:
        ValueError: shapes that do not fit, or a class index outside ``0..C-1``.
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
    # Checked here because an out-of-range index on a GPU fails later as an opaque device assert.
    if bool(bad.any()):
        raise ValueError(
            f"class index {int(classes[bad][0])} out of range for a classifier with {num_classes} classes"
        )
    # Contracting the gathered rows (B, d) instead of all C maps: the loss needs one class per image.
    return torch.einsum("bdhw,bd->bhw", feature_maps, weight[classes])


def bias_free_weights(classifiers: Iterable[nn.Module]) -> list[Tensor]:
    """``ReIDOutput.class_weights``: the ``(C, d)`` weights of bias-free linear classifiers, one per branch.

    The weights are the parameters themselves (not copies), so a loss on their CAMs trains them.

    Raises:
        ValueError: a classifier that is not a bias-free ``nn.Linear`` (with a bias the spatial mean of
            ``M_c`` is no longer the score, so no CAM exists).
    """
    weights = []
    for i, layer in enumerate(classifiers):
        if not isinstance(layer, nn.Linear) or layer.bias is not None:
            raise ValueError(f"classifiers[{i}] must be a bias-free nn.Linear for class activation maps "
                             f"(got {layer!r})")
        weights.append(layer.weight)
    return weights
