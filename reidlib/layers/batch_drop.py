"""Batch DropBlock (Dai et al., ICCV 2019), the feature-dropping branch PMM (seed 004) builds on.

In training, one rectangle of the feature map, of fixed relative size and random position, is zeroed for
*every* image of the batch at once (hence "batch"): the same body region disappears from all samples, so
the branch has to find identity evidence elsewhere. At inference the layer is the identity. PMM replaces
the random rectangle with Grad-CAM-chosen blocks; BDB itself is the baseline it is compared against.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BatchDropBlock", "batch_drop_mask"]


def batch_drop_mask(
    height: int,
    width: int,
    height_ratio: float,
    width_ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """A ``(height, width)`` float mask of ones with one zero rectangle of size
    ``round(height_ratio * height) x round(width_ratio * width)`` (at least 1 x 1) at a uniformly random
    position fully inside the map."""
    for name, r in (("height_ratio", height_ratio), ("width_ratio", width_ratio)):
        if not 0.0 < r <= 1.0:
            raise ValueError(f"{name} must be in (0, 1], got {r}")
    rh = min(height, max(1, round(height_ratio * height)))
    rw = min(width, max(1, round(width_ratio * width)))
    top = int(torch.randint(0, height - rh + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - rw + 1, (1,), generator=generator))
    mask = torch.ones(height, width, device=device)
    mask[top : top + rh, left : left + rw] = 0.0
    return mask


class BatchDropBlock(nn.Module):
    """Zero the same random rectangle of ``(B, C, h, w)`` maps for the whole batch (training only).

    Args:
        height_ratio: rectangle height as a fraction of ``h`` (BDB uses 0.3 on 24x8 maps).
        width_ratio: rectangle width as a fraction of ``w`` (BDB uses 1.0: a full-width stripe).

    The mask of the last training call is kept in ``last_mask`` ``(h, w)`` for visualisation.
    """

    def __init__(self, height_ratio: float = 0.3, width_ratio: float = 1.0) -> None:
        super().__init__()
        for name, r in (("height_ratio", height_ratio), ("width_ratio", width_ratio)):
            if not 0.0 < r <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {r}")
        self.height_ratio = height_ratio
        self.width_ratio = width_ratio
        self.last_mask: Tensor | None = None

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"BatchDropBlock expects (B, C, h, w), got {tuple(x.shape)}")
        if not self.training:
            return x
        mask = batch_drop_mask(x.shape[2], x.shape[3], self.height_ratio, self.width_ratio, generator,
                               device=x.device)
        self.last_mask = mask
        return x * mask.to(x.dtype)

    def extra_repr(self) -> str:
        return f"height_ratio={self.height_ratio}, width_ratio={self.width_ratio}"
