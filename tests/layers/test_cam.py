"""The one class activation map (seed 000, Eq. 4) against its definition, and the class-weight helper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reidlib.layers.cam import bias_free_weights, class_activation_map


def test_cam_matches_an_explicit_loop_over_channels():
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(3, 5, 4, 2, generator=g)
    weight = torch.randn(7, 5, generator=g)
    classes = torch.tensor([6, 0, 3])
    got = class_activation_map(fmap, weight, classes)
    assert got.shape == (3, 4, 2)
    expected = torch.zeros(3, 4, 2)
    for b in range(3):
        for k in range(5):  # M_c(x, y) = sum_k W_{c,k} F_k(x, y)
            expected[b] += weight[classes[b], k] * fmap[b, k]
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    every = class_activation_map(fmap, weight)
    assert every.shape == (3, 7, 4, 2)
    for b in range(3):
        torch.testing.assert_close(every[b, classes[b]], expected[b], rtol=1e-6, atol=1e-6)


def test_spatial_mean_of_cam_is_the_logit_of_a_gap_classifier():
    torch.manual_seed(1)
    fmap = torch.randn(4, 6, 8, 4)
    fc = nn.Linear(6, 5, bias=False)
    logits = fc(fmap.mean(dim=(2, 3)))  # S = W GAP(F)
    classes = torch.tensor([0, 4, 2, 2])
    cam = class_activation_map(fmap, fc.weight, classes)
    torch.testing.assert_close(cam.mean(dim=(1, 2)), logits[torch.arange(4), classes], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(class_activation_map(fmap, fc.weight).mean(dim=(2, 3)), logits,
                               rtol=1e-5, atol=1e-6)


def test_cam_is_differentiable_in_maps_and_weights():
    fmap = torch.randn(2, 3, 2, 2, requires_grad=True)
    weight = torch.randn(4, 3, requires_grad=True)
    class_activation_map(fmap, weight, torch.tensor([1, 3])).sum().backward()
    assert fmap.grad is not None and weight.grad is not None
    # only the rows of the explained classes receive gradient
    assert weight.grad[[0, 2]].abs().sum() == 0 and weight.grad[[1, 3]].abs().sum() > 0


def test_cam_errors():
    fmap, weight = torch.zeros(2, 3, 2, 2), torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"\(B, d, h, w\)"):
        class_activation_map(torch.zeros(2, 3, 4), weight)
    with pytest.raises(ValueError, match="num_classes, d=3"):
        class_activation_map(fmap, torch.zeros(4, 5))
    with pytest.raises(ValueError, match="one class per sample"):
        class_activation_map(fmap, weight, torch.tensor([0]))
    with pytest.raises(ValueError, match="out of range"):
        class_activation_map(fmap, weight, torch.tensor([0, 4]))


def test_bias_free_weights_are_the_parameters_and_refuse_a_bias():
    layers = nn.ModuleList([nn.Linear(3, 4, bias=False), nn.Linear(3, 2, bias=False)])
    weights = bias_free_weights(layers)
    assert [w.shape for w in weights] == [(4, 3), (2, 3)]
    assert all(w is layer.weight for w, layer in zip(weights, layers, strict=True))
    assert bias_free_weights(nn.ModuleList()) == []
    with pytest.raises(ValueError, match=r"classifiers\[1\] must be a bias-free nn.Linear"):
        bias_free_weights([nn.Linear(3, 4, bias=False), nn.Linear(3, 4)])
    with pytest.raises(ValueError, match="bias-free"):
        bias_free_weights([nn.Conv2d(3, 4, 1, bias=False)])
