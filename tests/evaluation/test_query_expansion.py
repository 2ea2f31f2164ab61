import pytest
import torch
import torch.nn.functional as F

from reidlib.evaluation.query_expansion import average_neighbours, query_expansion


def _unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_query_expansion_on_hand_made_features():
    g = _unit([1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.1], [0, 0, 1])
    q = _unit([1, 0.2, 0])
    q_exp, g_aug = query_expansion(q, g, k_query=1, k_db=1)
    # gallery: each item averaged with its single nearest other item
    assert torch.allclose(g_aug[0], F.normalize(g[0] + g[1], dim=0), atol=1e-6)
    assert torch.allclose(g_aug[2], F.normalize(g[2] + g[3], dim=0), atol=1e-6)
    # query: averaged with its nearest augmented gallery item (item 0 or 1, both the same pair)
    nearest = int(torch.argmax(g_aug @ q[0]))
    assert nearest in (0, 1)
    assert torch.allclose(q_exp[0], F.normalize(q[0] + g_aug[nearest], dim=0), atol=1e-6)
    assert torch.allclose(q_exp.norm(dim=1), torch.ones(1))
    assert torch.allclose(g_aug.norm(dim=1), torch.ones(5))


def test_zero_neighbours_and_chunks_agree():
    torch.manual_seed(0)
    g = F.normalize(torch.randn(50, 8), dim=1)
    assert average_neighbours(g, g, 0) is g
    a = average_neighbours(g, g, 10, exclude_self=True, chunk_size=7)
    b = average_neighbours(g, g, 10, exclude_self=True)
    assert torch.allclose(a, b, atol=1e-6)
    manual = F.normalize(g[3] + g[(g @ g[3]).argsort(descending=True)[1:11]].sum(0), dim=0)
    assert torch.allclose(b[3], manual, atol=1e-5)
    with pytest.raises(ValueError):
        average_neighbours(g, g, 50, exclude_self=True)
