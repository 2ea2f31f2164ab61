"""Atomic file writes: a file is either its old content or its new content, never half of one.

Every write goes to a temporary file ``.<name>.<random>.tmp`` in the target's own folder, is flushed to
disk, then renamed over the target (``os.replace`` is atomic on POSIX and Windows within a folder). A
process killed mid-write leaves only such a temporary file behind; :func:`remove_leftovers` deletes them,
and the commands call it when they start on a folder.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text", "is_leftover", "remove_leftovers"]

# ".<target name>.<mkstemp's random part>.tmp"; the random part has no dot
_LEFTOVER = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(fh)`` on a temporary binary file next to ``path``, then rename it over ``path``.

    Parent folders are created. On any error (or Ctrl-C) the temporary file is removed and ``path``
    keeps its previous content. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets the mode open() would give
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike[str], data: Any, indent: int = 1) -> Path:
    """Write ``data`` as JSON (strict: NaN and infinity are refused) to ``path`` atomically.

    Raises:
        ValueError: ``data`` holds a NaN or an infinity (nothing is written).
        TypeError: ``data`` holds something JSON cannot store (nothing is written).
    """
    text = json.dumps(data, indent=indent, allow_nan=False) + "\n"  # before the temporary file exists
    return atomic_write_text(path, text)


def is_leftover(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is named like the temporary file of an interrupted :func:`atomic_write`."""
    return bool(_LEFTOVER.match(Path(path).name))


def remove_leftovers(
    folder: str | os.PathLike[str], notice: Callable[[str], Any] | None = print
) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes left in ``folder`` (not recursive).

    ``notice`` is called with one line per removed file (``None``: silent). Returns the removed paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and is_leftover(entry):
            entry.unlink()
            removed.append(entry)
            if notice is not None:
                notice(f"removed {entry}, left by an interrupted write")
    return removed
