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
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reidlib.atomic import atomic_write

CHECKPOINT_VERSION = 1
LATEST = "latest.pt"


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`reidlib.atomic.atomic_write`; parent folders are
    created). Returns the path."""
    return atomic_write(path, lambda fh: torch.save(dict(state), fh))


class CheckpointError(ValueError):
    """A file that cannot be loaded as a checkpoint: empty, a folder, not a PyTorch file, damaged, or
    holding objects other than tensors and plain data. The message is one line that names the file."""


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive
_PICKLE_PROTO = 0x80  # first byte of a pickle (protocol 2+): torch's legacy format, or a plain pickle


def _folder_message(path: Path) -> str:
    latest = path / LATEST
    if latest.is_file():
        return f"checkpoint {path} is a folder, not a file; did you mean {latest}?"
    found = sorted(p.name for p in path.glob("*.pt") if p.is_file())
    if found:
        names = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        return f"checkpoint {path} is a folder, not a file, and holds no {LATEST}; it holds {names}"
    return f"checkpoint {path} is a folder, not a file, and holds no .pt file"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:  # a multi-byte character cut at the end of the sample is still text
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


def _unreadable_reason(head: bytes, err: Exception) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, in a few words, from its
    first bytes ``head`` and torch's error.

    torch's own message is not passed on when it recommends ``weights_only=False``: that would run
    arbitrary code from the file, which reidlib never does for a checkpoint.
    """
    text = str(err)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return (f"it holds objects other than tensors and plain data (such as {refused.group(1)}), "
                "which reidlib refuses to load")
    if head.startswith(_ZIP_MAGIC):
        return "a damaged or truncated PyTorch checkpoint (unreadable zip archive)"
    if head[:1] == bytes([_PICKLE_PROTO]):
        return "not a PyTorch checkpoint, or a damaged one (unreadable pickle)"
    if head.lstrip()[:1] in (b"{", b"[") and _looks_like_text(head):
        return "a JSON or text file, not a PyTorch checkpoint"
    if _looks_like_text(head):
        return "a text file, not a PyTorch checkpoint"
    if "weights_only" in text or not text.strip():
        return "not a PyTorch checkpoint (unreadable zip/pickle)"
    return f"not a PyTorch checkpoint ({type(err).__name__}: {text.splitlines()[0][:200]})"


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: (a ``ValueError``) ``path`` is a folder (the message suggests its
            ``latest.pt``), an empty file, not a PyTorch checkpoint (text, JSON, other binary data),
            a damaged or truncated one, one holding pickled objects other than tensors and plain data,
            or one that holds no dict. The message is one line and names the file.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(_folder_message(path))
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # Read here so that a permission problem is reported as one; whatever torch.load raises
        # after this is about the content.
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from err
    if not head:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes; an interrupted "
                              "copy or download?)")
    try:
        with warnings.catch_warnings():
            # The weights-only unpickler warns about pickle protocols before failing on a plain pickle;
            # the error below says what the file is.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types: UnpicklingError, RuntimeError, OSError, EOFError...
        # from None: the chained torch message would repeat its weights_only=False advice.
        raise CheckpointError(f"cannot read checkpoint {path}: {_unreadable_reason(head, err)}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
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
