"""Init helpers set the documented statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reidlib.layers.init import init_classifier, init_kaiming


def test_init_kaiming_conv_linear_bn():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(64, 128, 3, bias=True), nn.BatchNorm2d(128), nn.Linear(512, 2048))
    nn.init.constant_(net[1].weight, 5.0)
    net.apply(init_kaiming)
    conv, bn, fc = net
    # He normal: std = sqrt(2 / fan); conv fan_in = 64*9, linear fan_out = 2048.
    assert conv.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)
    assert fc.weight.std().item() == pytest.approx((2 / 2048) ** 0.5, rel=0.05)
    assert torch.equal(conv.bias, torch.zeros(128)) and torch.equal(fc.bias, torch.zeros(2048))
    assert torch.equal(bn.weight, torch.ones(128)) and torch.equal(bn.bias, torch.zeros(128))


def test_init_classifier_small_normal():
    torch.manual_seed(0)
    fc = nn.Linear(512, 1000)
    fc.apply(lambda m: init_classifier(m, std=0.001))
    assert fc.weight.std().item() == pytest.approx(0.001, rel=0.05)
    assert torch.equal(fc.bias, torch.zeros(1000))
    with pytest.raises(ValueError, match="std must be > 0"):
        init_classifier(fc, std=0.0)
