"""Where the book's data lives: results files, paper numbers, claims.

All paths are found from the package location (``reidlib/`` sits at the repository root), so notebooks,
the CLI and tests agree wherever they are started from. Environment variables override them:
``REIDLIB_RESULTS`` (results root) and ``REIDLIB_BOOK_DATA`` (folder holding ``paper_numbers/`` and
``claims/``).
"""

from __future__ import annotations

import os
from pathlib import Path

RESULTS_ENV = "REIDLIB_RESULTS"
RUNS_ENV = "REIDLIB_RUNS"
BOOK_DATA_ENV = "REIDLIB_BOOK_DATA"


def repo_root() -> Path:
    """The repository root: the folder that contains the ``reidlib`` package."""
    return Path(__file__).resolve().parents[2]


def results_root(root: str | os.PathLike | None = None) -> Path:
    """Results root: ``root`` if given, else ``$REIDLIB_RESULTS``, else ``<repo>/results``."""
    if root is not None:
        return Path(root)
    env = os.environ.get(RESULTS_ENV, "").strip()
    return Path(env) if env else repo_root() / "results"


def book_data_root(root: str | os.PathLike | None = None) -> Path:
    """Book data root: ``root`` if given, else ``$REIDLIB_BOOK_DATA``, else ``<repo>/book/data``."""
    if root is not None:
        return Path(root)
    env = os.environ.get(BOOK_DATA_ENV, "").strip()
    return Path(env) if env else repo_root() / "book" / "data"


def runs_root(root: str | os.PathLike | None = None) -> Path:
    """Where the chapters' model weights go: ``root``, else ``$REIDLIB_RUNS``, else ``<repo>/runs``."""
    if root is not None:
        return Path(root)
    env = os.environ.get(RUNS_ENV, "").strip()
    return Path(env) if env else repo_root() / "runs"
