"""CAMA: Class Activation Maps Augmentation (seed 000, Yang et al., CVPR 2019, Sec. 3, Fig. 2).

A ResNet whose stem and stages 1-3 are shared and whose stage 4 is copied ``N`` times (the copies do
not share parameters). The last stride is removed as in PCB, so a 256x128 image gives 16x8 maps.
Branch ``i`` then does

* ``F^i = BN^i(T^i)``: a batch norm applied to every location of the stage-4 maps ``T^i`` (Eq. 3);
* ``f^i = GAP(F^i)`` and ``S^i = W^i f^i`` with a bias-free linear classifier ``W^i`` (Eq. 3-4);
* ``M^i_c(x, y) = sum_k W^i_{c,k} F^i_k(x, y)``, the class activation map (Eq. 4), so that
  ``S^i = GAP(M^i)`` exactly; the Overlapped Activation Penalty (:mod:`reidlib.losses.oap`) builds it
  with :func:`reidlib.layers.cam.class_activation_map` from ``feature_maps`` and ``class_weights``.

Each branch's head is IDE+BN's (:mod:`reidlib.layers.heads`).

At test time the descriptor is ``[f^1/|f^1|; ...; f^N/|f^N|]`` (Sec. 3.3). With ``N = 1`` the model is
the IDE+BN baseline of Eq. 2-3.

**BN before or after GAP.** Eq. 3 swaps ``BN(GAP(T))`` for ``GAP(BN(T))``, arguing both are linear.
That holds at inference, where BN is a fixed per-channel affine map and commutes with averaging. In
training they differ: the per-location BN (``BatchNorm2d`` on ``T``) estimates each channel's variance
over ``B*h*w`` cells, which includes the spatial spread inside each image, while BN after GAP
(``BatchNorm1d`` on ``GAP(T)``) sees only the ``B`` pooled values, whose variance is smaller. The
means are identical; the scales (and so the gradients and learned ``gamma``) are not. We use the
per-location BN, because it is what Fig. 2 draws and what makes ``F`` -- the tensor the CAMs are
built from -- the normalised map itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidlib.layers.cam import bias_free_weights
from reidlib.layers.heads import bn_gap_classify, make_bn_gap_heads
from reidlib.models.backbone import FULL_WIDTH, STAGE_NAMES, build_backbone, clone_stage
from reidlib.models.output import ReIDOutput

__all__ = ["CAMA", "descriptor", "select_branches"]


class CAMA(nn.Module):
    """Multi-branch CAMA model (Fig. 2); ``num_branches = 1`` is IDE+BN.

    Args:
        num_classes: training identities ``C``.
        num_branches: ``N``, copies of stage 4 (>= 1).
        depth: ResNet depth (18, 34, 50, ... at width 64; 10, 18, 34 narrower).
        width: backbone width: 64 = torchvision's ResNet, less = a random narrow ResNet (the ``cpu``
            scale); see :func:`reidlib.models.backbone.build_backbone`.
        last_stride: stride of stage 4; 1 as in PCB (16x8 maps at 256x128), 2 for the plain ResNet.
        pretrained: ``False``, ``True`` (torch's hub cache) or a weights file (never downloads).
        allow_random_init: continue from random weights (with a warning) when ``pretrained`` is missing.
        test_branches: branches (0-based) whose features form ``embedding``; ``None`` = all (Table 5
            compares the 1st, 1st+2nd and all).
        backbone: an already built backbone (``stem``, ``layer1..layer4`` and an int ``out_channels``,
            as :func:`~reidlib.models.backbone.build_backbone` makes); when given, ``depth``, ``width``,
            ``last_stride`` and ``pretrained`` are ignored.

    ``forward(x)`` with ``x`` of shape ``(B, 3, H, W)`` returns a :class:`ReIDOutput` with, per branch,
    ``logits`` ``(B, C)``, ``features`` ``f^i`` ``(B, d)``, ``feature_maps`` ``F^i`` ``(B, d, h, w)`` and
    ``class_weights`` ``W^i`` ``(C, d)``; ``embedding`` ``(B, d * len(test_branches))``.
    """

    def __init__(
        self,
        num_classes: int,
        num_branches: int = 3,
        *,
        depth: int = 50,
        width: int = FULL_WIDTH,
        last_stride: int = 1,
        pretrained: bool | str | os.PathLike = False,
        allow_random_init: bool = False,
        test_branches: Sequence[int] | None = None,
        backbone: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if num_branches < 1:
            raise ValueError(f"num_branches must be >= 1, got {num_branches}")
        if backbone is None:
            backbone = build_backbone(depth, width, pretrained=pretrained, last_stride=last_stride,
                                      allow_random_init=allow_random_init)
        for name in STAGE_NAMES:
            if not isinstance(getattr(backbone, name, None), nn.Module):
                raise ValueError(f"backbone must expose .{name} (a ResNet split into stages)")
        if not isinstance(getattr(backbone, "out_channels", None), int):
            raise ValueError("backbone must have an int attribute out_channels (its stage-4 channels)")
        self.num_classes = num_classes
        self.num_branches = num_branches
        self.shared = nn.Sequential(backbone.stem, backbone.layer1, backbone.layer2, backbone.layer3)
        # Every copy starts from the same (pretrained or random) stage-4 weights, as in the paper.
        self.branches = nn.ModuleList(
            [backbone.layer4] + [clone_stage(backbone.layer4) for _ in range(num_branches - 1)]
        )
        self.feat_dim = backbone.out_channels
        bns, classifiers = make_bn_gap_heads(self.feat_dim, num_classes, num_branches)
        self.bns = bns
        self.classifiers = classifiers
        self.test_branches: list[int] = list(range(num_branches))
        if test_branches is not None:
            self.set_test_branches(test_branches)

    def set_test_branches(self, branches: Sequence[int]) -> None:
        """Choose which branches (0-based, in order) make up ``embedding`` (Table 5)."""
        branches = list(branches)
        if not branches or any(not 0 <= b < self.num_branches for b in branches):
            raise ValueError(f"test branches must be a non-empty subset of 0..{self.num_branches - 1}, "
                             f"got {branches}")
        if len(set(branches)) != len(branches):
            raise ValueError(f"test branches repeat an index: {branches}")
        self.test_branches = branches

    def classifier_parameters(self) -> list[nn.Parameter]:
        """The ``W^i`` only: what the paper's first 10 epochs train."""
        return [p for fc in self.classifiers for p in fc.parameters()]

    def forward(self, x: Tensor) -> ReIDOutput:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"CAMA expects images (B, 3, H, W), got {tuple(x.shape)}")
        shared = self.shared(x)
        logits, features, maps = [], [], []
        for stage, bn, fc in zip(self.branches, self.bns, self.classifiers, strict=True):
            # F^i = BN(T^i), f^i = GAP(F^i), S^i = W^i f^i = GAP(M^i) (Eq. 3-4)
            fmap, feat, score = bn_gap_classify(stage(shared), bn, fc)
            maps.append(fmap)
            features.append(feat)
            logits.append(score)
        embedding = descriptor(features, self.test_branches)
        return ReIDOutput(logits=logits, features=features, feature_maps=maps, embedding=embedding,
                          class_weights=bias_free_weights(self.classifiers))


