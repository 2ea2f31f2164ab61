"""Benchmark: reidlib's vectorised CMC/mAP against a plain per-query numpy loop, at Market-1501 size.

Both compute the same protocol (same-identity-same-camera and junk removal, stable ranking, skipped
queries, non-interpolated AP over the full list). The loop is the tested reference
(``tests/evaluation/reference.py``): per query, a stable ``np.argsort`` of its row, then masks and a
cumulative sum - the structure of the evaluation code most re-ID repositories ship.

The distance matrix is synthetic but shaped like a trained model's on Market-1501: 3,368 queries,
19,732 gallery items (750 identities over 6 cameras, ~17 images each, plus 6,617 pid-0 distractors),
embeddings = identity centre + camera shift + noise (dim 256), giving mAP ~80 % / rank-1 ~97 %. The
speed of the fast path depends on how far down each query's last true match sits (that is how much of
the matrix it has to look at), so ``--uninformative`` also times a random matrix, its worst case.

Run: ``python benchmarks/bench_evaluate.py`` (about a minute; single-threaded on both sides).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reidlib.evaluation import evaluate, pairwise_distance  # noqa: E402
from tests.evaluation.reference import evaluate_per_query  # noqa: E402

NUM_QUERY, NUM_GALLERY, NUM_IDS, NUM_CAMS, NUM_DISTRACTORS = 3368, 19732, 750, 6, 6617


def market_like_features(
    seed: int = 0,
    dim: int = 256,
    noise: float = 1.5,
    num_query: int = NUM_QUERY,
    num_gallery: int = NUM_GALLERY,
):
    """Market-1501-shaped synthetic embeddings and labels (sizes scalable for smaller runs).

    Returns ``(q_feats, g_feats, q_pids, g_pids, q_cams, g_cams)``; features are L2-normalised
    float32 tensors, labels int64 numpy arrays; gallery pid 0 = distractor (a random person each).
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((NUM_IDS + 1, dim)).astype(np.float32)
    cam_shift = 0.5 * rng.standard_normal((NUM_CAMS, dim)).astype(np.float32)
    num_distractors = round(num_gallery * NUM_DISTRACTORS / NUM_GALLERY)
    g_pids = np.concatenate(
        [rng.integers(1, NUM_IDS + 1, num_gallery - num_distractors), np.zeros(num_distractors, np.int64)]
    )
    q_pids = rng.integers(1, NUM_IDS + 1, num_query)
    g_cams, q_cams = rng.integers(0, NUM_CAMS, num_gallery), rng.integers(0, NUM_CAMS, num_query)

    def embed(pids, cams):
        base = centres[pids].copy()
        base[pids == 0] = rng.standard_normal((int((pids == 0).sum()), dim))
        x = base + cam_shift[cams] + noise * rng.standard_normal((len(pids), dim)).astype(np.float32)
        return torch.nn.functional.normalize(torch.from_numpy(x), dim=1)

    return embed(q_pids, q_cams), embed(g_pids, g_cams), q_pids, g_pids, q_cams, g_cams


def _timed(fn, repeats: int):
    """(result, best wall seconds, CPU seconds of that run) over ``repeats`` runs."""
    best = (None, float("inf"), 0.0)
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        w, c = time.perf_counter() - w, time.process_time() - c
        if w < best[1]:
            best = (out, w, c)
    return best


def compare(name: str, dist: np.ndarray, labels, repeats: int) -> None:
    ref, t_ref, c_ref = _timed(lambda: evaluate_per_query(dist, *labels), 1)
    res, t_fast, c_fast = _timed(lambda: evaluate(dist, *labels), repeats)
    mAP, cmc, ap = ref[0], ref[1], ref[2]
    print(f"\n[{name}] {dist.shape[0]} x {dist.shape[1]} distance matrix")
    print(f"  result           : {res}")
    print(f"  per-query loop   : {t_ref:7.2f} s wall ({c_ref:6.2f} s CPU)")
    print(f"  reidlib evaluate : {t_fast:7.3f} s wall ({c_fast:6.3f} s CPU), best of {repeats}")
    print(f"  speed-up         : {t_ref / t_fast:7.1f}x wall, {c_ref / max(c_fast, 1e-9):.1f}x CPU")
    print(
        f"  max |difference| : mAP {abs(res.mAP - mAP):.1e}, per-query AP {np.abs(res.ap - ap).max():.1e}, "
        f"CMC {np.abs(res.cmc - cmc).max():.1e} (valid {res.num_valid} / skipped {res.num_skipped})"
    )
    if abs(res.mAP - mAP) > 1e-6 or np.abs(res.cmc - cmc).max() > 1e-6:
        raise SystemExit("results differ by more than 1e-6")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the fast path (best kept)")
    parser.add_argument("--uninformative", action="store_true", help="also time a random distance matrix")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the loop is single-threaded; so is the comparison

    q, g, q_pids, g_pids, q_cams, g_cams = market_like_features()
    dist = pairwise_distance(q, g).numpy()
    labels = (q_pids, g_pids, q_cams, g_cams)
    compare("Market-1501-like embeddings", dist, labels, args.repeats)
    if args.uninformative:
        rand = np.random.default_rng(1).random(dist.shape, dtype=np.float32)
        compare("uninformative random distances (worst case)", rand, labels, args.repeats)


if __name__ == "__main__":
    main()
