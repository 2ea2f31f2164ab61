"""The book tools: table-of-contents parsing, API page generation, the offline-assets extension."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "book" / "tools"))
sys.path.insert(0, str(REPO / "book" / "_ext"))

import build_book  # noqa: E402
import offline_page_assets  # noqa: E402
from toc_files import resolve_document, toc_documents, toc_notebooks  # noqa: E402

TOC = """
format: jb-book
root: book/intro
parts:
  - caption: A
    chapters:
      - file: notebooks/ch
        sections:
          - file: book/sub
      - file: book/api
        sections:
          - glob: book/api/*
"""


def make_tree(tmp_path: Path) -> Path:
    for rel in ("book/intro.md", "notebooks/ch.ipynb", "book/sub.md", "book/sub.ipynb", "book/api.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    (tmp_path / "_toc.yml").write_text(TOC)
    return tmp_path


def test_toc_documents_in_reading_order(tmp_path):
    repo = make_tree(tmp_path)
    docs = [d.as_posix() for d in toc_documents(repo)]
    assert docs == ["book/intro.md", "notebooks/ch.ipynb", "book/sub.ipynb", "book/api.md"]
    assert [d.as_posix() for d in toc_notebooks(repo)] == ["notebooks/ch.ipynb", "book/sub.ipynb"]


def test_missing_toc_entry_is_named(tmp_path):
    repo = make_tree(tmp_path)
    with pytest.raises(FileNotFoundError, match="'book/nope'"):
        resolve_document(repo, "book/nope")
    (repo / "_toc.yml").write_text("format: jb-book\nparts: []\n")
    with pytest.raises(ValueError, match="'root'"):
        toc_documents(repo)


def test_repository_toc_resolves():
    docs = toc_documents(REPO)
    assert docs[0].as_posix() == "book/intro.md"
    assert Path("book/claims_ledger.ipynb") in docs and Path("book/bibliography.md") in docs


def test_api_pages_group_modules_by_subpackage():
    modules = [
        "reidlib.cli",
        "reidlib.data",
        "reidlib.data.records",
        "reidlib.data.synthetic",
        "reidlib.losses",
        "reidlib.losses.oap",
    ]
    pages = build_book.api_pages(modules)
    assert sorted(pages) == ["reidlib", "reidlib.data", "reidlib.losses"]
    assert ".. automodule:: reidlib.cli" in pages["reidlib"]
    data = pages["reidlib.data"]
    assert data.startswith("# `reidlib.data`")
    assert data.index("reidlib.data.records") < data.index("reidlib.data.synthetic")
    assert ".. automodule:: reidlib.data\n   :no-members:" in data
    assert "## `reidlib.data.records`\n\n```{eval-rst}\n.. automodule:: reidlib.data.records\n```" in data


def test_reidlib_modules_skip_main():
    modules = build_book.reidlib_modules()
    assert "reidlib.results.store" in modules and not any(m.endswith("__main__") for m in modules)


class _Asset(str):
    def __new__(cls, filename, body=""):
        obj = super().__new__(cls, filename or "")
        obj.filename, obj.attributes = filename, ({"body": body} if body else {})
        return obj


def test_extension_drops_thebe_assets():
    context = {
        "script_files": [
            _Asset("_static/x.js"),
            _Asset(None, 'const THEBE_JS_URL = "u"'),
            _Asset("_static/sphinx-thebe.js"),
        ],
        "css_files": [_Asset("_static/sphinx-thebe.css"), _Asset("_static/a.css")],
    }
    offline_page_assets._drop_thebe(None, "p", "page.html", context, None)
    assert [a.filename for a in context["script_files"]] == ["_static/x.js"]
    assert [a.filename for a in context["css_files"]] == ["_static/a.css"]


def test_notebooks_ask_for_the_project_kernel_that_setup_registers():
    import json
    import re
    import sys

    repo = Path(__file__).resolve().parents[2]
    makefile = (repo / "Makefile").read_text()
    kernel = re.search(r"^KERNEL := (\S+)$", makefile, re.M).group(1)
    assert "ipykernel install --sys-prefix --name $(KERNEL)" in makefile  # make setup
    assert "ipykernel install --user --name $(KERNEL)" in makefile  # make kernel / make lab
    notebooks = sorted(repo.glob("notebooks/*.ipynb")) + sorted(repo.glob("book/*.ipynb"))
    assert notebooks
    for path in notebooks:
        spec = json.loads(path.read_text())["metadata"]["kernelspec"]
        assert spec["name"] == kernel, path
    registered = Path(sys.prefix) / "share" / "jupyter" / "kernels" / kernel / "kernel.json"
    if registered.is_file():  # after make setup: the kernel runs this environment's interpreter
        argv = json.loads(registered.read_text())["argv"]
        assert Path(argv[0]).resolve() == Path(sys.executable).resolve()
