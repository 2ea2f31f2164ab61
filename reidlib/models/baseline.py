"""Single-branch baselines shared by every chapter: IDE+BN (seed 000, Eq. 2-3) and a BNNeck head.

Both return :class:`reidlib.models.output.ReIDOutput` with one-entry lists, including ``class_weights``
``[W]`` (``(C, d)``) of their bias-free classifier, which is kept in ``self.classifiers`` (an
``nn.ModuleList``, one per branch; ``classifiers.0.weight`` in the state dict).
"""

from __future__ import annotations

import os

from torch import Tensor, nn

from reidlib.layers.bnneck import FrozenBiasBatchNorm1d
from reidlib.layers.cam import bias_free_weights
from reidlib.layers.heads import bn_gap_classify, make_bn_gap_heads
from reidlib.layers.init import init_classifier
from reidlib.layers.pooling import GlobalPool
from reidlib.models.backbone import FULL_WIDTH, StagedBackbone, build_backbone, check_num_classes
from reidlib.models.output import ReIDOutput

__all__ = ["BNNeck", "IDEBN"]


class IDEBN(nn.Module):
    """IDE+BN baseline of seed 000 (Yang et al., CVPR 2019), written as Eq. 3.

    ``T = ResNet(x)`` ``(B, d, h, w)``; ``F = BN(T)`` with a per-channel ``BatchNorm2d`` applied at every
    location; ``f = GAP(F)`` ``(B, d)``; ``S = W f`` with a bias-free linear ``W`` ``(C, d)``. So the class
    activation map ``M_c = sum_k W_ck F_k`` satisfies ``S_c = GAP(M_c)`` exactly (Eq. 4).

    **BN before or after GAP.** Eq. 2 writes ``FC(BN(GAP(T)))`` and Eq. 3 swaps it for
    ``FC(GAP(BN(T)))``, arguing that both BN and GAP are linear. At inference this holds: BN is then a
    fixed per-channel affine map, which commutes with averaging, and the two give identical scores. In
    training they differ: ``BatchNorm2d`` on ``T`` estimates each channel's mean and variance over all
    ``B*h*w`` locations (per location statistics), ``BatchNorm1d`` on ``GAP(T)`` over the ``B`` pooled
    vectors (per image statistics). The means agree, but the location variance also contains the spatial
    spread within each image, so it is larger and the normalised features, gradients and learned scale
    differ. We follow Eq. 3 (and CAMA's Fig. 2): ``F``, the tensor CAMs are built from, is the normalised
    map itself.

    Args:
        num_classes: training identities ``C``.
        depth: ResNet depth.
        last_stride: 1 (as in seed 000, after PCB: 256x128 -> 16x8 maps) or 2.
        pretrained: ``False``, ``True`` (torch hub cache) or a weights file; see
            :func:`reidlib.models.backbone.build_backbone`.
        allow_random_init: continue from random weights (with a warning) when ``pretrained`` is missing.
        backbone: an already built backbone (:func:`~reidlib.models.backbone.build_backbone`; then
            ``depth``, ``width``, ``last_stride`` and ``pretrained`` are ignored).
        width: backbone width (64 = torchvision's ResNet, less = a random narrow ResNet).

    ``forward(x)``, ``x`` ``(B, 3, H, W)``: ``logits=[S]`` ``(B, C)``, ``features=[f]`` ``(B, d)``,
    ``feature_maps=[F]`` ``(B, d, h, w)``, ``embedding=f``, ``class_weights=[W]`` ``(C, d)``.
    """

    def __init__(
        self,
        num_classes: int,
        depth: int = 50,
        last_stride: int = 1,
        pretrained: bool | str | os.PathLike = False,
        allow_random_init: bool = False,
        backbone: StagedBackbone | None = None,
        width: int = FULL_WIDTH,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.backbone = backbone if backbone is not None else build_backbone(
            depth, width, pretrained=pretrained, last_stride=last_stride, allow_random_init=allow_random_init
        )
        self.feat_dim = self.backbone.out_channels
        bns, classifiers = make_bn_gap_heads(self.feat_dim, num_classes)
        self.bn = bns[0]  # vanilla BN (learned scale and shift), Eq. 2
        self.classifiers = classifiers

    def forward(self, x: Tensor) -> ReIDOutput:
        fmap, feat, logits = bn_gap_classify(self.backbone(x), self.bn, self.classifiers[0])  # Eq. 3
        return ReIDOutput(logits=[logits], features=[feat], feature_maps=[fmap], embedding=feat,
                          class_weights=bias_free_weights(self.classifiers))


class BNNeck(nn.Module):
    """ResNet + global pooling + BN neck + bias-free classifier (Luo et al., "Bag of tricks", 2019).

    ``T = ResNet(x)``; ``g = pool(T)`` ``(B, d)`` is what the triplet loss sees (``features``);
    ``b = BN(g)`` with the BN shift frozen at zero (:class:`FrozenBiasBatchNorm1d`); ``S = W b``. The test
    descriptor is the post-BN ``b``. Unlike IDE+BN the normalisation is *after* pooling, so the BN
    statistics are per image; and the two losses act on two different spaces (``g`` for the metric loss,
    ``b`` for the classifier), which is the point of the neck.

    Args:
        num_classes: training identities ``C``.
        depth, last_stride, pretrained, allow_random_init, backbone, width: as in :class:`IDEBN`.
        pool: ``"avg"``, ``"max"`` or ``"gem"`` (see :class:`reidlib.layers.pooling.GlobalPool`).

    ``forward(x)``: ``logits=[S]`` ``(B, C)``, ``features=[g]`` ``(B, d)``, ``feature_maps=[T]``
    ``(B, d, h, w)``, ``embedding=b`` ``(B, d)``, ``class_weights=[W]`` ``(C, d)`` (over ``b``, not over
    ``GAP(T)``: no class activation map of ``T`` gives these scores).
    """

    def __init__(
        self,
        num_classes: int,
        depth: int = 50,
        last_stride: int = 1,
        pool: str = "avg",
        pretrained: bool | str | os.PathLike = False,
        allow_random_init: bool = False,
        backbone: StagedBackbone | None = None,
        width: int = FULL_WIDTH,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.backbone = backbone if backbone is not None else build_backbone(
            depth, width, pretrained=pretrained, last_stride=last_stride, allow_random_init=allow_random_init
        )
        self.feat_dim = self.backbone.out_channels
        self.pool = GlobalPool(pool)
        self.neck = FrozenBiasBatchNorm1d(self.feat_dim)
        self.classifiers = nn.ModuleList([nn.Linear(self.feat_dim, num_classes, bias=False)])
        self.classifiers.apply(init_classifier)

    def forward(self, x: Tensor) -> ReIDOutput:
        fmap = self.backbone(x)
        feat = self.pool(fmap)  # for the triplet loss
        normed = self.neck(feat)  # for the classifier and retrieval
        logits = self.classifiers[0](normed)
        return ReIDOutput(logits=[logits], features=[feat], feature_maps=[fmap], embedding=normed,
                          class_weights=bias_free_weights(self.classifiers))
