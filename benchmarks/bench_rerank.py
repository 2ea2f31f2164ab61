"""Benchmark: reidlib's k-reciprocal re-ranking against the dense numpy algorithm.

* ours: :func:`reidlib.evaluation.rerank` on the three distance matrices at Market-1501 size
  (3,368 queries + 19,732 gallery = 23,100 images), float32, one thread.
* dense: the released code's algorithm written plainly on dense (N, N) arrays
  (``tests/evaluation/reference.py::rerank_dense``, float32 and quicksort as in the released code). It
  needs several (N, N) arrays - about 10 GB at Market size, too much for this shared machine - so it
  runs at smaller N (by default a quarter and a half of Market's 23,100, same query share), our
  version runs at the same sizes for a direct comparison and an equality check, and the dense time
  and memory at full size are EXTRAPOLATED: time with the power law through the two measured sizes,
  memory with ``a + b N^2``.

Inputs: Market-1501-like embeddings (identity centre + camera shift + noise, dim 256, see
``bench_evaluate.py``) and their Euclidean distances; the feature dimension does not matter to either
algorithm, which both start from the matrices. Each measurement runs in its own process; peak memory
is that process's peak resident set size (``VmHWM``, reset after the inputs are built, so "peak" is
inputs + working memory and "working" is the part the algorithm adds).

Agreement is reported twice at each measured size: against the released float32 code (whose own k-NN
sets depend on float32 rounding of near-equal distances and on quicksort's order of ties, so a few
entries may differ) and against the same dense algorithm in float64 with a stable sort, where the
final distances must agree within 1e-4.

Run: ``python benchmarks/bench_rerank.py`` (about 3-4 minutes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_evaluate import NUM_GALLERY, NUM_QUERY, market_like_features  # noqa: E402
from memory_probe import reset_peak as _reset_peak  # noqa: E402
from memory_probe import rss_bytes as _rss_bytes  # noqa: E402

from reidlib.evaluation import pairwise_distance, rerank, rerank_features  # noqa: E402
from tests.evaluation.reference import rerank_dense  # noqa: E402

MARKET_N = NUM_QUERY + NUM_GALLERY
GiB = 2**30


def _symmetrise_(m: torch.Tensor, block: int = 2048) -> None:
    """``m = (m + m^T) / 2`` in place, block by block (no second N x N array)."""
    n = m.shape[0]
    for i in range(0, n, block):
        for j in range(i, n, block):
            a, b = m[i : i + block, j : j + block], m[j : j + block, i : i + block]
            avg = (a + b.T) / 2
            a.copy_(avg)
            b.copy_(avg.T)


def worker(kind: str, n: int, save: str | None) -> None:
    torch.set_num_threads(1)
    num_q = round(n * NUM_QUERY / MARKET_N)
    q, g, *_ = market_like_features(num_query=num_q, num_gallery=n - num_q)
    if kind == "features":
        inputs_bytes = 0
        _reset_peak()
        before = _rss_bytes("VmRSS")
        w, c = time.perf_counter(), time.process_time()
        out = rerank_features(q, g)
    else:
        qg, qq, gg = pairwise_distance(q, g), pairwise_distance(q, q), pairwise_distance(g, g)
        _symmetrise_(qq)
        _symmetrise_(gg)
        inputs_bytes = sum(x.numel() * x.element_size() for x in (qg, qq, gg))
        if kind in ("dense", "dense64"):
            qg, qq, gg = qg.numpy(), qq.numpy(), gg.numpy()
        del q, g
        peak_reset = _reset_peak()
        before = _rss_bytes("VmRSS")
        w, c = time.perf_counter(), time.process_time()
        if kind == "ours":
            out = rerank(qg, qq, gg)
        elif kind == "dense64":
            out = rerank_dense(qg, qq, gg, dtype=np.float64, sort_kind="stable")
        else:
            out = rerank_dense(qg, qq, gg, dtype=np.float32, sort_kind="quicksort")
        if not peak_reset:
            print("warning: could not reset the peak RSS; it includes building the inputs", file=sys.stderr)
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    peak = _rss_bytes("VmHWM")
    if save:
        np.save(save, np.asarray(out, dtype=np.float32))
    print(json.dumps({"wall": wall, "cpu": cpu, "peak": peak, "before": before, "inputs": inputs_bytes}))


def run(kind: str, n: int, save: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--n", str(n)] + (["--save", save] if save else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} at N={n} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def line(label: str, r: dict) -> str:
    return (
        f"  {label:<34} {r['wall']:7.1f} s wall {r['cpu']:7.1f} s CPU | peak {r['peak'] / GiB:5.2f} GiB "
        f"(inputs {r['inputs'] / GiB:4.2f} GiB, working {(r['peak'] - r['before']) / GiB:5.2f} GiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dense-sizes", type=int, nargs=2, default=[MARKET_N // 4, MARKET_N // 2])
    parser.add_argument("--features", action="store_true", help="also time rerank_features (no g_g)")
    parser.add_argument("--worker", choices=["ours", "dense", "dense64", "features"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--no-exact-check", action="store_true",
                        help="skip the float64 dense run that checks agreement within 1e-4 (saves ~1 min)")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.n, args.save)
        return

    print("k-reciprocal re-ranking, k1=20 k2=6 lambda=0.3, float32, 1 thread; N = queries + gallery")
    dense, small = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.dense_sizes:
            print(f"\nN = {n} (measured)")
            dense[n] = run("dense", n, f"{tmp}/dense_{n}.npy")
            small[n] = run("ours", n, f"{tmp}/ours_{n}.npy")
            ours_out = np.load(f"{tmp}/ours_{n}.npy")
            diff = np.abs(np.load(f"{tmp}/dense_{n}.npy") - ours_out)
            print(line("dense numpy (released algorithm)", dense[n]))
            print(line("reidlib rerank", small[n]))
            print(
                f"  speed-up {dense[n]['wall'] / small[n]['wall']:.1f}x wall; "
                f"max |ours - dense| = {diff.max():.2e}, entries > 1e-4: {(diff > 1e-4).mean():.2e}"
            )
            if not args.no_exact_check:
                # float32 rounding of dist^2 / max makes near-equal neighbours tie or swap, and quicksort
                # orders ties arbitrarily, so the released float32 code's k-NN sets are themselves
                # rounding-dependent. The same algorithm in float64 with a stable sort has none of that.
                run("dense64", n, f"{tmp}/dense64_{n}.npy")
                exact = np.abs(np.load(f"{tmp}/dense64_{n}.npy") - ours_out)
                print(f"  vs the dense algorithm in float64, stable sort: max |ours - dense64| = "
                      f"{exact.max():.2e} ({'within' if exact.max() <= 1e-4 else 'ABOVE'} 1e-4)")
    print(f"\nN = {MARKET_N} (Market-1501 size)")
    ours = run("ours", MARKET_N)
    print(line("reidlib rerank (measured)", ours))
    if args.features:
        print(line("reidlib rerank_features (measured)", run("features", MARKET_N)))
    (n1, n2) = args.dense_sizes
    p = np.log(dense[n2]["wall"] / dense[n1]["wall"]) / np.log(n2 / n1)
    t_full = dense[n2]["wall"] * (MARKET_N / n2) ** p
    b = (dense[n2]["peak"] - dense[n1]["peak"]) / (n2**2 - n1**2)
    a = dense[n2]["peak"] - b * n2**2
    m_full = a + b * MARKET_N**2
    print(
        f"  dense numpy (EXTRAPOLATED)         {t_full:7.1f} s wall (t ~ N^{p:.2f}) | peak "
        f"{m_full / GiB:5.2f} GiB (a + b N^2)"
    )
    ok = "within" if ours["peak"] <= 4 * GiB else "ABOVE"
    print(f"  speed-up vs extrapolated dense: {t_full / ours['wall']:.1f}x wall")
    peak = ours["peak"] / GiB
    print(f"  ours' peak {peak:.2f} GiB, {ok} the 4 GiB budget (inputs and the interpreter included)")


if __name__ == "__main__":
    main()
