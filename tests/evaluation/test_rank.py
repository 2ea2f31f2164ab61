import json

import numpy as np
import pytest
import torch

import reidlib.evaluation.rank as rank_module
from reidlib.evaluation.arrays import NonFiniteError
from reidlib.evaluation.rank import QueryChunkRanker, RankResult, evaluate, evaluate_blocks
from tests.evaluation.reference import evaluate_per_query

MODES = ["full", "trapezoid", "truncated50"]


def _random_case(seed, num_q=25, num_g=140, ties=True, dtype=np.float32):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(-1, 9, num_q)  # -1 queries never have a true match
    g_pids = rng.integers(-1, 9, num_g)  # -1 gallery items are junk, 0 are distractors
    q_cams, g_cams = rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)
    q_pids[0] = 99  # an identity absent from the gallery: skipped
    if ties:
        dist = np.round(rng.random((num_q, num_g)) * 6) / 6  # many exact ties
    else:
        dist = rng.standard_normal((num_q, num_g))
    return dist.astype(dtype), q_pids, g_pids, q_cams, g_cams


def _assert_same(res, ref):
    mAP, cmc, ap, first, num_valid, num_skipped = ref
    assert res.num_valid == num_valid and res.num_skipped == num_skipped
    assert abs(res.mAP - mAP) <= 1e-9
    np.testing.assert_allclose(res.cmc, cmc, atol=1e-12)
    np.testing.assert_allclose(res.ap, ap, atol=1e-12)
    assert res.rank1 == pytest.approx(np.mean(first < 1))
    assert res.rank5 == pytest.approx(np.mean(first < 5))
    assert res.rank20 == pytest.approx(np.mean(first < 20))


