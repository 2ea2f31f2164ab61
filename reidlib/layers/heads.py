"""The IDE+BN identity head of seed 000 (Eq. 2-3), shared by IDE+BN and every CAMA branch.

``F = BN(T)`` (a ``BatchNorm2d`` at every location of the maps ``T``), ``f = GAP(F)``, ``S = W f`` with a
bias-free ``W``: the classifier sees exactly ``GAP(F)``, so ``S_c = GAP(M_c)`` for the class activation
map of Eq. 4 (:func:`reidlib.layers.cam.class_activation_map`).

These are functions over the parameters rather than a head module on purpose: a module per head would
interleave each branch's BN and classifier in the state dict and draw each classifier's initial weights
right after building it. The models instead keep every BN before every classifier (``bn``/``bns``, then
``classifiers``) and build all classifiers before initialising any, the order the committed cpu results
were trained from.
"""

from __future__ import annotations

from torch import Tensor, nn

from reidlib.layers.init import init_classifier

__all__ = ["bn_gap_classify", "make_bn_gap_heads"]


def make_bn_gap_heads(
    channels: int, num_classes: int, num_branches: int = 1, std: float = 0.001
) -> tuple[nn.ModuleList, nn.ModuleList]:
    """The BNs and bias-free classifiers of ``num_branches`` IDE+BN heads (seed 000, Eq. 3).

    Args:
        channels: ``d``, channels of the maps ``T``.
        num_classes: ``C``.
        num_branches: how many heads (CAMA's ``N``; 1 for IDE+BN).
        std: the classifiers' initial weights are ``N(0, std^2)``
            (:func:`reidlib.layers.init.init_classifier`); the BNs start at unit scale, zero shift.

    Returns:
        ``(bns, classifiers)``: ``BatchNorm2d(d)`` and ``Linear(d, C, bias=False)`` modules.
    """
    bns = nn.ModuleList([nn.BatchNorm2d(channels) for _ in range(num_branches)])
    classifiers = nn.ModuleList(
        [nn.Linear(channels, num_classes, bias=False) for _ in range(num_branches)]
    )
    for bn in bns:
        nn.init.ones_(bn.weight)
        nn.init.zeros_(bn.bias)
    for fc in classifiers:
        init_classifier(fc, std)
    return bns, classifiers


def bn_gap_classify(maps: Tensor, bn: nn.Module, classifier: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
    """One IDE+BN head (Eq. 3): ``F = BN(T)``, ``f = GAP(F)``, ``S = W f``.

    Args:
        maps: ``T``, ``(B, d, h, w)``.
        bn: the per-location ``BatchNorm2d(d)``.
        classifier: the bias-free ``Linear(d, C)``.

    Returns:
        ``(F, f, S)``: ``(B, d, h, w)``, ``(B, d)``, ``(B, C)``.
    """
    fmap = bn(maps)
    feat = fmap.mean(dim=(2, 3))
    return fmap, feat, classifier(feat)
