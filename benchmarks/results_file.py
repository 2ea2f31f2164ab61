"""The benchmarks' results files: one JSON document with the rows, the settings and provenance."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reidlib.atomic import atomic_write_text  # noqa: E402
from reidlib.results.provenance import collect_provenance  # noqa: E402


def write_results(out: str | Path, benchmark: str, device: str, **entries: Any) -> Path:
    """Write ``{"benchmark", **entries, "threads", "provenance"}`` to ``out`` atomically; print and return
    the path."""
    path = Path(out)
    payload = {"benchmark": benchmark, **entries, "threads": torch.get_num_threads(),
               "provenance": collect_provenance(device)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=1, default=str) + "\n")
    print(f"wrote {path}")
    return path
