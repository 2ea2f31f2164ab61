"""Execute the book's notebooks with papermill at one scale.

Every notebook listed in ``_toc.yml`` runs in reading order (chapters before the results overview and the
claims ledger, which read the chapters' results files). Parameters that a notebook's ``parameters`` cell
defines (``scale``, ``dataset``, ``data_root``, ``device``, ``seed``) are injected; others are not passed.

    python book/tools/execute_notebooks.py --scale smoke --out _build/src
    python book/tools/execute_notebooks.py --scale cpu --write-back   # refresh the committed outputs

Each notebook runs with its own folder as working directory, like JupyterLab. Exit status 1 when a
notebook fails; the failing notebook (with the traceback in its outputs) is kept under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from toc_files import toc_notebooks  # noqa: E402

PASSABLE = ("scale", "dataset", "data_root", "device", "seed")


def notebook_parameters(path: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged ``parameters`` (empty when it has none)."""
    import papermill

    return set(papermill.inspect_notebook(str(path)).keys())


def execute(
    notebook: Path,
    output: Path,
    params: dict[str, object],
    kernel: str = "python3",
    timeout_s: int | None = None,
) -> float:
    """Run ``notebook`` (path relative to the repo) into ``output``; returns seconds taken.

    Only parameters the notebook declares are injected. Raises papermill's execution error on failure.
    The ``python3`` kernel is the one jupyter_client starts with this very interpreter, whereas a
    ``reid-book`` kernel registered for the user (``make kernel``) may point at another checkout's
    ``.venv``; the executed notebook keeps its own ``reid-book`` kernelspec for JupyterLab.
    """
    import papermill

    source = REPO / notebook
    declared = notebook_parameters(source)
    injected = {k: v for k, v in params.items() if k in declared and v is not None}
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    papermill.execute_notebook(
        str(source),
        str(output),
        parameters=injected,
        kernel_name=kernel,
        cwd=str(source.parent),
        progress_bar=False,
        log_output=False,
        execution_timeout=timeout_s,
        report_mode=False,
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from reidlib.scale import resolve_scale

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", default=None, help="smoke | cpu | full ($REIDLIB_SCALE wins; default cpu)")
    parser.add_argument("--dataset", default=None, help="dataset name passed to the chapters")
    parser.add_argument("--data-root", default=None, help="folder holding the real datasets")
    parser.add_argument("--device", default=None, help="cpu | cuda | auto")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--out", type=Path, default=REPO / "_build" / "executed", help="where executed copies go"
    )
    parser.add_argument("--write-back", action="store_true", help="also overwrite the source notebooks")
    parser.add_argument(
        "--only", nargs="*", default=None, help="run only these notebooks (paths as in the toc)"
    )
    parser.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    parser.add_argument("--report", type=Path, default=None, help="write per-notebook timings (JSON) here")
    args = parser.parse_args(argv)

    scale = resolve_scale(args.scale)
    params = {
        "scale": scale,
        "dataset": args.dataset,
        "data_root": args.data_root,
        "device": args.device,
        "seed": args.seed,
    }
    notebooks = toc_notebooks(REPO)
    if args.only:
        wanted = {Path(p).with_suffix(".ipynb") for p in args.only}
        unknown = wanted - set(notebooks)
        if unknown:
            parser.error(f"not in _toc.yml: {sorted(map(str, unknown))}")
        notebooks = [nb for nb in notebooks if nb in wanted]
    timings: dict[str, float] = {}
    status = 0
    for index, notebook in enumerate(notebooks, start=1):
        target = args.out / notebook
        print(f"[{index}/{len(notebooks)}] {notebook} at scale={scale} ...", flush=True)
        try:
            seconds = execute(notebook, target, params, timeout_s=args.timeout)
        except Exception as err:  # noqa: BLE001 - report which notebook failed, keep its partial output
            print(f"FAILED: {notebook}: {type(err).__name__}: {str(err).strip()[:2000]}", file=sys.stderr)
            print(f"        executed copy with the traceback: {target}", file=sys.stderr)
            status = 1
            break
        timings[str(notebook)] = round(seconds, 1)
        print(f"    done in {seconds:.1f} s", flush=True)
        if args.write_back:
            shutil.copyfile(target, REPO / notebook)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps({"scale": scale, "seconds": timings, "ok": status == 0}, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())
