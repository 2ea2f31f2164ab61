from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reidlib.explain.ram import combine_branch_maps, model_ram, ranking_activation_map

from .conftest import assert_same_state, snapshot


def test_ram_definition_and_mean_property():
    g = torch.Generator().manual_seed(0)
    f_q = torch.randn(5, generator=g, dtype=torch.float64)
    maps = torch.randn(3, 5, 4, 2, generator=g, dtype=torch.float64)
    ram = ranking_activation_map(f_q, maps)
    f_g = maps.mean(dim=(2, 3))
    for b in range(3):
        for x in range(4):
            for y in range(2):
                expected = torch.dot(f_q, maps[b, :, x, y]) / f_g[b].norm()
                assert torch.isclose(ram[b, x, y], expected)
    # Eq. 10: the spatial mean of R^q_g is <f_q, f_g> / |f_g|, exactly (up to float64 rounding).
    torch.testing.assert_close(ram.mean(dim=(1, 2)), (f_g @ f_q) / f_g.norm(dim=1), rtol=1e-12, atol=1e-12)


def test_combined_maps_pool_to_paper_descriptor():
    maps = [torch.randn(2, 3, 4, 2), torch.randn(2, 5, 4, 2)]
    combined = combine_branch_maps(maps)
    expected = torch.cat([F.normalize(m.mean(dim=(2, 3)), dim=1) for m in maps], dim=1)
    torch.testing.assert_close(combined.mean(dim=(2, 3)), expected)
    with pytest.raises(ValueError, match="spatial sizes"):
        combine_branch_maps([torch.randn(1, 3, 4, 2), torch.randn(1, 3, 2, 2)])


def test_model_ram_similarity_orders_like_distance(model3, images):
    before = snapshot(model3)
    result = model_ram(model3, images[0], images[1:], batch_size=2)
    assert_same_state(before, snapshot(model3))
    assert len(result.branches) == 3 and result.combined is not None
    model3.eval()
    with torch.no_grad():
        out = model3(images)
    for i, maps in enumerate(result.branches):
        f = out.feature_maps[i].mean(dim=(2, 3))
        expected = (f[1:] @ f[0]) / f[1:].norm(dim=1)
        torch.testing.assert_close(maps.similarity, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(maps.gallery.mean(dim=(1, 2)), maps.similarity)
        torch.testing.assert_close(maps.query.mean(), f[0].norm(), rtol=1e-5, atol=1e-5)  # R^q_q
    # The concatenated descriptor's RAM ranks like the Euclidean distance of the model's embedding.
    emb = F.normalize(out.embedding, dim=1)
    dist = (emb[1:] - emb[0]).norm(dim=1)
    assert torch.equal(result.combined.similarity.argsort(descending=True), dist.argsort())


def test_model_ram_errors(model, images):
    with pytest.raises(ValueError, match="one image"):
        model_ram(model, images[:2], images)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model_ram(model, images[0], torch.zeros(2, 1, 32, 16))
