"""BatchNorm statistics held fixed, or estimated once, outside the usual training mode.

Seed 001 trains its ranking stage one triplet per forward pass, where batch statistics are meaningless:
the BN layers keep the statistics of the pre-trained network (:func:`set_bn_eval`, or the
:class:`FrozenBatchNorm` callback in the engine's training loop) while their affine parameters still
train. A network that starts from random weights first gets statistics estimated on training images
(:func:`calibrate_bn`), the role ImageNet statistics play in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from reidlib.engine.callbacks import Callback
from reidlib.engine.extract import size_groups

if TYPE_CHECKING:
    from reidlib.engine.trainer import Trainer

__all__ = ["FrozenBatchNorm", "calibrate_bn", "set_bn_eval"]


def _batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def set_bn_eval(model: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode (fixed running statistics); other layers keep their mode."""
    for m in _batch_norms(model):
        m.eval()


@torch.no_grad()
def calibrate_bn(model: nn.Module, images: Sequence[Tensor], batch_size: int = 64) -> None:
    """Re-estimate every BN layer's running statistics as the plain average over ``images`` (each
    ``(3, H, W)``, any sizes: equal sizes are batched together), in training mode without gradients;
    weights are untouched, and the model's mode and the layers' momenta are restored."""
    if len(images) == 0:
        raise ValueError("calibrate_bn: no images")
    bns = _batch_norms(model)
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    was_training = model.training
    model.train()
    device = next(model.parameters()).device
    try:
        for _, idx in size_groups(images, batch_size):
            model(torch.stack([images[i] for i in idx]).to(device))
    finally:
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom
        model.train(was_training)


class FrozenBatchNorm(Callback):
    """Trainer callback: the BN layers of the trained model stay in eval mode at every optimizer step
    (the trainer puts the model in training mode each epoch, and extraction in a hook restores it)."""

    def on_step_start(self, trainer: Trainer, step: int) -> None:
        set_bn_eval(trainer.model)
