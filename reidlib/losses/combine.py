"""Weighted sums of losses that follow the Trainer's loss contract.

Every loss object of :mod:`reidlib.losses` is a ``LossFn``: ``loss_fn(output: ReIDOutput, batch: dict)
-> (scalar Tensor, {name: float})`` (see :mod:`reidlib.engine.trainer`). :class:`LossSum` adds weighted
terms, so an objective is written as its formula, e.g. the baseline's::

    LossSum([(1.0, IdentityLoss(0.1)), (1.0, BatchHardTripletLoss(0.3))])  # CE_0.1 + L_tri
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor

from reidlib.models.output import ReIDOutput

__all__ = ["LossFn", "LossSum"]

#: The Trainer's loss contract.
LossFn = Callable[[ReIDOutput, Mapping[str, Any]], tuple[Tensor, dict[str, float]]]

#: The log name of a loss's own total, which a sum replaces by its own.
TOTAL = "loss"


class LossSum:
    """``sum_j w_j L_j(output, batch)``, with the terms' logs merged.

    Args:
        terms: ``(weight, loss)`` pairs; weights are ``>= 0`` and a weight-0 term is not computed at
            all (so it can neither fail nor cost time), but at least one weight must be positive.
        log_total: also log the weighted total as ``"loss"`` (the Trainer logs the total itself, so a
            recipe whose log names are fixed may leave it out).

    The logs are the union of the terms' logs (each term's own value, unweighted, under its own name;
    a term's ``"loss"`` entry is dropped, since the sum's total replaces it). Two terms that log the
    same name raise ``ValueError`` instead of silently overwriting each other.
    """

    def __init__(self, terms: Sequence[tuple[float, LossFn]], log_total: bool = True) -> None:
        terms = list(terms)
        for weight, loss in terms:
            if weight < 0:
                raise ValueError(f"loss weights must be >= 0, got {weight} for {loss!r}")
            if not callable(loss):
                raise TypeError(f"a loss term must be callable (output, batch) -> (loss, logs), got {loss!r}")
        if not any(weight > 0 for weight, _ in terms):
            raise ValueError(f"LossSum needs at least one term with a positive weight, got {terms!r}")
        self.terms: list[tuple[float, LossFn]] = [(w, loss) for w, loss in terms if w > 0]
        self.log_total = log_total

    def __call__(self, output: ReIDOutput, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        total: Tensor | None = None
        logs: dict[str, float] = {}
        for weight, loss_fn in self.terms:
            value, term_logs = loss_fn(output, batch)
            total = weight * value if total is None else total + weight * value
            for name, logged in term_logs.items():
                if name == TOTAL:
                    continue
                if name in logs:
                    raise ValueError(f"two loss terms log {name!r}; give them different names")
                logs[name] = logged
        assert total is not None  # __init__ keeps at least one term
        if self.log_total:
            logs[TOTAL] = float(total.detach())
        return total, logs

    def __repr__(self) -> str:
        inner = ", ".join(f"({w}, {loss!r})" for w, loss in self.terms)
        return f"LossSum([{inner}], log_total={self.log_total})"
