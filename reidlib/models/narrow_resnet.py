"""Narrow, randomly initialised ResNets for the ``cpu`` scale of the chapters.

No ImageNet weights can be downloaded here, so every ``cpu`` run starts from random weights; a full-width
ResNet-50 is then both too slow on two CPU cores and pointless. :func:`narrow_resnet` builds a
torchvision-style ResNet of ``BasicBlock`` s (``stem``, ``layer1..layer4``, the attributes
:class:`reidlib.models.backbone.ResNetBackbone` exposes) whose stages have ``base_width * (1, 2, 4, 8)``
channels: a quarter-width ResNet-18 (``base_width=16``) needs about 1/16 of the multiply-adds.

Depths 10, 18 and 34 exist (1, 2 and 3-6 blocks per stage), so a chapter can scale a depth ablation
(seed 001, Table 3b: ResNet-50/101/152) down to 10/18/34.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["NARROW_DEPTHS", "narrow_resnet"]

#: BasicBlocks per stage of the ResNets :func:`narrow_resnet` can build.
NARROW_DEPTHS: dict[int, tuple[int, int, int, int]] = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def narrow_resnet(depth: int, base_width: int, last_stride: int = 2) -> nn.Module:
    """A randomly initialised ResNet of ``BasicBlock`` s with ``base_width * (1, 2, 4, 8)`` channels.

    Args:
        depth: 10, 18 or 34 (:data:`NARROW_DEPTHS`).
        base_width: channels of the stem and the first stage (64 = torchvision's width).
        last_stride: stride of stage 4 (2 as in torchvision, 1 as in PCB).

    Returns:
        A module with ``stem``, ``layer1..layer4`` and ``out_channels = 8 * base_width``; calling it maps
        ``(B, 3, H, W)`` to stage-4 maps ``(B, 8 * base_width, H/32, W/32)`` (``H/16`` with
        ``last_stride=1``; sizes round up).
    """
    from torchvision.models.resnet import BasicBlock

    if depth not in NARROW_DEPTHS:
        raise ValueError(f"narrow ResNets exist for depths {sorted(NARROW_DEPTHS)}, got {depth}")
    if base_width < 4:
        raise ValueError(f"base_width must be >= 4, got {base_width}")
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")

    def stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or cin != cout:
            down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        rest = [BasicBlock(cout, cout) for _ in range(blocks - 1)]
        return nn.Sequential(BasicBlock(cin, cout, stride, down), *rest)

    w, blocks = base_width, NARROW_DEPTHS[depth]
    net = _NarrowResNet()
    net.stem = nn.Sequential(nn.Conv2d(3, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                             nn.MaxPool2d(3, 2, 1))
    net.layer1 = stage(w, w, blocks[0], 1)
    net.layer2 = stage(w, 2 * w, blocks[1], 2)
    net.layer3 = stage(2 * w, 4 * w, blocks[2], 2)
    net.layer4 = stage(4 * w, 8 * w, blocks[3], last_stride)
    net.out_channels = 8 * w
    net.depth = depth
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


class _NarrowResNet(nn.Module):
    """Container of :func:`narrow_resnet` (``stem``, ``layer1..4``); ``forward`` gives stage-4 maps."""

    out_channels: int
    depth: int

    def forward(self, x: Tensor) -> Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
