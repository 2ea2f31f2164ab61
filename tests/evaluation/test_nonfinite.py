"""NaN and inf inputs raise NonFiniteError naming the offending rows, in every evaluation entry point.

Without the checks one NaN query embedding made the whole distance matrix NaN (through the query
mean the distances are centred on), and re-ranking returned an all-NaN matrix without an error.
"""

import numpy as np
import pytest
import torch

from reidlib.evaluation import evaluate_features, pairwise_distance, rerank, rerank_features, topk_search
from reidlib.evaluation.arrays import NonFiniteError, all_finite, check_finite, check_finite_distances
from reidlib.evaluation.query_expansion import query_expansion


def _case(seed=0, num_q=12, num_g=40, dim=6):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((5, dim)).astype(np.float32)
    qp, gp = rng.integers(0, 5, num_q), rng.integers(0, 5, num_g)
    q = centres[qp] + 0.5 * rng.standard_normal((num_q, dim)).astype(np.float32)
    g = centres[gp] + 0.5 * rng.standard_normal((num_g, dim)).astype(np.float32)
    return q, g, qp, gp, np.zeros(num_q, dtype=np.int64), np.ones(num_g, dtype=np.int64)


def _nan_query_row_3(q):
    q = q.copy()
    q[3, 1] = np.nan
    return q


def _inf_gallery_row_5(g):
    g = g.copy()
    g[5, 0] = np.inf
    return g


def test_error_is_a_value_error():
    # The CLI prints ValueErrors as one line; NonFiniteError must stay one.
    assert issubclass(NonFiniteError, ValueError)


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_pairwise_distance_names_the_query_and_gallery_rows(code_path, metric):
    q, g, *_ = _case()
    with pytest.raises(NonFiniteError, match=r"^q: 1 of 12 query rows holds NaN \(row 3\)"):
        pairwise_distance(_nan_query_row_3(q), g, metric)
    with pytest.raises(NonFiniteError, match=r"^g: 1 of 40 gallery rows holds inf \(row 5\)"):
        pairwise_distance(torch.from_numpy(q), torch.from_numpy(_inf_gallery_row_5(g)), metric)


def test_many_bad_rows_are_counted_and_the_first_ten_listed():
    q, g, *_ = _case()
    g[[2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24]] = np.nan
    g[30, 2] = -np.inf
    listed = r"\(rows 2, 4, 6, 8, 10, 12, 14, 16, 18, 20 and 3 more\)"
    expected = r"^g: 13 of 40 gallery rows hold NaN and inf " + listed
    with pytest.raises(NonFiniteError, match=expected):
        pairwise_distance(q, g)


@pytest.mark.parametrize(
    "options",
    [{}, {"gallery_chunk": 7}, {"rerank": True, "k1": 5, "k2": 2}],
    ids=["matrix", "chunked", "rerank"],
)
def test_evaluate_features_names_the_culprit_before_ranking(options):
    q, g, qp, gp, qc, gc = _case(1)
    with pytest.raises(NonFiniteError, match=r"^q_feats: 1 of 12 query rows holds NaN \(row 3\)"):
        evaluate_features(_nan_query_row_3(q), g, qp, gp, qc, gc, **options)
    # The gallery row is named by its index in the whole gallery, also when it is read in blocks.
    with pytest.raises(NonFiniteError, match=r"^g_feats: 1 of 40 gallery rows holds inf \(row 5\)"):
        evaluate_features(q, _inf_gallery_row_5(g), qp, gp, qc, gc, **options)
    assert evaluate_features(q, g, qp, gp, qc, gc, **options).num_valid == 12  # the clean case runs


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_rerank_features_names_the_rows(code_path, metric):
    q, g, *_ = _case(2)
    with pytest.raises(NonFiniteError, match=r"^q_feats: 1 of 12 query rows holds NaN \(row 3\)"):
        rerank_features(_nan_query_row_3(q), g, k1=5, k2=2, metric=metric)
    with pytest.raises(NonFiniteError, match=r"^g_feats: 1 of 40 gallery rows holds inf \(row 5\)"):
        rerank_features(q, _inf_gallery_row_5(g), k1=5, k2=2, metric=metric)


