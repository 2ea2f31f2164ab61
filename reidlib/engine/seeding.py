"""Seeds and determinism: one call seeds python, numpy and torch; loaders get their own generator.

The random states are captured and restored as plain data (lists, ints, uint8 tensors) so checkpoints
holding them load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and every CUDA device).

    With ``deterministic``, torch is asked for deterministic kernels (``warn_only``: ops without one
    warn instead of failing), cuDNN autotuning is off, and cuBLAS gets the workspace setting its
    deterministic mode needs. Without it cuDNN may autotune (faster, not bit-reproducible).

    Raises:
        ValueError: ``seed`` is negative or not an int.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True


def worker_init_fn(worker_id: int) -> None:
    """``DataLoader`` worker init: seed python and numpy from the worker's torch seed.

    torch seeds each worker differently (base seed + worker id) but leaves numpy and ``random`` as
    forked copies, so without this every worker would draw the same numpy augmentations.
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed + worker_id)
    np.random.seed((seed + worker_id) % 2**32)


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``, for a ``DataLoader``'s shuffling and worker seeds."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def get_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and CUDA RNG states as checkpoint-safe plain data."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`get_rng_state`.

    Raises:
        ValueError: a required entry is missing.
    """
    missing = {"python", "numpy", "torch"} - set(state)
    if missing:
        raise ValueError(f"RNG state lacks {sorted(missing)}")
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"]), py["gauss"]))
    npst = state["numpy"]
    keys = npst["keys"].numpy() if torch.is_tensor(npst["keys"]) else npst["keys"]
    keys = np.asarray(keys, dtype=np.uint32)
    np.random.set_state((npst["name"], keys, int(npst["pos"]), int(npst["has_gauss"]), float(npst["gauss"])))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
