"""Global pooling of feature maps ``(B, C, h, w)`` into vectors ``(B, C)``.

The papers pool differently: IDE/CAMA (seed 000) and PMM's first stage (seed 004) use global average
pooling (GAP); "Re-ID done right" (seed 001, Table 3a) and PMM's later stages use global max pooling
(GMP); GeM (Radenovic et al.) interpolates between the two with an exponent ``p``. One module,
:class:`GlobalPool`, picks the operation by name from the plain dict :data:`POOLINGS`.

Every operation takes an optional validity ``mask`` ``(B, 1, H, W)`` (True = real pixel) so that images
zero-padded to a common size by :func:`reidlib.data.transforms.pad_collate` (seed 001's variable-size
inputs) pool only over the cells that cover real pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["POOLINGS", "GeneralizedMeanPool", "GlobalPool", "global_avg_pool", "global_max_pool",
           "gem_pool", "resize_mask"]


def _check_maps(x: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"global pooling expects feature maps (B, C, h, w), got shape {tuple(x.shape)}")


def resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Bring an image-level validity mask ``(B, 1, H, W)`` to feature-map size ``(h, w)``.

    A feature cell counts as valid when the pixels it covers include at least one real pixel (area
    interpolation > 0), so a padded image never loses its last partial row or column.

    Returns:
        ``(B, 1, h, w)`` bool.
    """
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must have shape (B, 1, H, W), got {tuple(mask.shape)}")
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask.bool()
    return F.interpolate(mask.float(), size=size, mode="area") > 0


def _mask_for(x: Tensor, mask: Tensor | None) -> Tensor | None:
    if mask is None:
        return None
    if mask.shape[0] != x.shape[0]:
        raise ValueError(f"mask batch size {mask.shape[0]} does not match feature batch size {x.shape[0]}")
    return resize_mask(mask.to(x.device), (x.shape[2], x.shape[3]))


def global_avg_pool(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """GAP: mean over the (valid) spatial cells. ``(B, C, h, w) -> (B, C)``."""
    _check_maps(x)
    m = _mask_for(x, mask)
    if m is None:
        return x.mean(dim=(2, 3))
    m = m.to(x.dtype)
    return (x * m).sum(dim=(2, 3)) / m.sum(dim=(2, 3)).clamp_min(1.0)


def global_max_pool(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """GMP: maximum over the (valid) spatial cells. ``(B, C, h, w) -> (B, C)``."""
    _check_maps(x)
    m = _mask_for(x, mask)
    if m is None:
        return x.amax(dim=(2, 3))
    return x.masked_fill(~m, float("-inf")).amax(dim=(2, 3))


def gem_pool(x: Tensor, p: Tensor | float = 3.0, eps: float = 1e-6, mask: Tensor | None = None) -> Tensor:
    """GeM: ``(mean_{x,y} max(x, eps)^p)^(1/p)`` per channel; ``p=1`` is GAP, ``p -> inf`` tends to GMP.

    ``(B, C, h, w) -> (B, C)``. Inputs are clamped at ``eps`` because a fractional power of a negative
    number is undefined (ResNet maps are post-ReLU, so this changes nothing there).
    """
    _check_maps(x)
    return global_avg_pool(x.clamp_min(eps).pow(p), mask).pow(1.0 / p)


class GeneralizedMeanPool(nn.Module):
    """GeM pooling as a module; ``learnable=True`` makes ``p`` a trained parameter."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = False) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM exponent p must be > 0, got {p}")
        p_tensor = torch.tensor(float(p))
        if learnable:
            self.p = nn.Parameter(p_tensor)
        else:
            self.register_buffer("p", p_tensor)
        self.eps = eps

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return gem_pool(x, self.p, self.eps, mask)

    def extra_repr(self) -> str:
        return f"p={float(self.p):.3g}, eps={self.eps}, learnable={isinstance(self.p, nn.Parameter)}"


POOLINGS: dict[str, Callable[..., nn.Module | Callable[..., Tensor]]] = {
    "avg": lambda **kw: global_avg_pool,
    "max": lambda **kw: global_max_pool,
    "gem": lambda **kw: GeneralizedMeanPool(**kw),
}
"""Name -> factory of a pooling callable ``(x, mask=None) -> (B, C)``. Keyword args go to GeM only."""


class GlobalPool(nn.Module):
    """Global pooling chosen by ``mode`` (a key of :data:`POOLINGS`: ``"avg"``, ``"max"``, ``"gem"``).

    ``forward(x, mask=None)``: ``x`` ``(B, C, h, w)``, optional ``mask`` ``(B, 1, H, W)`` -> ``(B, C)``.
    Extra keyword arguments (``p``, ``eps``, ``learnable``) configure GeM.
    """

    def __init__(self, mode: str = "avg", **kwargs: float | bool) -> None:
        super().__init__()
        if mode not in POOLINGS:
            raise ValueError(f"unknown pooling mode {mode!r}; expected one of {sorted(POOLINGS)}")
        if kwargs and mode != "gem":
            raise ValueError(f"pooling mode {mode!r} takes no options, got {sorted(kwargs)}")
        self.mode = mode
        # nn.Module registers GeM as a submodule (so a learnable p is trained and saved); a plain
        # function is kept as an ordinary attribute.
        self.op = POOLINGS[mode](**kwargs)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.op(x, mask)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
