"""Print every difference between two trees of results files (``make reproduce``).

    python book/tools/compare_results.py results _build/reproduce/results --scale cpu

Exit status 0 when they agree, 1 when anything differs (provenance and wall time are not compared).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from reidlib.results.compare import compare_trees

    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("reference", type=Path, help="committed results root (e.g. results)")
    parser.add_argument("new", type=Path, help="results root of the fresh run")
    parser.add_argument("--scale", default="cpu")
    parser.add_argument("--chapters", nargs="*", default=None, help="only these chapters")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default: exact)")
    args = parser.parse_args(argv)
    for root in (args.reference, args.new):
        if not root.is_dir():
            parser.error(f"{root} is not a folder of results files")
    lines = compare_trees(args.reference, args.new, scale=args.scale, chapters=args.chapters, rtol=args.rtol)
    for line in lines:
        print(line)
    checked = sorted({p.relative_to(args.new).as_posix() for p in args.new.glob(f"*/{args.scale}/*.json")})
    if lines:
        print(f"{len(lines)} difference(s) between {args.reference} and {args.new} at scale {args.scale}")
        return 1
    print(f"{len(checked)} results file(s) at scale {args.scale} agree with {args.reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
