"""Spatial and channel attention of seed 003 (Eq. 1-2) against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from reidlib.layers.attention import ChannelAttention, SpatialAttention


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# Three 2x2 channels; per location the channel mean is [[2, 2], [1, 2]] and the maximum [[3, 4], [3, 4]].
X3 = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]],
                    [[3.0, 0.0], [-1.0, 2.0]],
                    [[2.0, 4.0], [1.0, 0.0]]]])


def test_spatial_attention_is_eq1_with_a_1x1_conv():
    sam = SpatialAttention(kernel_size=1)
    with torch.no_grad():
        sam.conv.weight.copy_(torch.tensor([0.5, -0.25]).view(1, 2, 1, 1))  # [avg, max]
    # 0.5 * mean - 0.25 * max at each location
    expected = torch.tensor([[_sigmoid(0.25), _sigmoid(0.0)], [_sigmoid(-0.25), _sigmoid(0.0)]])
    att = sam.attention_map(X3)
    assert att.shape == (1, 1, 2, 2)
    assert torch.allclose(att[0, 0], expected, atol=1e-6)
    assert torch.allclose(sam(X3), X3 * expected, atol=1e-6)  # one map multiplies every channel


def test_spatial_attention_padding_keeps_the_size_and_aligns_the_kernel():
    sam = SpatialAttention(kernel_size=3)
    with torch.no_grad():
        sam.conv.weight.zero_()
        sam.conv.weight[0, 1, 0, 1] = 1.0  # the max map, read one row above
    x = torch.zeros(1, 2, 3, 2)
    x[0, 0] = torch.tensor([[1.0, 5.0], [2.0, 0.0], [7.0, 3.0]])
    x[0, 1] = torch.tensor([[4.0, 1.0], [0.0, 6.0], [1.0, 1.0]])
    # max over channels: [[4, 5], [2, 6], [7, 3]]; shifted down by one row, zero padding on top
    logits = torch.tensor([[0.0, 0.0], [4.0, 5.0], [2.0, 6.0]])
    att = sam.attention_map(x)
    assert att.shape == (1, 1, 3, 2)
    assert torch.allclose(att[0, 0], torch.sigmoid(logits), atol=1e-6)


def test_spatial_attention_values_and_shapes():
    torch.manual_seed(0)
    sam = SpatialAttention()  # 7x7, the public code's generic module
    x = torch.randn(3, 5, 6, 4)
    att = sam.attention_map(x)
    assert att.shape == (3, 1, 6, 4)
    assert bool(((att > 0) & (att < 1)).all())
    assert sam(x).shape == x.shape
    assert sam.conv.weight.shape == (1, 2, 7, 7) and sam.conv.bias is None
    with pytest.raises(ValueError, match="odd"):
        SpatialAttention(kernel_size=4)


# Two 2x2 channels: averages (4, 2), maxima (7, 8).
X2 = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]],
                    [[-2.0, 0.0], [2.0, 8.0]]]])


def _set_mlp(cam: ChannelAttention) -> None:
    with torch.no_grad():
        cam.mlp[0].weight.copy_(torch.tensor([[-1.0, 1.0]]))       # C -> 1
        cam.mlp[2].weight.copy_(torch.tensor([[0.1], [-0.05]]))    # 1 -> C


def test_channel_attention_is_eq2_mlp_of_each_descriptor_summed():
    cam = ChannelAttention(2, reduction=2)
    assert cam.hidden == 1
    _set_mlp(cam)
    # avg path: relu(-4 + 2) = 0 -> (0, 0); max path: relu(-7 + 8) = 1 -> (0.1, -0.05)
    expected = torch.tensor([_sigmoid(0.1), _sigmoid(-0.05)])
    att = cam.attention_map(X2)
    assert att.shape == (1, 2, 1, 1)
    assert torch.allclose(att.flatten(), expected, atol=1e-6)
    # Eq. 2 read literally, the MLP of the summed descriptors, would give relu(-11 + 10) = 0 -> 0.5 each
    assert not torch.allclose(att.flatten(), torch.full((2,), 0.5), atol=1e-3)
    assert torch.allclose(cam(X2), X2 * expected.view(1, 2, 1, 1), atol=1e-6)


def test_channel_attention_shares_one_mlp_between_both_descriptors():
    cam = ChannelAttention(2, reduction=2)
    _set_mlp(cam)
    assert [name for name, _ in cam.named_parameters()] == ["mlp.0.weight", "mlp.2.weight"]
    seen = []
    cam.mlp.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].clone()))
    cam.attention_map(X2)
    assert len(seen) == 2
    assert torch.equal(seen[0], torch.tensor([[4.0, 2.0]]))  # spatial means
    assert torch.equal(seen[1], torch.tensor([[7.0, 8.0]]))  # spatial maxima
    # Changing the one MLP changes the average path too: with a positive first layer both paths count.
    with torch.no_grad():
        cam.mlp[0].weight.copy_(torch.tensor([[0.5, 0.0]]))
    # avg: relu(2) = 2 -> (0.2, -0.1); max: relu(3.5) -> (0.35, -0.175)
    expected = torch.tensor([_sigmoid(0.55), _sigmoid(-0.275)])
    assert torch.allclose(cam.attention_map(X2).flatten(), expected, atol=1e-6)


def test_channel_attention_values_shapes_and_narrow_widths():
    torch.manual_seed(0)
    cam = ChannelAttention(32)
    assert cam.hidden == 2
    x = torch.randn(4, 32, 5, 3)
    att = cam.attention_map(x)
    assert att.shape == (4, 32, 1, 1)
    assert bool(((att > 0) & (att < 1)).all())
    assert cam(x).shape == x.shape
    narrow = ChannelAttention(8, reduction=16)  # 8 // 16 = 0: guarded to one hidden unit
    assert narrow.hidden == 1 and narrow.mlp[0].weight.shape == (1, 8)
    assert narrow(torch.randn(2, 8, 3, 3)).shape == (2, 8, 3, 3)
    with pytest.raises(ValueError, match="built for 8 channels"):
        narrow(torch.randn(2, 4, 3, 3))
