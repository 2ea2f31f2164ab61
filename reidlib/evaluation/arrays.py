"""Input conversion and validation shared by the evaluation modules.

Every public evaluation function accepts numpy arrays or torch tensors; these helpers turn them into
tensors (zero-copy for numpy on CPU) and raise a ``ValueError`` that names the argument when a shape or
dtype is wrong, or a :class:`NonFiniteError` (a ``ValueError``) that names the rows holding NaN or inf:
one such embedding would otherwise turn every distance, and every mean over them, into NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
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


# --------------------------------------------------------------------------------------------------
# Non-finite values


class NonFiniteError(ValueError):
    """NaN or inf where the evaluation needs finite numbers; the message names the argument and the
    offending rows (and columns, for distance matrices), so the culprit can be found."""


#: How many offending row or column indices an error message lists before summarising the rest.
MAX_LISTED = 10


def all_finite(x: torch.Tensor) -> bool:
    """Whether every entry of ``x`` is finite, in one reduction pass without a temporary mask.

    A sum is NaN or inf as soon as one entry is (``inf - inf`` is NaN), and it is 5-20x faster than
    ``isfinite(x).all()`` on CPU. A sum that overflows on finite entries gives a false alarm, which
    the exact search in :func:`check_finite` then clears.
    """
    if not x.is_floating_point() or x.numel() == 0:
        return True
    acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return bool(torch.isfinite(x.sum(dtype=acc)))


def _listing(indices: torch.Tensor, word: str, offset: int = 0, labels: Sequence[str] | None = None) -> str:
    """``"rows 3, 17"``, ``"row 3: a.jpg"`` or ``"rows 0, 1, ..., 9 and 5 more"``."""
    idx = indices.tolist()
    shown = idx[:MAX_LISTED]
    if labels is not None:
        items = [f"{word} {i + offset}: {labels[i]}" for i in shown]
        text = ", ".join(items)
    else:
        text = f"{word}{'s' if len(idx) > 1 else ''} " + ", ".join(str(i + offset) for i in shown)
    if len(idx) > MAX_LISTED:
        text += f" and {len(idx) - MAX_LISTED} more"
    return text


def _counted(indices: torch.Tensor, role: str, word: str, offset: int = 0) -> str:
    """``"2 query rows (rows 3, 17)"``."""
    n = indices.numel()
    return f"{n} {role} {word}{'s' if n > 1 else ''} ({_listing(indices, word, offset)})"


def _kind(values: torch.Tensor) -> str:
    has_nan, has_inf = bool(torch.isnan(values).any()), bool(torch.isinf(values).any())
    return "NaN and inf" if has_nan and has_inf else "NaN" if has_nan else "inf"


def check_finite(
    x: torch.Tensor,
    name: str,
    role: str,
    paths: Sequence[str] | None = None,
    offset: int = 0,
    hint: str = "distances to such rows would be NaN",
) -> None:
    """Raise :class:`NonFiniteError` if a row of ``x`` holds NaN or inf.

    Args:
        x: ``(N, D)`` embeddings (one row per image).
        name: the argument's name, which starts the message (``"q_feats"``).
        role: what a row is (``"query"``, ``"gallery"``, ``"image"``).
        paths: ``(N,)`` image path of each row of ``x``, named next to the offending rows.
        offset: index of ``x``'s first row in the whole set (for a chunk of a gallery).
        hint: why it matters, appended to the message.

    The message reads e.g. ``q_feats: 2 of 30 query rows hold NaN (rows 3, 17); distances to such
    rows would be NaN``. Only one reduction pass runs when ``x`` is finite.
    """
    if all_finite(x):
        return
    bad = ~torch.isfinite(x)
    if x.ndim > 1:
        bad = bad.flatten(1).any(1)
    rows = torch.nonzero(bad).squeeze(1).cpu()
    if rows.numel() == 0:  # the sum overflowed on finite values
        return
    n = rows.numel()
    kind = _kind(x[rows.to(x.device)])
    verb = "holds" if n == 1 else "hold"
    listed = _listing(rows, "row", offset, paths)
    raise NonFiniteError(
        f"{name}: {n} of {x.shape[0]} {role} rows {verb} {kind} ({listed})"
        + (f"; {hint}" if hint else "")
    )


def check_finite_distances(
    d: torch.Tensor,
    name: str,
    roles: tuple[str, str] = ("query", "gallery"),
    allow_posinf: bool = False,
    col_offset: int = 0,
) -> None:
    """Raise :class:`NonFiniteError` if the distance matrix ``d`` ``(R, C)`` holds NaN (or inf).

    Args:
        d: ``(R, C)`` distances.
        name: the argument's name (``"distmat"``, ``"blocks[2]"``).
        roles: what a row and a column are, named in the message.
        allow_posinf: ``+inf`` is a legitimate distance (it ranks last, e.g. to mask items out); NaN
            and ``-inf`` still raise.
        col_offset: index of ``d``'s first column in the whole gallery (for a block of columns).

    The message names the offending rows and columns, e.g. ``distmat: 1 distance is NaN, in 1 query
    row (row 4) and 1 gallery column (column 7)``. Only one reduction pass runs when ``d`` is fine.
    """
    if d.numel() == 0 or not d.is_floating_point():
        return
    if allow_posinf:
        # min is NaN as soon as one entry is, and -inf if one is; +inf entries leave it alone.
        if bool(d.amin() > -math.inf):
            return
        bad = torch.isnan(d) | (d == -math.inf)
    else:
        if all_finite(d):
            return
        bad = ~torch.isfinite(d)
    count = int(bad.sum())
    if count == 0:
        return
    rows = torch.nonzero(bad.any(1)).squeeze(1).cpu()
    cols = torch.nonzero(bad.any(0)).squeeze(1).cpu()
    kind = _kind(d[bad])
    if allow_posinf:
        kind = kind.replace("inf", "-inf")
    rule = "; +inf ranks last, but NaN and -inf have no rank" if allow_posinf else ""
    raise NonFiniteError(
        f"{name}: {count} distance{'s are' if count > 1 else ' is'} {kind}, in "
        f"{_counted(rows, roles[0], 'row')} and {_counted(cols, roles[1], 'column', col_offset)}{rule}; "
        "check the features they were computed from"
    )
