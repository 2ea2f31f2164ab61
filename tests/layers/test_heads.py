"""The IDE+BN head (seed 000, Eq. 3): BN on the maps, GAP, bias-free classifier."""

from __future__ import annotations

import torch
from torch import nn

from reidlib.layers.cam import class_activation_map
from reidlib.layers.heads import bn_gap_classify, make_bn_gap_heads


def test_heads_are_bns_then_bias_free_classifiers_with_small_init():
    torch.manual_seed(0)
    bns, classifiers = make_bn_gap_heads(channels=32, num_classes=400, num_branches=3)
    assert len(bns) == len(classifiers) == 3
    assert all(isinstance(bn, nn.BatchNorm2d) and bn.num_features == 32 for bn in bns)
    assert all(torch.equal(bn.weight, torch.ones(32)) and torch.equal(bn.bias, torch.zeros(32)) for bn in bns)
    assert all(fc.bias is None and fc.weight.shape == (400, 32) for fc in classifiers)
    stds = [fc.weight.std().item() for fc in classifiers]
    assert all(abs(s - 0.001) < 1e-4 for s in stds), stds
    assert not torch.equal(classifiers[0].weight, classifiers[1].weight)


def test_rng_order_is_every_classifier_built_then_every_classifier_initialised():
    # The committed cpu results depend on this order (see the module docstring).
    torch.manual_seed(3)
    _, classifiers = make_bn_gap_heads(8, 5, num_branches=2)
    torch.manual_seed(3)
    built = [nn.Linear(8, 5, bias=False) for _ in range(2)]
    for fc in built:
        nn.init.normal_(fc.weight, std=0.001)
    for a, b in zip(classifiers, built, strict=True):
        assert torch.equal(a.weight, b.weight)


def test_bn_gap_classify_is_eq3_and_scores_are_gap_of_cams():
    torch.manual_seed(1)
    bns, classifiers = make_bn_gap_heads(6, 4)
    nn.init.normal_(classifiers[0].weight)
    maps = torch.randn(5, 6, 4, 2) * 3 + 1
    fmap, feat, logits = bn_gap_classify(maps, bns[0], classifiers[0])
    torch.testing.assert_close(fmap, bns[0](maps))
    torch.testing.assert_close(feat, fmap.mean(dim=(2, 3)))
    torch.testing.assert_close(logits, feat @ classifiers[0].weight.T)
    cams = class_activation_map(fmap, classifiers[0].weight)
    torch.testing.assert_close(cams.mean(dim=(2, 3)), logits, rtol=1e-5, atol=1e-5)  # Eq. 4
