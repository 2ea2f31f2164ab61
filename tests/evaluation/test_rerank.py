import numpy as np
import pytest
import torch

from reidlib.evaluation.distance import pairwise_distance
from reidlib.evaluation.memory import MemoryBoundError
from reidlib.evaluation.rerank import _Budget, rerank, rerank_feature_blocks, rerank_features
from tests.evaluation.reference import rerank_dense


def _clustered(num_q, num_g, dim=16, seed=0):
    """Features around a few identity centres, and their exact, symmetric Euclidean distances."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, dim))
    f = centres[rng.integers(0, 12, num_q + num_g)] + 0.7 * rng.standard_normal((num_q + num_g, dim))
    dist = np.sqrt(((f[:, None] - f[None]) ** 2).sum(-1))
    q, g = slice(0, num_q), slice(num_q, None)
    return f[q], f[g], dist[q, g], dist[q, q], dist[g, g]


@pytest.mark.parametrize(
    ("num_q", "num_g", "k1", "k2", "lambda_"),
    [(60, 300, 20, 6, 0.3), (12, 60, 5, 1, 0.0), (25, 80, 7, 3, 1.0), (6, 40, 3, 4, 0.5)],
)
def test_equals_dense_algorithm(code_path, num_q, num_g, k1, k2, lambda_):
    _, _, qg, qq, gg = _clustered(num_q, num_g, seed=num_q)
    ref = rerank_dense(qg, qq, gg, k1, k2, lambda_)
    out = rerank(qg, qq, gg, k1, k2, lambda_, chunk_elements=5000)  # several chunks
    assert isinstance(out, np.ndarray) and out.shape == (num_q, num_g)
    np.testing.assert_allclose(out, ref, atol=1e-10)
    # Re-ranking must actually change the distances here, or the test would prove little.
    if lambda_ < 1:
        plain = qg**2 / np.concatenate([qq, qg], 1).max(1, keepdims=True) ** 2
        assert np.abs(ref - lambda_ * plain).max() > 0.1


def test_float32_tensors_stay_within_1e4(code_path):
    _, _, qg, qq, gg = _clustered(60, 300, seed=3)
    ref = rerank_dense(qg, qq, gg)
    out = rerank(torch.from_numpy(qg).float(), torch.from_numpy(qq).float(), torch.from_numpy(gg).float())
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert np.abs(out.double().numpy() - ref).max() <= 1e-4


def test_squared_inputs_flag_and_the_double_squaring_pitfall():
    _, _, qg, qq, gg = _clustered(20, 90, seed=4)
    ref = rerank_dense(qg, qq, gg)
    np.testing.assert_allclose(rerank(qg**2, qq**2, gg**2, squared=True), ref, atol=1e-10)
    twice = rerank(qg**2, qq**2, gg**2, squared=False)  # what some public pipelines do
    np.testing.assert_allclose(twice, rerank_dense(qg**2, qq**2, gg**2), atol=1e-10)
    assert np.abs(twice - ref).max() > 1e-2


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_features_path_equals_matrix_path(code_path, metric):
    qf, gf, _, _, _ = _clustered(30, 120, seed=5)
    q, g = torch.from_numpy(qf), torch.from_numpy(gf)
    mats = [pairwise_distance(a, b, metric) for a, b in ((q, g), (q, q), (g, g))]
    mats = [mats[0], (mats[1] + mats[1].T) / 2, (mats[2] + mats[2].T) / 2]
    ref = rerank_dense(*(m.numpy() for m in mats))
    out = rerank_features(qf, gf, metric=metric, chunk_elements=4000)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-8)


def test_bad_inputs_raise():
    _, _, qg, qq, gg = _clustered(5, 30)
    with pytest.raises(ValueError, match="q_q"):
        rerank(qg, qq[:4, :4], gg)
    with pytest.raises(ValueError, match="g_g"):
        rerank(qg, qq, gg[:, :3])
    with pytest.raises(ValueError, match="k2"):
        rerank(qg, qq, gg, k1=5, k2=7)
    with pytest.raises(ValueError, match="lambda_"):
        rerank(qg, qq, gg, lambda_=1.5)
    with pytest.raises(ValueError, match="k1"):
        rerank(qg, qq, gg, k1=40)
    nan = gg.copy()
    nan[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rerank(qg, qq, nan)
    with pytest.raises(ValueError, match="sqeuclidean"):
        rerank_features(np.zeros((3, 2)), np.zeros((30, 2)), metric="sqeuclidean")


def test_sparse_equals_dense_at_1500_by_6000():
    """The issue's size: 7,500 images, whose dense (N, N) arrays the reference still holds here."""
    rng = np.random.default_rng(11)
    num_q, num_g, dim = 1500, 6000, 32
    centres = rng.standard_normal((400, dim))
    f = centres[rng.integers(0, 400, num_q + num_g)] + 0.6 * rng.standard_normal((num_q + num_g, dim))
    f = torch.from_numpy(f)
    q, g = f[:num_q], f[num_q:]
    qg, qq, gg = (pairwise_distance(a, b, "euclidean") for a, b in ((q, g), (q, q), (g, g)))
    qq, gg = (qq + qq.T) / 2, (gg + gg.T) / 2
    ref = rerank_dense(qg.numpy(), qq.numpy(), gg.numpy())
    out = rerank_features(q, g)
    assert np.abs(out.numpy() - ref).max() <= 1e-4
    # it is a real re-ranking: the order of many gallery items changes
    plain = qg.numpy() ** 2
    assert np.mean(np.argsort(ref, 1)[:, :20] != np.argsort(plain, 1)[:, :20]) > 0.05


def test_streamed_blocks_hold_a_bounded_number_of_query_rows(monkeypatch):
    qf, gf, *_ = _clustered(40, 160, seed=6)
    whole = rerank_features(qf, gf, k1=6, k2=3)
    budget = _Budget(None, 40, 160, qf.shape[1], 6, 8)
    sizes = []
    real = _Budget.check_sparse

    def spy(self, nnz, k2):
        real(self, nnz, k2)
        sizes.append(self.sparse)

    monkeypatch.setattr(_Budget, "check_sparse", spy)
    list(rerank_feature_blocks(qf, gf, k1=6, k2=3))
    # room for the fixed parts, the sparse vectors and 7 query rows (3 row-sized arrays each)
    bound = budget.fixed() + sizes[0] + 7 * 3 * 160 * 8
    blocks = list(rerank_feature_blocks(qf, gf, k1=6, k2=3, max_memory=bound))
    assert [b - a for a, b, _ in blocks] == [7] * 5 + [5]
    with pytest.raises(MemoryBoundError, match="once the k-reciprocal sets are known"):
        list(rerank_feature_blocks(qf, gf, k1=6, k2=3, max_memory=budget.fixed() + 3 * 160 * 8))
    # the same up to the rounding of matrix products of another height
    np.testing.assert_allclose(np.concatenate([r.numpy() for _, _, r in blocks]), whole.numpy(), atol=1e-12)
    assert [a for a, _, _ in blocks] == sorted(a for a, _, _ in blocks)
