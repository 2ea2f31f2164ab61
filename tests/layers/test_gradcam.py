"""Tests of the in-training Grad-CAM block against hand-derived gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reidlib.layers.gradcam import batch_gradcam, gradcam_from_gradients, normalize_maps


def _maps(batch: int = 3, channels: int = 5, h: int = 4, w: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, h, w, generator=g).requires_grad_(True)


def test_gap_linear_head_gives_cam_over_hw():
    # For scores = W . GAP(A), dy_c/dA_k = W_ck / (h w), so Grad-CAM = ReLU(sum_k W_ck A_k) / (h w).
    maps = _maps()
    weight = torch.randn(7, 5, generator=torch.Generator().manual_seed(1))
    scores = maps.mean(dim=(2, 3)) @ weight.T
    targets = torch.tensor([0, 6, 3])
    got = batch_gradcam(maps, scores, targets, normalize=False)
    expected = torch.einsum("bk,bkhw->bhw", weight[targets], maps.detach()).clamp_min(0) / (4 * 3)
    torch.testing.assert_close(got, expected)


def test_nonlinear_head_matches_hand_derivative():
    # scores = W . GAP(A * A): dy_c/dA_k(i,j) = 2 W_ck A_k(i,j) / (h w).
    maps = _maps(seed=2)
    weight = torch.randn(4, 5, generator=torch.Generator().manual_seed(3))
    scores = (maps * maps).mean(dim=(2, 3)) @ weight.T
    targets = torch.tensor([1, 2, 0])
    a = maps.detach()
    grad = 2 * weight[targets][:, :, None, None] * a / 12
    alpha = grad.mean(dim=(2, 3))
    expected = torch.einsum("bk,bkhw->bhw", alpha, a).clamp_min(0)
    expected = expected / expected.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    got = batch_gradcam(maps, scores, targets)
    torch.testing.assert_close(got, expected)
    assert got.flatten(1).amax(1).le(1 + 1e-6).all() and got.min() >= 0


def test_no_parameter_grad_and_graph_kept():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, padding=1)
    fc = nn.Linear(6, 4, bias=False)
    fc.weight.grad = torch.ones_like(fc.weight)  # an existing gradient must survive untouched
    x = torch.randn(2, 3, 8, 6)
    maps = conv(x)
    scores = fc(maps.mean(dim=(2, 3)))
    cams = batch_gradcam(maps, scores, torch.tensor([1, 3]))
    assert not cams.requires_grad and cams.shape == (2, 8, 6)
    assert conv.weight.grad is None
    assert torch.equal(fc.weight.grad, torch.ones_like(fc.weight))
    nn.functional.cross_entropy(scores, torch.tensor([1, 3])).backward()  # graph still there
    assert conv.weight.grad is not None


def test_per_sample_is_exact_with_train_mode_batchnorm():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(5).train()
    fc = nn.Linear(5, 3, bias=False)
    maps = _maps(batch=4, seed=4)
    scores = fc(bn(maps.mean(dim=(2, 3))))
    targets = torch.tensor([0, 1, 2, 0])
    exact = batch_gradcam(maps, scores, targets, per_sample=True, normalize=False)
    for b in range(4):
        g = torch.autograd.grad(scores[b, targets[b]], maps, retain_graph=True)[0][b : b + 1]
        torch.testing.assert_close(exact[b : b + 1], gradcam_from_gradients(maps.detach()[b : b + 1], g))
    summed = batch_gradcam(maps, scores, targets, normalize=False)
    assert not torch.allclose(summed, exact)  # batch statistics couple the samples


def test_errors():
    maps = _maps()
    scores = maps.mean(dim=(2, 3)) @ torch.randn(5, 4)
    with pytest.raises(ValueError, match="out of range"):
        batch_gradcam(maps, scores, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match="one per sample"):
        batch_gradcam(maps, scores, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="requires_grad"):
        batch_gradcam(maps.detach(), scores, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="computed from these feature maps"):
        batch_gradcam(_maps(seed=9), scores, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        batch_gradcam(maps, scores, torch.tensor([0.0, 1.0, 2.0]))


def test_normalize_maps_keeps_zero_maps():
    maps = torch.tensor([[[0.0, 2.0], [1.0, 0.5]], [[0.0, 0.0], [0.0, 0.0]]])
    out = normalize_maps(maps)
    torch.testing.assert_close(out[0], maps[0] / 2)
    assert torch.equal(out[1], maps[1])
