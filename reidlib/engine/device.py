"""Which device a run uses: ``"auto"`` picks CUDA when it is there."""

from __future__ import annotations

import torch

__all__ = ["check_device_name", "cpu_has_native_bf16", "resolve_device"]


def check_device_name(device: str, name: str = "device") -> str:
    """``device`` if it is a device string torch understands (``auto``, ``cpu``, ``cuda``, ``cuda:1``,
    ``mps``), without asking whether that device exists here.

    Raises:
        ValueError: anything else; the message names ``name`` (the field or option) and the value.
    """
    if device == "auto":
        return device
    try:
        torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{name}={device!r} is not a device; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
                         ) from err
    return device


def resolve_device(device: str, name: str = "device") -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; anything else as given, once checked to exist.

    Raises:
        ValueError: not a device string, or a CUDA device that is not available here (the message names
            ``name`` and the value).
    """
    check_device_name(device, name)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}={device!r} requested but CUDA is not available (use 'cpu' or 'auto')")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name}={device!r}: this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s), numbered from 0")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}={device!r} requested but MPS is not available (use 'cpu' or 'auto')")
    return dev


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 or AMX); without it bf16 autocast on
    the CPU is emulated and slower than float32. ``False`` where torch cannot tell."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False