def test_rerank_names_the_matrix_its_rows_and_columns():
    q, g, *_ = _case(3)
    qg, qq, gg = (pairwise_distance(a, b).numpy() for a, b in ((q, g), (q, q), (g, g)))
    bad_qg = qg.copy()
    bad_qg[2, 7] = np.nan
    expected = r"^q_g: 1 distance is NaN, in 1 query row \(row 2\) and 1 gallery column \(column 7\);"
    with pytest.raises(NonFiniteError, match=expected):
        rerank(bad_qg, qq, gg, k1=5, k2=2)
    # +inf is no mask here: every row is scaled by its maximum, so it would make the row NaN.
    bad_gg = gg.copy()
    bad_gg[[5, 9], 5] = np.inf
    expected = r"^g_g: 2 distances are inf, in 2 gallery rows \(rows 5, 9\) and 1 gallery column \(column 5\)"
    with pytest.raises(NonFiniteError, match=expected):
        rerank(qg, qq, bad_gg, k1=5, k2=2)
    bad_qq = torch.from_numpy(qq.copy())
    bad_qq[0, 11] = -torch.inf
    with pytest.raises(NonFiniteError, match=r"^q_q: .* query column \(column 11\)"):
        rerank(torch.from_numpy(qg), bad_qq, torch.from_numpy(gg), k1=5, k2=2)


def test_query_expansion_names_the_rows():
    q, g, *_ = _case(4)
    with pytest.raises(NonFiniteError, match=r"^q_feats: 1 of 12 query rows holds NaN \(row 3\)"):
        query_expansion(_nan_query_row_3(q), g, 2, 3)
    with pytest.raises(NonFiniteError, match=r"^g_feats: 1 of 40 gallery rows holds inf \(row 5\)"):
        query_expansion(q, _inf_gallery_row_5(g), 2, 3)


def test_topk_search_names_gallery_rows_by_their_index_in_the_whole_gallery():
    q, g, *_ = _case(5)
    with pytest.raises(NonFiniteError, match=r"^q: 1 of 12 query rows holds NaN \(row 3\)"):
        topk_search(_nan_query_row_3(q), g, 3)
    with pytest.raises(NonFiniteError, match=r"^g: 1 of 40 gallery rows holds inf \(row 5\)"):
        topk_search(q, _inf_gallery_row_5(g), 3, chunk_size=4)
    bad = g.copy()
    bad[33] = np.nan
    # Chunks read one at a time (e.g. from disk): chunk 3 (the fourth) holds gallery rows 30..39.
    with pytest.raises(NonFiniteError, match=r"^g chunk 3: 1 of 10 gallery rows holds NaN \(row 33\)"):
        topk_search(q, (bad[s : s + 10] for s in range(0, 40, 10)), 3)


def test_check_finite_names_paths_and_offset_rows():
    x = torch.zeros(4, 3)
    x[1, 2] = torch.nan
    x[3, 0] = torch.inf
    paths = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    expected = r"^emb: 2 of 4 image rows hold NaN and inf \(row 101: b.jpg, row 103: d.jpg\); why$"
    with pytest.raises(NonFiniteError, match=expected):
        check_finite(x, "emb", "image", paths=paths, offset=100, hint="why")


def test_half_precision_and_overflowing_sums_are_no_false_alarm():
    big = torch.full((4, 3), 3e38)  # finite, but the sum overflows to inf
    assert not all_finite(big)
    check_finite(big, "x", "query")  # the exact search clears it
    check_finite_distances(big, "d")
    half = torch.full((8, 4), 60000.0, dtype=torch.float16)  # a float16 sum would overflow
    assert all_finite(half)
    half[6, 1] = torch.nan
    with pytest.raises(NonFiniteError, match=r"\(row 6\)"):
        check_finite(half, "x", "query")


def test_posinf_is_allowed_only_where_asked():
    d = torch.zeros(3, 5)
    d[1, 4] = torch.inf
    check_finite_distances(d, "distmat", allow_posinf=True)
    with pytest.raises(NonFiniteError, match=r"^distmat: 1 distance is inf, in 1 query row \(row 1\)"):
        check_finite_distances(d, "distmat")
    d[2, 0] = -torch.inf
    expected = r"^blocks\[3\]: 1 distance is -inf, .* \(column 20\); \+inf ranks last"
    with pytest.raises(NonFiniteError, match=expected):
        check_finite_distances(d, "blocks[3]", allow_posinf=True, col_offset=20)
