"""Checkpoint files: atomic writes, safe loads.

A training checkpoint is a dict of tensors and plain data (``model``, ``optimizer``, ``scheduler``,
``scaler``, ``epoch``, ``global_step``, ``history``, ``rng``, ``loader``, ``callbacks``, ``config``,
``version``). Nothing in it needs pickled classes, so it loads with ``torch.load(weights_only=True)``,
which cannot run code from a file. Writes go to a temporary file in the same folder that is then
renamed over the target (``os.replace`` is atomic on POSIX), so a run killed mid-write never leaves a
truncated ``latest.pt`` behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_VERSION = 1
LATEST = "latest.pt"


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically (parent folders are created). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(dict(state), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a readable checkpoint (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types (UnpicklingError, RuntimeError, EOFError)
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def model_state_from(state: Mapping[str, Any], path: str | os.PathLike[str] = "<checkpoint>") -> dict:
    """The model ``state_dict`` inside a training checkpoint, or ``state`` itself if it is one."""
    if "model" in state and isinstance(state["model"], Mapping):
        return dict(state["model"])
    if state and all(torch.is_tensor(v) for v in state.values()):
        return dict(state)
    raise ValueError(f"{path} holds neither a training checkpoint (with 'model') nor a model state_dict")


def load_model_weights(
    model: nn.Module, path: str | os.PathLike[str], strict: bool = True, map_location: str = "cpu"
) -> dict[str, Any]:
    """Load model weights from a training checkpoint or a bare ``state_dict`` file into ``model``.

    Returns the loaded file's dict (so callers can read ``epoch`` or ``config``).

    Raises:
        FileNotFoundError / ValueError: as :func:`load_checkpoint`; ValueError also when the keys or
            shapes do not match ``model`` (the message names the file).
    """
    state = load_checkpoint(path, map_location=map_location)
    weights = model_state_from(state, path)
    try:
        model.load_state_dict(weights, strict=strict)
    except RuntimeError as err:
        raise ValueError(f"weights in {path} do not fit {type(model).__name__}: {err}") from err
    return state
