import numpy as np
import pytest
import torch

from reidlib.evaluation import evaluate, evaluate_features, pairwise_distance, rerank_features
from reidlib.evaluation.features import query_chunk_rows
from reidlib.evaluation.memory import MemoryBoundError


def _embeddings(seed=0, num_q=30, num_g=200, dim=8):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((15, dim)).astype(np.float32)
    q_pids, g_pids = rng.integers(1, 15, num_q), rng.integers(0, 15, num_g)
    q = centres[q_pids] + 0.8 * rng.standard_normal((num_q, dim)).astype(np.float32)
    g = centres[g_pids] + 0.8 * rng.standard_normal((num_g, dim)).astype(np.float32)
    return q, g, q_pids, g_pids, rng.integers(0, 4, num_q), rng.integers(0, 4, num_g)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_equals_evaluate_on_the_distance_matrix(code_path, metric):
    q, g, qp, gp, qc, gc = _embeddings()
    ref = evaluate(pairwise_distance(q, g, metric), qp, gp, qc, gc)
    assert 0.2 < ref.mAP < 0.99  # an informative, imperfect ranking
    res = evaluate_features(q, g, qp, gp, qc, gc, metric=metric)
    assert res.mAP == pytest.approx(ref.mAP, abs=1e-12)
    # Gallery in blocks of 17: the distances in a block are computed as in the full matrix up to
    # rounding, so the metrics agree to rounding too.
    blocked = evaluate_features(q, g, qp, gp, qc, gc, metric=metric, gallery_chunk=17)
    assert blocked.mAP == pytest.approx(ref.mAP, abs=1e-6)
    np.testing.assert_allclose(blocked.cmc, ref.cmc, atol=1e-6)


def test_rerank_option():
    q, g, qp, gp, qc, gc = _embeddings(1)
    ref = evaluate(rerank_features(torch.from_numpy(q), torch.from_numpy(g), 10, 3, 0.3), qp, gp, qc, gc)
    res = evaluate_features(q, g, qp, gp, qc, gc, rerank=True, k1=10, k2=3, ap_mode="full")
    assert res.mAP == pytest.approx(ref.mAP, abs=1e-12)
    assert res.mAP != pytest.approx(evaluate_features(q, g, qp, gp, qc, gc).mAP, abs=1e-4)


def test_bad_options_raise():
    q, g, qp, gp, qc, gc = _embeddings(2)
    with pytest.raises(ValueError, match="metric"):
        evaluate_features(q, g, qp, gp, qc, gc, metric="hamming")
    with pytest.raises(ValueError, match="gallery_chunk"):
        evaluate_features(q, g, qp, gp, qc, gc, gallery_chunk=0)
    with pytest.raises(ValueError, match="feature dimensions"):
        evaluate_features(q, g[:, :4], qp, gp, qc, gc, gallery_chunk=10)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_query_chunks_within_a_memory_bound_give_the_same_metrics(metric, monkeypatch):
    q, g, qp, gp, qc, gc = _embeddings(3, num_q=40)
    ref = evaluate(pairwise_distance(q, g, metric), qp, gp, qc, gc)
    rows = []
    real = query_chunk_rows

    def spy(*args):
        rows.append(real(*args))
        return rows[-1]

    monkeypatch.setattr("reidlib.evaluation.features.query_chunk_rows", spy)
    # 200 gallery items x 4 bytes x 4 per query row: this bound leaves room for 3 rows
    bound = 200 * 9 * 4 + 64 * 240 + 3 * (4 * 200 * 4 + 8 * 4)
    res = evaluate_features(q, g, qp, gp, qc, gc, metric=metric, max_memory=bound)
    assert rows == [3]
    assert res.mAP == pytest.approx(ref.mAP, abs=1e-9) and res.num_valid == ref.num_valid
    np.testing.assert_allclose(res.cmc, ref.cmc, atol=1e-12)
    assert evaluate_features(q, g, qp, gp, qc, gc, metric=metric, max_memory="1GB").mAP == pytest.approx(
        ref.mAP, abs=1e-9)


def test_a_memory_bound_that_cannot_be_met_names_the_sizes():
    q, g, qp, gp, qc, gc = _embeddings(4)
    with pytest.raises(MemoryBoundError, match=r"max_memory=.*30 queries against 200 gallery items of "
                                                r"dimension 8"):
        evaluate_features(q, g, qp, gp, qc, gc, max_memory="2KB")
    with pytest.raises(MemoryBoundError, match=r"re-ranking 30 queries \+ 200 gallery items"):
        evaluate_features(q, g, qp, gp, qc, gc, rerank=True, max_memory="20KB")
    with pytest.raises(ValueError, match="max_memory"):
        evaluate_features(q, g, qp, gp, qc, gc, max_memory="lots")


def test_the_bound_is_checked_before_the_distances_are_computed(monkeypatch):
    import reidlib.evaluation.features as features

    q, g, qp, gp, qc, gc = _embeddings(5)

    def never(*args, **kwargs):
        raise AssertionError("a distance was computed before the bound was checked")

    monkeypatch.setattr(features.PreparedGallery, "rows", never)
    with pytest.raises(MemoryBoundError):
        evaluate_features(q, g, qp, gp, qc, gc, max_memory=1000)
