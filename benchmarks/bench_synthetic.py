"""Rendering speed of SynthReID, single-threaded: ``python benchmarks/bench_synthetic.py [--n 600]``.

Prints images per second (wall clock and CPU time) for rendering full samples (image + part and cue
masks) of the ``small`` preset at 256x128, the size the issue's target (>= 200 images/s per core) is for.
"""

from __future__ import annotations

import os

# one core: keep BLAS/OpenMP from spreading the small matrix products over threads
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

from reidlib.data.synthetic import SynthReID  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=600, help="images to render")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    synth = SynthReID(args.preset, seed=args.seed, height=args.height, width=args.width)
    records = synth.splits.train + synth.splits.query + synth.splits.gallery
    keys = [records[i * len(records) // args.n].path for i in range(args.n)]
    for key in keys[:10]:  # warm-up (imports, first allocations)
        synth.render(key)
    wall, cpu = time.perf_counter(), time.process_time()
    for key in keys:
        synth.render(key)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"SynthReID {args.preset} {args.height}x{args.width}: {args.n} images")
    print(f"images/s (wall): {args.n / wall:.1f}")
    print(f"images/s (cpu):  {args.n / cpu:.1f}")


if __name__ == "__main__":
    main()
