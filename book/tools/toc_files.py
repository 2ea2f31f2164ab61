"""The documents listed in ``_toc.yml``, in reading order (shared by the book tools)."""

from __future__ import annotations

from pathlib import Path

import yaml

SUFFIXES = (".ipynb", ".md")


def _entries(node: object) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if "file" in node:
            found.append(str(node["file"]))
        if "root" in node:
            found.append(str(node["root"]))
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key) or []:
                found.extend(_entries(child))
    elif isinstance(node, list):
        for child in node:
            found.extend(_entries(child))
    return found


def resolve_document(repo: Path, entry: str) -> Path:
    """Path (relative to ``repo``) of a toc entry written without suffix; ``.ipynb`` wins over ``.md``.

    Raises:
        FileNotFoundError: neither ``<entry>.ipynb`` nor ``<entry>.md`` exists.
    """
    base = Path(entry)
    if base.suffix in SUFFIXES and (repo / base).is_file():
        return base
    for suffix in SUFFIXES:
        candidate = base.with_name(base.name + suffix)
        if (repo / candidate).is_file():
            return candidate
    raise FileNotFoundError(
        f"_toc.yml lists {entry!r} but neither {entry}.ipynb nor {entry}.md exists in {repo}"
    )


def toc_documents(repo: Path, toc: str = "_toc.yml") -> list[Path]:
    """Every document of the book (root first, then parts/chapters/sections in order), relative to ``repo``.

    ``glob`` entries are skipped: they name generated pages (the API reference).
    """
    path = repo / toc
    if not path.is_file():
        raise FileNotFoundError(f"no table of contents at {path}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or "root" not in data:
        raise ValueError(f"{path}: expected a jb-book table of contents with a 'root' entry")
    return [resolve_document(repo, entry) for entry in _entries(data)]


def toc_notebooks(repo: Path, toc: str = "_toc.yml") -> list[Path]:
    """The notebooks among :func:`toc_documents`, in reading order."""
    return [doc for doc in toc_documents(repo, toc) if doc.suffix == ".ipynb"]