def descriptor(features: Sequence[Tensor], branches: Sequence[int] | None = None) -> Tensor:
    """Test descriptor of Sec. 3.3: the L2-normalised ``f^i`` of the chosen branches, concatenated.

    Args:
        features: per branch ``(B, d)``.
        branches: 0-based indices in the order they are concatenated; ``None`` = all.

    Returns:
        ``(B, d * len(branches))``; each ``d``-wide block has unit norm.
    """
    idx = list(range(len(features))) if branches is None else list(branches)
    if not idx or any(not 0 <= b < len(features) for b in idx):
        raise ValueError(f"branches must index 0..{len(features) - 1}, got {idx}")
    return torch.cat([F.normalize(features[b], dim=1) for b in idx], dim=1)


def select_branches(embedding: Tensor, num_branches: int, branches: Sequence[int]) -> Tensor:
    """Cut the blocks of ``branches`` out of a full ``(B, N*d)`` descriptor (no re-extraction needed).

    Because each block is normalised on its own, this equals :func:`descriptor` on those branches.
    """
    if embedding.dim() != 2 or embedding.shape[1] % num_branches:
        raise ValueError(f"embedding (B, N*d) with N={num_branches} expected, got {tuple(embedding.shape)}")
    d = embedding.shape[1] // num_branches
    if not branches or any(not 0 <= b < num_branches for b in branches):
        raise ValueError(f"branches must index 0..{num_branches - 1}, got {list(branches)}")
    return torch.cat([embedding[:, b * d : (b + 1) * d] for b in branches], dim=1)
