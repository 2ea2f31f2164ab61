"""Re-ID models. Every model's ``forward`` returns :class:`reidlib.models.output.ReIDOutput`.

:data:`MODELS` maps a name to a model class; chapters register theirs by adding an entry.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from reidlib.models.baseline import IDEBN, BNNeck
from reidlib.models.output import ReIDOutput

__all__ = ["MODELS", "BNNeck", "IDEBN", "ReIDOutput", "build_model"]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "idebn": IDEBN,
    "bnneck": BNNeck,
}


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build the model registered as ``name`` in :data:`MODELS` with keyword arguments ``kwargs``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(MODELS)}")
    return MODELS[name](**kwargs)
