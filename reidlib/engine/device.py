"""Which device a run uses: ``"auto"`` picks CUDA when it is there."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; anything else as given.

    Raises:
        ValueError: a CUDA device was asked for but CUDA is not available.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available (use 'cpu' or 'auto')")
    return dev
