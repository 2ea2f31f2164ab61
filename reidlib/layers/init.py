"""Weight initialisation helpers for the layers reidlib adds on top of a pretrained backbone.

Use with ``module.apply(...)``. The backbone keeps its ImageNet weights; new heads (reduction blocks,
necks, classifiers) are initialised here so every model starts the same way.
"""

from __future__ import annotations

from torch import nn

__all__ = ["init_classifier", "init_kaiming"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


def init_kaiming(module: nn.Module) -> None:
    """He-normal init for conv/linear weights (ReLU gain), zero biases, unit-scale normalisation layers.

    Convolutions use ``fan_in`` (the ResNet convention); linear layers use ``fan_out``, which keeps
    the activations of wide-to-narrow reduction layers (2048 -> 512) from shrinking.
    """
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, a=0.0, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.kaiming_normal_(module.weight, a=0.0, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, _NORMS) and getattr(module, "weight", None) is not None:
        nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def init_classifier(module: nn.Module, std: float = 0.001) -> None:
    """Small-normal init for identity classifiers: weights ``N(0, std^2)``, biases zero.

    Small weights make the first softmax nearly uniform, so the randomly initialised classifier does
    not send large gradients into the pretrained backbone in the first iterations.
    """
    if std <= 0:
        raise ValueError(f"classifier init std must be > 0, got {std}")
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
