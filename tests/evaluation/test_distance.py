import numpy as np
import pytest
import torch

from reidlib.evaluation.distance import pairwise_distance


def _explicit(q, g, metric):
    out = np.zeros((len(q), len(g)))
    for i, a in enumerate(q):
        for j, b in enumerate(g):
            if metric == "euclidean":
                out[i, j] = np.sqrt(((a - b) ** 2).sum())
            elif metric == "sqeuclidean":
                out[i, j] = ((a - b) ** 2).sum()
            else:
                out[i, j] = 1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return out


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_matches_explicit_formula(metric):
    rng = np.random.default_rng(0)
    q, g = rng.standard_normal((7, 5)), rng.standard_normal((11, 5))
    got = pairwise_distance(q, g, metric, chunk_size=3)
    assert got.shape == (7, 11) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), _explicit(q, g, metric), atol=1e-10)


def test_tensor_input_keeps_float32_and_self_distance_is_near_zero():
    x = torch.rand(6, 512) + 10.0  # large common offset: the naive |q|^2 + |g|^2 - 2q.g cancels badly
    d2 = pairwise_distance(x, x, "sqeuclidean")
    assert d2.dtype == torch.float32
    assert torch.all(d2 >= 0)
    assert torch.diagonal(d2).abs().max() < 1e-3 * d2.max()
    exact = torch.cdist(x.double(), x.double()) ** 2
    assert torch.allclose(d2.double(), exact, rtol=1e-4, atol=1e-3)
    assert torch.allclose(pairwise_distance(x, x, "euclidean") ** 2, d2, rtol=1e-5, atol=1e-5)


def test_cosine_range_and_alias():
    x = torch.randn(4, 3)
    d = pairwise_distance(x, -x, "cosine")
    assert torch.allclose(torch.diagonal(d), torch.full((4,), 2.0))
    assert torch.equal(pairwise_distance(x, x, "squared_euclidean"), pairwise_distance(x, x, "sqeuclidean"))


def test_bad_inputs_raise():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="metric"):
        pairwise_distance(x, x, "manhattan")
    with pytest.raises(ValueError, match="feature dimensions"):
        pairwise_distance(x, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="2-D"):
        pairwise_distance(np.zeros(4), x)
