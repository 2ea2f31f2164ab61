"""The BN neck's batch norm keeps its bias at zero through training."""

from __future__ import annotations

import pytest
import torch

from reidlib.layers.bnneck import FrozenBiasBatchNorm1d


def test_bias_is_frozen_and_weight_trains():
    bn = FrozenBiasBatchNorm1d(4)
    opt = torch.optim.SGD(bn.parameters(), lr=0.5)
    x = torch.randn(8, 4) * 3 + 2
    for _ in range(3):
        opt.zero_grad()
        (bn(x) * torch.arange(4.0)).sum().backward()
        opt.step()
    assert torch.equal(bn.bias, torch.zeros(4))
    assert not torch.equal(bn.weight.detach(), torch.ones(4))
    assert bn.bias.grad is None


def test_output_is_centred_in_training():
    bn = FrozenBiasBatchNorm1d(3)
    y = bn(torch.randn(16, 3) + 5)
    assert torch.allclose(y.mean(dim=0), torch.zeros(3), atol=1e-5)


def test_bad_shape_raises():
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        FrozenBiasBatchNorm1d(3)(torch.zeros(2, 4))
