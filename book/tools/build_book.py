"""Build the book: stage the sources, execute the notebooks, generate the API pages, run Jupyter Book.

    python book/tools/build_book.py --scale cpu            # what `make book` runs
    python book/tools/build_book.py --no-execute           # build from the committed notebooks

The book is built from a staging copy (``_build/src``) so that executing at ``smoke`` or ``full`` scale
never touches the committed notebooks; at ``cpu`` scale the executed notebooks are also written back to
the source tree (they are the committed outputs). The site lands in ``_build/html``.
"""

from __future__ import annotations

import argparse
import json
import pkgutil
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import execute_notebooks  # noqa: E402
from toc_files import toc_documents  # noqa: E402

BUILD = REPO / "_build"
STAGE = BUILD / "src"
COPY_IGNORE = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "tools", "*.pyc")
#: Sphinx options of every strict build: warnings are errors, all of them reported at once.
STRICT_FLAGS = ("-W", "--keep-going")


def stage_sources(stage: Path = STAGE) -> None:
    """Copy the book's sources (config, toc, ``book/``, ``notebooks/``) into a fresh ``stage``."""
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(REPO / name, stage / name)
    for folder in ("book", "notebooks"):
        if (REPO / folder).is_dir():
            shutil.copytree(REPO / folder, stage / folder, ignore=COPY_IGNORE)


def reidlib_modules() -> list[str]:
    """Every importable-by-name module of reidlib (``__main__`` left out: importing it runs the CLI)."""
    import reidlib

    names = [m.name for m in pkgutil.walk_packages(reidlib.__path__, "reidlib.")]
    return sorted(n for n in names if not n.endswith("__main__"))


def api_pages(modules: list[str]) -> dict[str, str]:
    """MyST pages of the API reference: ``{file stem: text}``, one page per subpackage of reidlib.

    A subpackage page shows the package docstring, then one section per module with its members.
    Top-level modules (``reidlib.cli``) share the ``reidlib`` page.
    """
    groups: dict[str, list[str]] = {}
    packages = {n for n in modules if any(m.startswith(n + ".") for m in modules)}
    for name in modules:
        parts = name.split(".")
        group = ".".join(parts[:2]) if len(parts) > 2 or name in packages else "reidlib"
        groups.setdefault(group, []).append(name)
    pages = {}
    for group, names in sorted(groups.items()):
        lines = [
            f"# `{group}`",
            "",
            "```{eval-rst}",
            f".. automodule:: {group}",
            "   :no-members:",
            "```",
            "",
        ]
        for name in names:
            if name == group:
                continue
            lines += [f"## `{name}`", "", "```{eval-rst}", f".. automodule:: {name}"]
            lines += ["   :no-members:"] if name in packages else []
            lines += ["```", ""]
        pages[group] = "\n".join(lines)
    return pages


def write_api_pages(stage: Path = STAGE) -> int:
    """Write :func:`api_pages` into ``<stage>/book/api/``; returns the number of pages."""
    folder = stage / "book" / "api"
    folder.mkdir(parents=True, exist_ok=True)
    pages = api_pages(reidlib_modules())
    for stem, text in pages.items():
        (folder / f"{stem}.md").write_text(text)
    return len(pages)


def jupyter_book(stage: Path, strict: bool = True) -> int:
    """Run ``jupyter-book build`` on ``stage``; output in ``<repo>/_build/html``. Returns the exit code."""
    html = BUILD / "html"
    if html.exists():
        shutil.rmtree(html)  # no stale pages from documents that left the toc
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe), "build", str(stage), "--path-output", str(REPO), "--builder", "html", "--all"]
    if strict:
        cmd += ["--warningiserror", "--keep-going"]
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=REPO).returncode


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from reidlib.scale import resolve_scale

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", default=None, help="smoke | cpu | full ($REIDLIB_SCALE wins; default cpu)")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-execute", action="store_true", help="build from the notebooks as committed")
    parser.add_argument(
        "--no-write-back", action="store_true", help="at cpu scale, leave notebooks/ untouched"
    )
    parser.add_argument("--lenient", action="store_true", help="do not turn Sphinx warnings into errors")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    toc_documents(REPO)  # fail early on a toc entry without a file
    stage_sources()
    print(f"API reference: {write_api_pages()} pages", flush=True)
    timings: dict[str, object] = {}
    if not args.no_execute:
        scale = resolve_scale(args.scale)
        exec_args = ["--scale", scale, "--out", str(STAGE), "--report", str(BUILD / "execution.json")]
        for flag, value in (
            ("--dataset", args.dataset),
            ("--data-root", args.data_root),
            ("--device", args.device),
        ):
            if value:
                exec_args += [flag, value]
        if scale == "cpu" and not args.no_write_back:
            exec_args.append("--write-back")
        t0 = time.perf_counter()
        if execute_notebooks.main(exec_args) != 0:
            print("notebook execution failed; the book was not built", file=sys.stderr)
            return 1
        timings["execute_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    code = jupyter_book(STAGE, strict=not args.lenient)
    timings["build_s"] = round(time.perf_counter() - t0, 1)
    timings["total_s"] = round(time.perf_counter() - start, 1)
    (BUILD / "book_timings.json").write_text(json.dumps(timings, indent=1))
    if code != 0:
        print(f"jupyter-book build failed (exit {code})", file=sys.stderr)
        return code
    print(f"book built in {timings['total_s']} s: {BUILD / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
