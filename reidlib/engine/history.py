"""Per-epoch training metrics, kept as a list of flat dicts and saved as JSON after every epoch."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from reidlib.atomic import atomic_write_text


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; a null marks the value as unusable
    return value


class History:
    """Training history: one dict per finished epoch (``epoch``, ``lr``, mean loss terms, ``time_s``,
    ``images_per_s``, plus whatever callbacks add, e.g. ``mAP``)."""

    def __init__(self, epochs: list[Mapping[str, Any]] | None = None) -> None:
        self.epochs: list[dict[str, Any]] = [dict(e) for e in (epochs or [])]

    def append(self, logs: Mapping[str, Any]) -> None:
        self.epochs.append(dict(logs))

    def column(self, key: str) -> list[Any]:
        """The values of ``key`` over epochs (``None`` where an epoch lacks it)."""
        return [e.get(key) for e in self.epochs]

    @property
    def last(self) -> dict[str, Any]:
        if not self.epochs:
            raise IndexError("history is empty")
        return self.epochs[-1]

    def __len__(self) -> int:
        return len(self.epochs)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.epochs)

    def to_list(self) -> list[dict[str, Any]]:
        return [{k: _json_value(v) for k, v in e.items()} for e in self.epochs]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the history as a JSON list, atomically."""
        return atomic_write_text(path, json.dumps(self.to_list(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """Read a history JSON file.

        Raises:
            FileNotFoundError: missing file. ValueError: not a JSON list of objects.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"history file not found: {path}")
        data = json.loads(path.read_text())
        if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
            raise ValueError(f"{path}: expected a JSON list of per-epoch objects")
        return cls(data)
