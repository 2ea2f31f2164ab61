"""Input conversion and validation shared by the evaluation modules.

Every public evaluation function accepts numpy arrays or torch tensors; these helpers turn them into
tensors (zero-copy for numpy on CPU) and raise a ``ValueError`` that names the argument when a shape or
dtype is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

ArrayLike = Any  # numpy.ndarray | torch.Tensor | sequence of numbers

# CPU tensors take numpy/scipy fast paths where those beat torch's CPU kernels. The tests switch this
# off to run the pure-torch code that CUDA tensors take, on the CPU.
NUMPY_FAST_PATHS = True


def use_numpy(t: torch.Tensor) -> bool:
    """Whether ``t`` should go through the numpy/scipy fast path (CPU tensors, switch on)."""
    return NUMPY_FAST_PATHS and t.device.type == "cpu"


def as_tensor(x: ArrayLike, name: str, device: torch.device | str | None = None) -> torch.Tensor:
    """``x`` as a tensor (numpy arrays are shared, not copied, when they stay on the CPU)."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, np.ndarray):
        if x.dtype == object:
            raise ValueError(f"{name}: expected a numeric array, got dtype=object")
        t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: expected an array or tensor, got {type(x).__name__}") from err
    if device is not None:
        t = t.to(device)
    return t


def as_float_matrix(x: ArrayLike, name: str, device: torch.device | str | None = None) -> torch.Tensor:
    """A 2-D floating tensor; integer inputs become float64 (exact below 2**53)."""
    t = as_tensor(x, name, device)
    if t.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D matrix, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name}: expected real numbers, got dtype {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    return t


def as_id_vector(
    x: ArrayLike, name: str, length: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """A 1-D int64 tensor of ``length`` identity or camera labels."""
    t = as_tensor(x, name, device)
    if t.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D vector, got shape {tuple(t.shape)}")
    if t.numel() != length:
        raise ValueError(f"{name}: expected {length} labels (one per row/column), got {t.numel()}")
    if t.is_floating_point():
        if not torch.equal(t, t.round()):
            raise ValueError(f"{name}: labels must be integers, got non-integer values")
    elif t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name}: labels must be integers, got dtype {t.dtype}")
    return t.to(torch.int64)


def like_input(result: torch.Tensor, reference: ArrayLike) -> ArrayLike:
    """``result`` as a numpy array when ``reference`` was one, else as a tensor."""
    if isinstance(reference, torch.Tensor):
        return result
    return result.cpu().numpy()


@contextmanager
def cpu_threads(n: int, device: torch.device) -> Iterator[None]:
    """Limit torch's intra-op CPU threads to ``n`` inside the block (no-op for CUDA), then restore.

    The evaluation code does its heavy CPU passes in numpy; the torch operations in between work on
    small arrays where OpenMP's start-up costs more than it saves, and on a shared machine an
    oversubscribed thread pool can make them 10x slower.
    """
    if device.type != "cpu" or torch.get_num_threads() <= n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
