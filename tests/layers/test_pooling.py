"""Global pooling: values against hand computations, GeM limits, masks for padded images."""

from __future__ import annotations

import pytest
import torch

from reidlib.layers.pooling import POOLINGS, GeneralizedMeanPool, GlobalPool, gem_pool, resize_mask


def _maps() -> torch.Tensor:
    return torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(0)) + 0.1


def test_avg_and_max_match_torch():
    x = _maps()
    assert torch.allclose(GlobalPool("avg")(x), x.mean(dim=(2, 3)))
    assert torch.allclose(GlobalPool("max")(x), x.flatten(2).max(dim=2).values)


def test_gem_p1_is_avg_and_large_p_approaches_max():
    x = _maps()
    assert torch.allclose(gem_pool(x, p=1.0), x.mean(dim=(2, 3)), atol=1e-6)
    big = gem_pool(x.double(), p=200.0)
    assert torch.allclose(big, x.double().amax(dim=(2, 3)), atol=2e-2)
    # GeM lies between GAP and GMP for p > 1.
    g = gem_pool(x, p=3.0)
    assert torch.all(g >= x.mean(dim=(2, 3)) - 1e-6) and torch.all(g <= x.amax(dim=(2, 3)) + 1e-6)


def test_gem_module_p_learnable_and_registered():
    pool = GlobalPool("gem", p=3.0, learnable=True)
    params = dict(pool.named_parameters())
    assert "op.p" in params and params["op.p"].requires_grad
    out = pool(_maps())
    out.sum().backward()
    assert params["op.p"].grad is not None
    fixed = GeneralizedMeanPool(p=2.0)
    assert "p" in dict(fixed.named_buffers()) and not list(fixed.parameters())


def test_unknown_mode_and_bad_options_raise():
    with pytest.raises(ValueError, match="unknown pooling mode 'median'"):
        GlobalPool("median")
    with pytest.raises(ValueError, match="takes no options"):
        GlobalPool("avg", p=3.0)
    with pytest.raises(ValueError, match=r"\(B, C, h, w\)"):
        GlobalPool("avg")(torch.zeros(2, 3))
    assert set(POOLINGS) == {"avg", "max", "gem"}


def test_mask_restricts_pooling_to_real_pixels():
    x = _maps()
    mask = torch.zeros(2, 1, 8, 10, dtype=torch.bool)
    mask[0] = True  # full image
    mask[1, :, :4, :6] = True  # top-left 4x6 pixels -> cells rows 0-1, cols 0-2 of the 4x5 map
    avg = GlobalPool("avg")(x, mask)
    mx = GlobalPool("max")(x, mask)
    assert torch.allclose(avg[0], x[0].mean(dim=(1, 2)))
    assert torch.allclose(avg[1], x[1, :, :2, :3].mean(dim=(1, 2)))
    assert torch.allclose(mx[1], x[1, :, :2, :3].amax(dim=(1, 2)))


def test_resize_mask_keeps_partial_cells():
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :5, :] = True  # 5 of 8 rows real: the 3rd of 4 cells (rows 4-5) is partly real
    small = resize_mask(mask, (4, 4))
    assert small[0, 0, :, 0].tolist() == [True, True, True, False]
