"""Optimizers and learning-rate schedules built from :mod:`reidlib.engine.config`.

Every schedule is one :class:`torch.optim.lr_scheduler.LambdaLR` whose factor is a plain-data callable
(:class:`LRFactor`), so the scheduler's ``state_dict`` holds only numbers and loads with
``torch.load(weights_only=True)``. The factor at schedule step ``t`` (an epoch, or an optimizer step
when the schedule updates per iteration; counts given in epochs are then multiplied by the steps per
epoch) is

``warmup(t) * decay(t)``, where

- ``warmup(t) = s + (1 - s) * t / W`` for ``t < W`` and 1 afterwards (``s = warmup_start_factor``,
  ``W = warmup``); seed 000 raises the LR from 3e-6 to 3e-4 this way (``s = 0.01``);
- ``decay`` is 1 (``constant``), ``gamma ** (t // step_size)`` (``step``),
  ``gamma ** #{m in milestones: m <= t}`` (``multistep``; BDB/seed 004 style, milestones counted from
  step 0), or the log-linear decay of seed 001: ``(final_lr / lr) ** (u / U)`` with ``u = t - W`` the
  steps since warm-up ended and ``U`` the last such step, so the last step runs at exactly ``final_lr``;
  with ``half_life = h`` instead, ``0.5 ** (u / h)`` (the LR halves every ``h`` steps).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from reidlib.engine.config import OptimizerConfig, ScheduleConfig


def build_optimizer(
    params: nn.Module | Iterable[torch.Tensor] | Iterable[dict[str, Any]], cfg: OptimizerConfig
) -> torch.optim.Optimizer:
    """Build the optimizer of ``cfg`` over a module's parameters, a parameter list, or parameter groups.

    A parameter group (a dict with ``"params"``) may carry its own ``lr``/``weight_decay`` or an
    ``lr_mult`` that scales ``cfg.lr`` (e.g. a freshly initialised classifier at 10x the backbone LR).
    Parameters with ``requires_grad=False`` at build time are still included, so a recipe can freeze
    and later unfreeze them (seed 000 trains only the classifiers in its first epochs).

    Raises:
        ValueError: no parameters, or an unknown key in a group.
    """
    if isinstance(params, nn.Module):
        groups: list[dict[str, Any]] = [{"params": list(params.parameters())}]
    else:
        items = list(params)
        if items and isinstance(items[0], dict):
            groups = [dict(g) for g in items]
        else:
            groups = [{"params": items}]
    allowed = {"params", "lr", "lr_mult", "weight_decay", "name"}
    for i, g in enumerate(groups):
        if "params" not in g:
            raise ValueError(f"parameter group {i} has no 'params' entry")
        extra = set(g) - allowed
        if extra:
            raise ValueError(f"parameter group {i} has unknown keys {sorted(extra)}; "
                             f"allowed: {sorted(allowed)}")
        g["params"] = list(g["params"])
        mult = g.pop("lr_mult", 1.0)
        g.setdefault("lr", cfg.lr * mult)
    if sum(len(g["params"]) for g in groups) == 0:
        raise ValueError("the optimizer got no parameters")
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.name!r}")


@dataclass
class LRFactor:
    """The LR multiplier at schedule step ``t`` (see the module docstring). Plain data, so it pickles
    into the scheduler's state as numbers only.

    Attributes:
        kind, gamma, warmup_start_factor: as in :class:`ScheduleConfig`.
        step_size, milestones, warmup: as in :class:`ScheduleConfig`, converted to schedule steps.
        log_ratio: ``log(final_lr / lr)`` for ``log_decay`` with a final LR (0 otherwise).
        half_life: halving period for ``log_decay`` in schedule steps (0: use ``log_ratio``).
        total_steps: number of schedule steps in the whole run.
    """

    kind: str
    step_size: float = 0.0
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    warmup: float = 0.0
    warmup_start_factor: float = 1.0
    log_ratio: float = 0.0
    half_life: float = 0.0
    total_steps: int = 1

    def __call__(self, t: int) -> float:
        return self.warmup_factor(t) * self.decay_factor(t)

    def warmup_factor(self, t: int) -> float:
        if t >= self.warmup:
            return 1.0
        s = self.warmup_start_factor
        return s + (1.0 - s) * t / self.warmup

    def decay_factor(self, t: int) -> float:
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            return self.gamma ** (t // self.step_size)
        if self.kind == "multistep":
            return self.gamma ** sum(1 for m in self.milestones if m <= t)
        if self.kind == "log_decay":
            u = max(t - self.warmup, 0)
            if self.half_life > 0:
                return 0.5 ** (u / self.half_life)
            span = max(self.total_steps - 1 - self.warmup, 1)
            return math.exp(self.log_ratio * min(u / span, 1.0))
        raise ValueError(f"unknown schedule kind {self.kind!r}")


def lr_factor(cfg: ScheduleConfig, base_lr: float, epochs: int, iters_per_epoch: int = 1) -> LRFactor:
    """The :class:`LRFactor` of ``cfg`` for a run of ``epochs`` epochs of ``iters_per_epoch`` optimizer
    steps at ``base_lr``.

    Raises:
        ValueError: the warm-up is not shorter than the run, or the run has no step.
    """
    if epochs < 1 or iters_per_epoch < 1:
        raise ValueError(f"epochs and iters_per_epoch must be >= 1, got {epochs}, {iters_per_epoch}")
    total_steps = schedule_steps(cfg, epochs, iters_per_epoch)
    scale = float(iters_per_epoch) if (cfg.per_iteration and cfg.unit == "epoch") else 1.0
    warmup = cfg.warmup * scale
    if warmup > 0 and warmup >= total_steps:
        raise ValueError(f"schedule.warmup={cfg.warmup} {cfg.unit}(s) is not shorter than the run "
                         f"({epochs} epochs of {iters_per_epoch} steps)")
    log_ratio = 0.0
    if cfg.kind == "log_decay" and cfg.final_lr is not None:
        log_ratio = math.log(cfg.final_lr / base_lr)
    return LRFactor(
        kind=cfg.kind, step_size=cfg.step_size * scale, milestones=[m * scale for m in cfg.milestones],
        gamma=cfg.gamma, warmup=warmup, warmup_start_factor=cfg.warmup_start_factor if warmup else 1.0,
        log_ratio=log_ratio, half_life=float(cfg.half_life or 0.0) * scale, total_steps=total_steps,
    )


def schedule_steps(cfg: ScheduleConfig, epochs: int, iters_per_epoch: int) -> int:
    """Number of schedule steps in a run: ``epochs``, or ``epochs * iters_per_epoch`` per iteration."""
    return epochs * iters_per_epoch if cfg.per_iteration else epochs


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, epochs: int, iters_per_epoch: int,
    base_lr: float | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :class:`LRFactor` to every parameter group's initial LR.

    ``base_lr`` (default: the first group's LR) sets the ratio ``final_lr / lr`` of ``log_decay``.
    The caller steps it once per epoch, or once per optimizer step when ``cfg.per_iteration``.
    """
    lr0 = base_lr if base_lr is not None else optimizer.param_groups[0]["lr"]
    factor = lr_factor(cfg, lr0, epochs, iters_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)


def lr_curve(cfg: ScheduleConfig, base_lr: float, epochs: int, iters_per_epoch: int = 1) -> list[float]:
    """The LR at every schedule step of a run, without building an optimizer (for plots and tests)."""
    f = lr_factor(cfg, base_lr, epochs, iters_per_epoch)
    return [base_lr * f(t) for t in range(f.total_steps)]

