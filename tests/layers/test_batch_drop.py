"""Batch DropBlock zeroes one rectangle, shared by the whole batch, only in training."""

from __future__ import annotations

import pytest
import torch

from reidlib.layers.batch_drop import BatchDropBlock, batch_drop_mask


def test_mask_has_one_rectangle_of_the_right_size():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        mask = batch_drop_mask(24, 8, 0.3, 1.0, generator=g)
        zero_rows = (mask == 0).all(dim=1).nonzero().flatten()
        assert len(zero_rows) == round(0.3 * 24)  # 7 full-width rows
        assert (zero_rows.diff() == 1).all()  # contiguous
        assert int((mask == 0).sum()) == 7 * 8


def test_same_rectangle_for_every_sample_and_identity_in_eval():
    layer = BatchDropBlock(0.5, 0.5)
    x = torch.rand(4, 3, 6, 4) + 1.0
    y = layer(x, generator=torch.Generator().manual_seed(1))
    zeros = y == 0
    assert torch.equal(zeros, zeros[:1].expand_as(zeros))  # same cells dropped for all images and channels
    assert int(zeros[0, 0].sum()) == 3 * 2
    assert torch.equal(zeros[0, 0], layer.last_mask == 0)
    layer.eval()
    assert torch.equal(layer(x), x)


def test_bad_ratio_raises():
    with pytest.raises(ValueError, match="height_ratio"):
        BatchDropBlock(0.0, 1.0)
    with pytest.raises(ValueError, match="width_ratio"):
        BatchDropBlock(0.3, 1.5)
