"""Run a model for an explanation without leaving a trace on it.

Every explainer in :mod:`reidlib.explain` runs the model through :func:`explaining` so that, after it
returns, the model's train/eval flags, its hooks and its parameters' gradients are exactly as they
were: explanations are made in the middle of a training run (a notebook shows a CAM after epoch 5)
and must not change it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn

from reidlib.models.output import ReIDOutput

__all__ = ["explaining", "model_device", "forward", "as_batch", "run", "to_numpy"]


@contextmanager
def explaining(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block, then restore every submodule's own training flag.

    Eval mode matters for the maths, not only for speed: with BatchNorm in training mode the samples
    of a batch interact, so a per-sample explanation computed on a batch would depend on the batch.
    """
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without either)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def as_batch(images: Tensor, device: torch.device) -> Tensor:
    """Check a batch of images ``(B, 3, H, W)`` (or one ``(3, H, W)`` image) and move it to ``device``."""
    if not isinstance(images, Tensor):
        raise TypeError(f"expected a tensor of images (B, 3, H, W); got {type(images).__name__}")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W) or (3, H, W); got {tuple(images.shape)}")
    return images.to(device=device, dtype=torch.float32)


def forward(model: nn.Module, images: Tensor) -> ReIDOutput:
    """``model(images)``, checking that it follows reidlib's output contract."""
    output = model(images)
    if not isinstance(output, ReIDOutput):
        raise TypeError(
            f"{type(model).__name__} returned {type(output).__name__}; reidlib.explain needs models that "
            "return reidlib.models.output.ReIDOutput"
        )
    if not output.feature_maps:
        raise ValueError(f"{type(model).__name__} returned no feature_maps; CAM/RAM/Grad-CAM need them")
    return output


def to_numpy(tensor: Tensor) -> np.ndarray:
    """Detached float32 numpy copy of a tensor on any device."""
    return tensor.detach().float().cpu().numpy()


@torch.no_grad()
def run(model: nn.Module, images: Tensor) -> ReIDOutput:
    """One gradient-free forward pass in eval mode (model left as it was); the output is on the model's
    device."""
    with explaining(model):
        return forward(model, as_batch(images, model_device(model)))