@pytest.fixture(params=["routed", "all-candidates", "all-sorted"])
def row_path(request, monkeypatch):
    """Rows go through the candidate path, the whole-row sort, or are routed by their density."""
    fraction = {"routed": rank_module.DENSE_ROW_FRACTION, "all-candidates": 2.0, "all-sorted": -1.0}
    monkeypatch.setattr(rank_module, "DENSE_ROW_FRACTION", fraction[request.param])
    return request.param


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", range(4))
def test_matches_per_query_reference_with_ties_junk_and_skips(code_path, row_path, mode, seed):
    dist, qp, gp, qc, gc = _random_case(seed, ties=seed % 2 == 0, dtype=[np.float32, np.float64][seed // 2])
    ref = evaluate_per_query(dist, qp, gp, qc, gc, max_rank=30, ap_mode=mode)
    assert ref[5] >= 1  # the case really contains skipped queries
    for chunk in (None, 1, 300):
        res = evaluate(dist, qp, gp, qc, gc, max_rank=30, ap_mode=mode, chunk_elements=chunk)
        _assert_same(res, ref)


def test_tensor_and_integer_inputs_and_negative_zero(row_path):
    dist, qp, gp, qc, gc = _random_case(7)
    int_dist = (dist * 6).round().astype(np.int64) - 3  # integer distances, negative ones included
    ref = evaluate_per_query(int_dist, qp, gp, qc, gc)
    _assert_same(evaluate(torch.from_numpy(int_dist), torch.from_numpy(qp), gp, list(qc), gc), ref)
    zeros = np.zeros((3, 6), dtype=np.float32)
    zeros[:, ::2] = -0.0  # -0.0 and 0.0 tie: gallery order decides
    args = (np.array([1, 2, 3]), np.array([1, 0, 2, 2, 3, 1]), np.zeros(3), np.ones(6))
    _assert_same(evaluate(zeros, *args, max_rank=6), evaluate_per_query(zeros, *args, max_rank=6))


def test_hand_computed_average_precisions():
    # Query pid 1, cam 0. Gallery sorted by distance: match, other, match(same cam: junk), other, match.
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    g_pids = np.array([1, 2, 1, 3, 1])
    g_cams = np.array([1, 1, 0, 1, 1])
    args = (np.array([1]), g_pids, np.array([0]), g_cams)
    full = evaluate(dist, args[0], args[1], args[2], args[3], max_rank=4)
    # After junk removal: [hit, miss, miss, hit] -> AP = (1/1 + 2/4) / 2
    assert full.mAP == pytest.approx(0.75)
    np.testing.assert_allclose(full.cmc, [1, 1, 1, 1])
    trap = evaluate(dist, *args, ap_mode="trapezoid")
    # hit 1 at rank 1: (1 + 1)/2; hit 2 at rank 4: (1/3 + 2/4)/2
    assert trap.mAP == pytest.approx((1.0 + (1 / 3 + 0.5) / 2) / 2)
    # truncated50: a hit beyond rank 50 counts nothing but still divides
    far = np.concatenate([[0.0], np.linspace(1, 2, 60)])[None, :]
    far_pids = np.array([1] + [2] * 59 + [1])
    t50 = evaluate(far, [1], far_pids, [0], np.ones(61), ap_mode="truncated50")
    full50 = evaluate(far, [1], far_pids, [0], np.ones(61))
    assert t50.mAP == pytest.approx(0.5)
    assert full50.mAP == pytest.approx((1 + 2 / 61) / 2)


def test_junk_pid_option_and_distractors():
    dist = np.array([[0.1, 0.2, 0.3]])
    # A junk item ranked first: removed (default) or kept as a non-match (junk_pid=None).
    args = ([5], [-1, 0, 5], [0], [1, 1, 1])
    assert evaluate(dist, *args).rank1 == 0.0  # distractor pid 0 ranks first after junk removal
    assert evaluate(dist, *args).mAP == pytest.approx(0.5)
    assert evaluate(dist, *args, junk_pid=None).mAP == pytest.approx(1 / 3)


def test_result_type_dict_and_string():
    dist, qp, gp, qc, gc = _random_case(3)
    res = evaluate(dist, qp, gp, qc, gc, max_rank=12)
    assert isinstance(res, RankResult)
    assert res.cmc.shape == (12,) and res.ap.shape == (res.num_valid,)
    assert res.query_index.shape == (res.num_valid,) and 0 not in res.query_index
    d = res.as_dict()
    json.dumps(d)
    assert all(type(d[k]) is float for k in ("mAP", "rank1", "rank5", "rank10", "rank20"))
    assert type(d["num_valid"]) is int and len(d["cmc"]) == 12
    text = str(res)
    assert text.startswith(f"mAP {100 * res.mAP:.1f} | R1 {100 * res.rank1:.1f} R5 ")
    assert text.endswith(f"({res.num_valid} valid / {res.num_skipped} skipped)")


def test_bad_inputs_raise():
    dist = np.zeros((2, 3))
    ok = ([1, 2], [1, 2, 3], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="q_pids"):
        evaluate(dist, [1], *ok[1:])
    with pytest.raises(ValueError, match="g_camids"):
        evaluate(dist, *ok[:3], [1, 1])
    with pytest.raises(ValueError, match="ap_mode"):
        evaluate(dist, *ok, ap_mode="interpolated")
    with pytest.raises(ValueError, match="max_rank"):
        evaluate(dist, *ok, max_rank=0)
    with pytest.raises(ValueError, match="no query has a true match"):
        evaluate(dist, [7, 8], *ok[1:])
    nan = dist.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate(nan, *ok)
    with pytest.raises(ValueError, match="integers"):
        evaluate(dist, [1.5, 2], *ok[1:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inf_masks_items_out_and_ranks_last(code_path, row_path, dtype):
    # +inf is how a caller masks gallery items out of a query's ranking (recipes.chapter.within_family);
    # infinite true matches rank last too, tied with the masked items and ordered by gallery index.
    dist, qp, gp, qc, gc = _random_case(11, ties=False, dtype=dtype)
    good = (qp[:, None] == gp[None, :]) & (qc[:, None] != gc[None, :])
    dist[~good & (np.arange(dist.shape[1]) % 3 == 0)] = np.inf
    dist[good & (np.arange(dist.shape[1]) % 4 == 0)] = np.inf
    assert np.isinf(dist[good]).any()
    ref = evaluate_per_query(dist, qp, gp, qc, gc)
    _assert_same(evaluate(dist, qp, gp, qc, gc), ref)
    _assert_same(evaluate(dist, qp, gp, qc, gc, chunk_elements=300), ref)


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_nan_or_negative_inf_anywhere_raises_naming_the_query_row_and_gallery_column(row_path, bad):
    dist, qp, gp, qc, gc = _random_case(12, ties=False)
    good = (qp[:, None] == gp[None, :]) & (qc[:, None] != gc[None, :])
    far = int(np.flatnonzero(~good[4])[-1])  # not a true match: this used to rank last silently
    dist[4, far] = bad
    kind = "NaN" if np.isnan(bad) else "-inf"
    where = rf"in 1 query row \(row 4\) and 1 gallery column \(column {far}\)"
    expected = rf"^distmat: 1 distance is {kind}, {where}"
    with pytest.raises(NonFiniteError, match=expected):
        evaluate(dist, qp, gp, qc, gc)
    with pytest.raises(NonFiniteError, match=rf"blocks\[1\]: .* \(column {far}\)"):
        evaluate_blocks(lambda: [dist[:, :far], dist[:, far:]], qp, gp, qc, gc)


@pytest.mark.parametrize("mode", MODES)
def test_blocks_equal_full_matrix(mode):
    dist, qp, gp, qc, gc = _random_case(5)
    edges = [0, 1, 40, 41, 100, dist.shape[1]]

    def blocks():
        return (torch.from_numpy(dist[:, a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True))

    ref = evaluate_per_query(dist, qp, gp, qc, gc, max_rank=30, ap_mode=mode)
    # Cutoffs found by a first pass over the blocks ...
    _assert_same(evaluate_blocks(blocks, qp, gp, qc, gc, max_rank=30, ap_mode=mode), ref)
    # ... or given, with slack (which only costs memory).
    good = (qp[:, None] == gp[None, :]) & (qc[:, None] != gc[None, :]) & (gp[None, :] != -1)
    cutoff = np.where(good, dist, -np.inf).max(1).astype(np.float64) + 1e-3
    _assert_same(evaluate_blocks(blocks(), qp, gp, qc, gc, cutoff=cutoff, max_rank=30, ap_mode=mode), ref)


def test_blocks_reject_low_cutoff_and_wrong_coverage():
    dist, qp, gp, qc, gc = _random_case(6, ties=False)
    with pytest.raises(ValueError, match="cutoff of query row"):
        evaluate_blocks([dist], qp, gp, qc, gc, cutoff=np.full(len(qp), -10.0))
    with pytest.raises(ValueError, match="covered"):
        evaluate_blocks([dist[:, :10]], qp, gp, qc, gc, cutoff=np.full(len(qp), 10.0))
    with pytest.raises(ValueError, match="callable"):
        evaluate_blocks([dist], qp, gp, qc, gc)


@pytest.mark.parametrize("ties", [True, False], ids=["tied", "random"])
@pytest.mark.parametrize("mode", MODES)
def test_query_chunks_equal_the_whole_matrix(code_path, row_path, mode, ties):
    dist, qp, gp, qc, gc = _random_case(7, num_q=60, ties=ties)
    whole = evaluate(dist, qp, gp, qc, gc, max_rank=30, ap_mode=mode)
    labels = [torch.from_numpy(x) for x in (qp, gp, qc, gc)]
    for edges in ([0, 1, 2, 30, 31, 60], [0, 60], list(range(61))):
        ranker = QueryChunkRanker(*labels, max_rank=30, ap_mode=mode)
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            ranker.add(a, torch.from_numpy(dist[a:b]))
        res = ranker.result()
        assert res.mAP == whole.mAP and res.num_valid == whole.num_valid  # identical, not close
        np.testing.assert_array_equal(res.cmc, whole.cmc)
        np.testing.assert_array_equal(res.ap, whole.ap)
        np.testing.assert_array_equal(res.query_index, whole.query_index)
    _assert_same(whole, evaluate_per_query(dist, qp, gp, qc, gc, max_rank=30, ap_mode=mode))


def test_query_chunks_must_cover_the_queries_in_order():
    dist, qp, gp, qc, gc = _random_case(8)
    labels = [torch.from_numpy(x) for x in (qp, gp, qc, gc)]
    ranker = QueryChunkRanker(*labels)
    ranker.add(0, torch.from_numpy(dist[:10]))
    with pytest.raises(ValueError, match="starting at query 10, got 12"):
        ranker.add(12, torch.from_numpy(dist[12:20]))
    with pytest.raises(ValueError, match="does not fit"):
        ranker.add(10, torch.from_numpy(dist[10:20, :50]))
    with pytest.raises(ValueError, match="only 10 of 25 queries"):
        ranker.result()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    for seed, dtype in ((0, np.float32), (1, np.float64)):
        dist, qp, gp, qc, gc = _random_case(seed, dtype=dtype)
        res = evaluate(torch.from_numpy(dist).cuda(), qp, gp, qc, gc)
        _assert_same(res, evaluate_per_query(dist, qp, gp, qc, gc))
