"""Spatial and channel attention of the hybrid-attention network (seed 003, Sec. 3.2, Eq. 1-2, Fig. 3-4).

The paper calls its two modules SAM and CAM; in reidlib "CAM" is the class activation map of seed 000
(:mod:`reidlib.layers.cam`), so the modules are named for what they are:

* :class:`SpatialAttention` (the paper's SAM, Eq. 1): "where" to look. The channel-wise average and
  maximum of the maps ``F`` ``(B, C, H, W)`` are two ``(B, 1, H, W)`` maps; they are concatenated, a
  convolution ``f`` maps the pair to one channel and a sigmoid gives ``M_S(F) = sigma(f([avg; max]))``
  ``(B, 1, H, W)``, which multiplies every channel.
* :class:`ChannelAttention` (the paper's CAM, Eq. 2): "which" channels. The global average and maximum
  over space are two descriptors ``(B, C)``; ONE multi-layer perceptron ``C -> C/r -> C`` (ReLU between)
  is applied to each, the two outputs are summed and a sigmoid gives ``M_C(F)`` ``(B, C, 1, 1)``, which
  multiplies every location.

**What the paper leaves open, and what we chose.**

1. *Kernel size and reduction.* The paper gives neither. Its public repository contains generic CBAM
   modules (unused by its released model) with a 7x7 spatial convolution and a channel reduction of 16;
   those are the defaults here (``kernel_size=7``, ``reduction=16``).
2. *Order of the two maps in Eq. 1.* The equation's first line concatenates ``[AvgPool(F) <- MaxPool(F)]``
   (average first), its second line ``[F_max <- F_avg]`` (max first). The order only permutes the two
   input channels of ``f``, so both describe the same family of functions; we concatenate average then
   maximum, as the first line (and the public code's generic module) does.
3. *Eq. 2 as printed* applies ``f_multi`` to the sum ``AvgPool(F) + MaxPool(F)``. Because the MLP is
   non-linear (ReLU) that is not the same as summing the MLP's outputs, and it would leave nothing for the
   MLP to be "shared" between. The text says the two descriptors go "through a shared multi-layer
   perception", which is the CBAM form ``sigma(MLP(avg) + MLP(max))``; that is what we implement.
4. *Biases.* Neither the convolution of Eq. 1 nor the MLP of Eq. 2 has a stated bias; both are bias-free
   by default (as in CBAM), and ``bias=True`` adds them.
5. *Narrow widths.* The hidden width is ``max(1, C // r)``, so a 16-channel stage of the ``cpu`` scale
   still has a (one-unit) bottleneck instead of an empty layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ChannelAttention", "SpatialAttention"]


def _check_maps(x: Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} expects feature maps (B, C, H, W), got shape {tuple(x.shape)}")


class SpatialAttention(nn.Module):
    """Spatial attention, the paper's SAM (seed 003, Eq. 1, Fig. 3).

    ``M_S(F) = sigma(f([mean_c F; max_c F]))``: ``(B, C, H, W) -> (B, 1, H, W)`` in ``(0, 1)``; the
    convolution ``f`` has ``2`` input channels, ``1`` output channel, ``kernel_size`` and the padding that
    keeps ``H x W``. Independent of ``C``, so one module can act on any stage or on the fused map.

    Args:
        kernel_size: odd size of ``f`` (7: the public code's generic module; the paper gives none).
        bias: give ``f`` a bias (the paper does not say; CBAM has none).

    ``forward(x)`` returns ``x * M_S(x)`` ``(B, C, H, W)``; :meth:`attention_map` returns ``M_S(x)``.
    """

    def __init__(self, kernel_size: int = 7, bias: bool = False) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int (so padding keeps the size), "
                             f"got {kernel_size}")
        self.kernel_size = kernel_size
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=bias)

    def descriptors(self, x: Tensor) -> Tensor:
        """The two context maps of Eq. 1, concatenated: ``(B, C, H, W) -> (B, 2, H, W)``, channel 0 the
        mean over channels, channel 1 the maximum."""
        _check_maps(x, "SpatialAttention")
        return torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)

    def attention_map(self, x: Tensor) -> Tensor:
        """``M_S(x)`` of Eq. 1: ``(B, C, H, W) -> (B, 1, H, W)``, values in ``(0, 1)``."""
        return torch.sigmoid(self.conv(self.descriptors(x)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.attention_map(x)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, bias={self.conv.bias is not None}"


class ChannelAttention(nn.Module):
    """Channel attention, the paper's CAM (seed 003, Eq. 2, Fig. 4).

    ``M_C(F) = sigma(MLP(AvgPool(F)) + MLP(MaxPool(F)))``: ``(B, C, H, W) -> (B, C, 1, 1)`` in ``(0, 1)``,
    with one MLP ``Linear(C, C') -> ReLU -> Linear(C', C)``, ``C' = max(1, C // reduction)``, shared by
    both descriptors (module docstring, reading 3).

    Args:
        channels: ``C``.
        reduction: ``r`` (16: the public code's generic module; the paper gives none).
        bias: give the MLP's layers biases (the paper does not say; CBAM has none).

    ``forward(x)`` returns ``x * M_C(x)`` ``(B, C, H, W)``; :meth:`attention_map` returns ``M_C(x)``.
    """

    def __init__(self, channels: int, reduction: int = 16, bias: bool = False) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        self.channels = channels
        self.reduction = reduction
        self.hidden = max(1, channels // reduction)  # reading 5: never an empty bottleneck
        self.mlp = nn.Sequential(
            nn.Linear(channels, self.hidden, bias=bias),
            nn.ReLU(inplace=True),
            nn.Linear(self.hidden, channels, bias=bias),
        )

    def descriptors(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(F_avg, F_max)`` of Eq. 2: the spatial mean and maximum, ``(B, C)`` each."""
        _check_maps(x, "ChannelAttention")
        if x.shape[1] != self.channels:
            raise ValueError(f"ChannelAttention was built for {self.channels} channels, got {x.shape[1]}")
        return x.mean(dim=(2, 3)), x.amax(dim=(2, 3))

    def attention_map(self, x: Tensor) -> Tensor:
        """``M_C(x)`` of Eq. 2: ``(B, C, H, W) -> (B, C, 1, 1)``, values in ``(0, 1)``."""
        avg, mx = self.descriptors(x)
        logits = self.mlp(avg) + self.mlp(mx)
        return torch.sigmoid(logits)[:, :, None, None]

    def forward(self, x: Tensor) -> Tensor:
        return x * self.attention_map(x)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reduction={self.reduction}, hidden={self.hidden}"
