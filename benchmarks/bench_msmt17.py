"""Benchmark: evaluation and k-reciprocal re-ranking at MSMT17 size in bounded memory.

MSMT17's test split has 11,659 query and 82,161 gallery images (3,060 identities, 15 cameras). The
common toolboxes hold the ``(Q, G)`` distance matrix (3.8 GB in float32) to evaluate, and the dense
re-ranking several ``(Q + G)^2`` arrays (35 GB each in float32), more than this 24 GB machine has.

Measured here, each in its own process on synthetic L2-normalised features of MSMT17's sizes (identity
centre + camera shift + noise, dimension 2,048 and 512):

* **evaluation**: :func:`reidlib.evaluation.evaluate_features` with ``max_memory="6GB"`` (a chunk of
  queries at a time), and, for comparison and as an equality check, the whole-matrix path
  (:func:`~reidlib.evaluation.pairwise_distance` then :func:`~reidlib.evaluation.evaluate`), which still
  fits at this size;
* **re-ranking** (k1 = 20, k2 = 6, lambda = 0.3): ``evaluate_features(rerank=True, max_memory="8GB")``,
  re-ranked rows streamed into the ranking;
* **the dense re-ranking** (``tests/evaluation/reference.py::rerank_dense``: the released algorithm on
  dense ``(N, N)`` arrays, float32 and quicksort as in the released code) at two smaller sizes with
  MSMT17's query share, beside ours on the same features (their largest difference is reported), and
  EXTRAPOLATED to MSMT17's N = 93,820: time with the power law through the two sizes, memory with
  ``a + b N^2``.

Peak memory is the process's peak resident set size (``VmHWM``), reset after the features are built:
"working" is what the measured call added beyond its inputs. All threads of the machine are used.

Run: ``python benchmarks/bench_msmt17.py`` (about 10 minutes on 2 cores); it prints a table and writes
``results/benchmarks/retrieval_msmt17_cpu.json`` with provenance.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from memory_probe import reset_peak, rss_bytes  # noqa: E402
from results_file import write_results  # noqa: E402

from reidlib.evaluation import evaluate, evaluate_features, pairwise_distance, rerank_features  # noqa: E402
from tests.evaluation.reference import rerank_dense  # noqa: E402

NUM_QUERY, NUM_GALLERY, NUM_IDS, NUM_CAMS = 11659, 82161, 3060, 15
EVAL_BOUND, RERANK_BOUND = "6GB", "8GB"
TARGETS = {"evaluation": {"wall_s": 60, "working_gb": 6}, "rerank": {"wall_s": 300, "peak_gb": 8}}
GB = 1e9


def msmt_like_features(dim: int, num_query: int = NUM_QUERY, num_gallery: int = NUM_GALLERY, seed: int = 0,
                       noise: float = 1.3) -> tuple[torch.Tensor, ...]:
    """``(q_feats, g_feats, q_pids, g_pids, q_cams, g_cams)``: L2-normalised float32 features, int64 labels.

    A feature is its identity's centre (standard normal) + its camera's shift (0.5 x standard normal) +
    noise of standard deviation ``noise x (dim / 64)^(1/4)`` per dimension, then normalised; the
    dimension-dependent noise keeps the ranking about as hard at 512 and 2,048 (mAP ~50-60 %, rank-1
    ~90 % with 3,000 queries), like a trained model's. Every query identity also appears in the gallery.
    """
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(NUM_IDS, dim, generator=g)
    shift = 0.5 * torch.randn(NUM_CAMS, dim, generator=g)
    q_pids = torch.randint(0, NUM_IDS, (num_query,), generator=g)
    extra = torch.randint(0, NUM_IDS, (num_gallery - NUM_IDS,), generator=g)
    g_pids = torch.cat([torch.arange(NUM_IDS), extra])
    q_cams = torch.randint(0, NUM_CAMS, (num_query,), generator=g)
    g_cams = torch.randint(0, NUM_CAMS, (num_gallery,), generator=g)

    def embed(pids: torch.Tensor, cams: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(pids), dim)
        for s in range(0, len(pids), 8192):  # no second full-size temporary
            p, c = pids[s : s + 8192], cams[s : s + 8192]
            x = centres[p] + shift[c] + noise * (dim / 64) ** 0.25 * torch.randn(len(p), dim, generator=g)
            out[s : s + 8192] = torch.nn.functional.normalize(x, dim=1)
        return out

    return embed(q_pids, q_cams), embed(g_pids, g_cams), q_pids, g_pids, q_cams, g_cams


def worker(kind: str, dim: int, n: int | None, save: str | None) -> None:
    num_q = NUM_QUERY if n is None else round(n * NUM_QUERY / (NUM_QUERY + NUM_GALLERY))
    num_g = NUM_GALLERY if n is None else n - num_q
    q, g, qp, gp, qc, gc = msmt_like_features(dim, num_q, num_g)
    inputs = (q.numel() + g.numel()) * 4
    metrics: dict[str, Any] = {}
    if kind == "dense_rerank":
        qg, qq, gg = pairwise_distance(q, g), pairwise_distance(q, q), pairwise_distance(g, g)
        qq, gg = (qq + qq.T) / 2, (gg + gg.T) / 2
        qg, qq, gg = qg.numpy(), qq.numpy(), gg.numpy()
        inputs = sum(x.nbytes for x in (qg, qq, gg))
        del q, g
    reset_peak()
    before = rss_bytes()
    t0 = time.perf_counter()
    if kind == "evaluation":
        r = evaluate_features(q, g, qp, gp, qc, gc, max_memory=EVAL_BOUND)
    elif kind == "evaluation_whole_matrix":
        r = evaluate(pairwise_distance(q, g), qp, gp, qc, gc)
    elif kind == "rerank":
        r = evaluate_features(q, g, qp, gp, qc, gc, rerank=True, max_memory=RERANK_BOUND)
    elif kind == "rerank_rows":  # the same re-ranking as a matrix, to compare with the dense one
        out = rerank_features(q, g).numpy()
        r = None
    elif kind == "dense_rerank":
        out = rerank_dense(qg, qq, gg, dtype=np.float32, sort_kind="quicksort")
        r = None
    else:
        raise SystemExit(f"unknown measurement {kind}")
    wall = time.perf_counter() - t0
    peak = rss_bytes("VmHWM")
    if r is not None:
        metrics = {"mAP": r.mAP, "rank1": r.rank1, "num_valid": r.num_valid}
    if save:
        np.save(save, out)
    print(json.dumps({"wall_s": wall, "peak_gb": peak / GB, "working_gb": (peak - before) / GB,
                      "inputs_gb": inputs / GB, "num_query": num_q, "num_gallery": num_g, **metrics}))


def run(kind: str, dim: int, n: int | None = None, save: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", kind, "--dim", str(dim)]
    cmd += (["--n", str(n)] if n else []) + (["--save", save] if save else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} (dim {dim}, N={n or 'MSMT17'}) failed:\n{proc.stderr[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row.update(task=kind, dim=dim, measured=True)
    label = f"{kind} dim {dim} N={row['num_query'] + row['num_gallery']}"
    mAP = f" mAP {100 * row['mAP']:.2f}%" if "mAP" in row else ""
    print(f"  {label:<44} {row['wall_s']:7.1f} s | peak {row['peak_gb']:5.2f} GB, working "
          f"{row['working_gb']:5.2f} GB{mAP}", flush=True)
    return row


def extrapolate(small: dict, large: dict, n_full: int) -> dict[str, Any]:
    """Dense re-ranking at ``n_full`` from two measured sizes: time ~ N^p, peak memory a + b N^2."""
    n1, n2 = (r["num_query"] + r["num_gallery"] for r in (small, large))
    p = float(np.log(large["wall_s"] / small["wall_s"]) / np.log(n2 / n1))
    b = (large["peak_gb"] - small["peak_gb"]) / (n2**2 - n1**2)
    a = large["peak_gb"] - b * n2**2
    return {"task": "dense_rerank", "dim": large["dim"], "measured": False, "num_query": NUM_QUERY,
            "num_gallery": NUM_GALLERY, "wall_s": large["wall_s"] * (n_full / n2) ** p,
            "peak_gb": a + b * n_full**2, "time_exponent": p, "from_sizes": [n1, n2]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dims", type=int, nargs="+", default=[2048, 512])
    p.add_argument("--dense-sizes", type=int, nargs=2, default=[6000, 12000],
                   help="N = Q + G of the two dense re-ranking measurements")
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "retrieval_msmt17_cpu.json"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.dim, args.n, args.save)
        return 0
    print(f"MSMT17 size: {NUM_QUERY} queries x {NUM_GALLERY} gallery, {torch.get_num_threads()} threads")
    rows = []
    for dim in args.dims:
        rows.append(run("evaluation", dim))
        rows.append(run("rerank", dim))
    whole = run("evaluation_whole_matrix", args.dims[0])
    rows.append(whole)
    chunked = next(r for r in rows if r["task"] == "evaluation" and r["dim"] == args.dims[0])
    same = chunked["mAP"] == whole["mAP"] and chunked["rank1"] == whole["rank1"]
    print(f"  chunked and whole-matrix evaluation: {'identical' if same else 'DIFFERENT'} mAP and rank-1")
    dim = min(args.dims)  # the dense algorithm starts from the matrices; the dimension only sets their cost
    dense, agreement = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.dense_sizes:
            dense.append(run("dense_rerank", dim, n, f"{tmp}/dense.npy"))
            rows.append(dense[-1])
            ours = run("rerank_rows", dim, n, f"{tmp}/ours.npy")
            rows.append(ours)
            diff = np.abs(np.load(f"{tmp}/dense.npy") - np.load(f"{tmp}/ours.npy"))
            agreement.append({"n": n, "max_abs_difference": float(diff.max()),
                              "share_above_1e-4": float((diff > 1e-4).mean())})
            print(f"  N={n}: max |ours - dense| = {diff.max():.2e}, "
                  f"entries > 1e-4: {(diff > 1e-4).mean():.2e}")
    rows.append(extrapolate(dense[0], dense[1], NUM_QUERY + NUM_GALLERY))
    print(f"  dense re-ranking at MSMT17 size (EXTRAPOLATED): {rows[-1]['wall_s']:.0f} s, "
          f"{rows[-1]['peak_gb']:.1f} GB")
    write_results(args.out, "retrieval_msmt17", "cpu", rows=rows, targets=TARGETS,
                  chunked_equals_whole_matrix=same, dense_agreement=agreement,
                  settings={"k1": 20, "k2": 6, "lambda": 0.3, "eval_max_memory": EVAL_BOUND,
                            "rerank_max_memory": RERANK_BOUND, "num_ids": NUM_IDS, "num_cams": NUM_CAMS})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
