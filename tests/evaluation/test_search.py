import numpy as np
import pytest
import torch

from reidlib.evaluation.search import collect_at_most, lexsort_rows, smallest_k, topk_search


def _stable_first_k(x, k):
    order = np.argsort(x, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(x, order, 1), order


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_smallest_k_is_a_stable_sort_prefix_with_ties_and_nan(code_path, dtype):
    rng = np.random.default_rng(0)
    x = np.round(rng.random((40, 30)) * 5) / 5  # ties everywhere, also at the k-th value
    x[3, :25] = np.nan  # fewer than k real values: NaN comes last
    for k in (1, 4, 9, 30):
        vals, cols = smallest_k(torch.from_numpy(x).to(dtype), k)
        ref_vals, ref_cols = _stable_first_k(x, k)
        np.testing.assert_array_equal(cols.numpy(), ref_cols)
        np.testing.assert_allclose(vals.double().numpy(), ref_vals, equal_nan=True)
    with pytest.raises(ValueError, match="k"):
        smallest_k(torch.zeros(2, 3), 4)


def test_topk_search_streams_the_gallery(code_path):
    rng = np.random.default_rng(1)
    # Small integers with a zero query mean keep every distance exact, so ties are real ties.
    q = rng.integers(-3, 4, (5, 6))
    q = torch.from_numpy(np.concatenate([q, -q]).astype(np.float32))
    g = torch.from_numpy(rng.integers(-3, 4, (50, 6)).astype(np.float32))
    g[10] = g[30] = g[31]  # duplicates: tied distances, broken by gallery index
    full = ((q.double()[:, None] - g.double()[None]) ** 2).sum(-1).numpy()
    ref_vals, ref_idx = _stable_first_k(full, 7)
    assert (ref_vals[:, 1:] == ref_vals[:, :-1]).any()  # the case has ties inside the top 7
    for chunk in (3, 7, 16, 100):
        vals, idx = topk_search(q, g, 7, metric="sqeuclidean", chunk_size=chunk)
        assert vals.shape == idx.shape == (10, 7) and idx.dtype == torch.int64
        np.testing.assert_array_equal(idx.numpy(), ref_idx)
        np.testing.assert_allclose(vals.numpy(), ref_vals, rtol=1e-5, atol=1e-5)
    # An iterable of feature chunks (e.g. read from disk), of uneven sizes.
    chunks = [g[:5].numpy(), g[5:33], g[33:]]
    _, idx = topk_search(q, iter(chunks), 7, metric="sqeuclidean")
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    with pytest.raises(ValueError, match="fewer than k"):
        topk_search(q, g, 51)
    with pytest.raises(ValueError, match="k"):
        topk_search(q, g, 0)


def test_collect_and_lexsort_match_a_plain_loop(code_path):
    rng = np.random.default_rng(2)
    base = np.round(rng.random((20, 12)) * 4) / 4
    cutoff = np.quantile(base, 0.4, axis=1)
    for block in (torch.from_numpy(base.astype(np.float32)), torch.from_numpy(base.T.copy()).T):
        rows, cols, vals = collect_at_most(block, torch.from_numpy(cutoff).to(block.dtype))
        ref = [(r, c) for r in range(20) for c in range(12) if base[r, c] <= cutoff[r]]
        assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == ref  # row-major order
        srows, scols = lexsort_rows(rows, cols, vals, 20, 12)
        expect = sorted(ref, key=lambda rc: (rc[0], base[rc], rc[1]))
        assert list(zip(srows.tolist(), scols.tolist(), strict=True)) == expect
