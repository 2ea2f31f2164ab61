import numpy as np
import pytest
import torch

from reidlib.evaluation import evaluate, evaluate_features, pairwise_distance, rerank_features


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
