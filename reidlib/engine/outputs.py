"""Output folders: a command writes only into a folder, and replaces only files that reidlib wrote there.

Every command's ``--out`` is a folder. Before any long work, :meth:`OutputFolder.check` makes sure that
each file the command is about to write is either new or was written into this folder by the same
command before (the folder's ``.reidlib-outputs.json`` records which command wrote which file), that
none of them is one of the command's inputs, and that the folder is not inside a dataset it reads.
:meth:`OutputFolder.claim` then records the names and removes the temporary files of interrupted writes
(:mod:`reidlib.atomic`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from reidlib.atomic import atomic_write_json, remove_leftovers

__all__ = ["MANIFEST", "OutputFolder", "OutputPathError"]

MANIFEST = ".reidlib-outputs.json"


class OutputPathError(ValueError):
    """An output path that would replace an input or a file that the command did not write."""


class OutputFolder:
    """The folder ``path`` that ``command`` (e.g. ``"train"``) writes its files into.

    Args:
        path: the folder (created by :meth:`claim` when missing).
        command: the name recorded for the files it writes; a file written by another command is never
            replaced.
        option: how the user named the folder, quoted in messages (``--out``, ``out_dir``).
    """

    def __init__(self, path: str | os.PathLike[str], command: str, option: str = "--out") -> None:
        self.path = Path(path)
        self.command = command
        self.option = option

    def written(self) -> dict[str, dict[str, str | None]]:
        """``file name -> {"command": ..., "stamp": ...}`` for the files reidlib recorded in this folder
        (empty when none). ``stamp`` is the file's size and modification time when reidlib wrote it
        through :meth:`write_json`, ``None`` for a file another writer (the Trainer) keeps rewriting."""
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            return {}
        try:
            data = json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}  # unreadable: nothing in the folder counts as reidlib's, so nothing is replaced
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, dict):
            return {}
        return {str(k): v for k, v in files.items() if isinstance(v, dict) and "command" in v}

    def check(self, names: Iterable[str], inputs: Iterable[str | os.PathLike[str]] = (),
              input_folders: Iterable[str | os.PathLike[str]] = ()) -> None:
        """Refuse, before any work, to write ``names`` into the folder when that could lose data.

        Args:
            names: the file names the command writes into the folder.
            inputs: files the command reads (config, checkpoint): none may be an output.
            input_folders: folders the command reads (a dataset root): the output folder may not be one
                of them or lie inside one.

        Raises:
            OutputPathError: the folder is a file; an output is an input; the folder is inside an input
                folder; or an output file exists that was not written by this command (the message names
                the path and says what to do).
        """
        where = f"{self.option} {self.path}"
        if self.path.exists() and not self.path.is_dir():
            raise OutputPathError(f"{where} is a file; {self.option} names a folder, which `{self.command}` "
                                  f"writes its files into (e.g. {self.option} {self.path.parent})")
        folder = self.path.resolve()
        for root in input_folders:
            root = Path(root).resolve()
            if folder == root or root in folder.parents:
                raise OutputPathError(f"{where} lies inside the dataset folder {root}, which this command "
                                      "reads; choose a folder outside it")
        targets = {(folder / name).resolve(): name for name in names}
        for item in inputs:
            if Path(item).resolve() in targets:
                raise OutputPathError(f"{where}: writing {targets[Path(item).resolve()]} there would "
                                      f"overwrite the input {item}; choose another {self.option}")
        written = self.written()
        for name in targets.values():
            target = self.path / name
            if not (target.exists() or target.is_symlink()):
                continue
            if target.is_dir() or target.is_symlink():
                raise OutputPathError(f"{target} is a folder or a link; `{self.command}` writes a file of "
                                      f"that name; choose another {self.option}")
            entry = written.get(name) or {}
            by, stamp = entry.get("command"), entry.get("stamp")
            if by == self.command and stamp is not None and stamp != _stamp(target):
                by, origin = None, "was changed after reidlib wrote it"
            else:
                origin = (f"was written by `{by}`" if by else
                          f"is not recorded in {MANIFEST} as written here by reidlib (a file of another "
                          "tool, or of a reidlib older than this record)")
            if by != self.command:
                raise OutputPathError(f"{target} exists and {origin}; `{self.command}` would replace it. "
                                      f"Move it away or choose another {self.option}")

    def claim(self, names: Iterable[str], quiet: bool = False) -> None:
        """Create the folder, remove leftovers of interrupted writes and record ``names`` as this
        command's files (call :meth:`check` first)."""
        self.path.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.path, notice=None if quiet else print)
        files = self.written()
        for name in names:
            files[name] = {"command": self.command, "stamp": files.get(name, {}).get("stamp")}
        self._save(files)

    def write_json(self, name: str, data: object) -> Path:
        """Write ``data`` to the claimed file ``name`` atomically and record its stamp, so that a later
        command notices when someone else changed it."""
        path = atomic_write_json(self.path / name, data)
        files = self.written()
        files[name] = {"command": self.command, "stamp": _stamp(path)}
        self._save(files)
        return path

    def _save(self, files: dict[str, dict[str, str | None]]) -> None:
        record = {"written_by": "reidlib", "files": dict(sorted(files.items()))}
        atomic_write_json(self.path / MANIFEST, record)


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"
