"""Trainer callbacks: the hooks recipes use for training phases, curricula and periodic evaluation.

A callback is any object with some of ``on_epoch_start(trainer, epoch)``, ``on_step_start(trainer,
step)`` (before the first batch of an optimizer step is loaded), ``on_step_end(trainer, step, logs)``
(``logs``: the mean loss and terms of the step's micro-batches, and the LR after the step) and
``on_epoch_end(trainer, epoch, logs)`` (``epoch`` is 0-based; ``on_epoch_end`` may
add entries to ``logs``, which then land in the history). A callback whose behaviour depends only on
the epoch number needs no state; one that keeps state across epochs provides ``state_dict()`` /
``load_state_dict()`` so that a resumed run behaves like an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from copy import deepcopy
from typing import TYPE_CHECKING, Any, Protocol

from torch import nn

if TYPE_CHECKING:
    from reidlib.engine.trainer import Trainer


class Callback:
    """No-op base class; subclasses override the hooks they need."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        pass

    def on_step_start(self, trainer: Trainer, step: int) -> None:
        pass

    def on_step_end(self, trainer: Trainer, step: int, logs: Mapping[str, float]) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        pass


class Progressive(Protocol):
    def set_progress(self, p: float) -> None: ...


class FreezeParameters(Callback):
    """Train only some parameters during the first epochs (a training phase).

    Seed 000 first fine-tunes only the classifier weights for 10 epochs (with a warm-up LR), then the
    whole model. ``FreezeParameters(model, trainable=lambda name: "classifier" in name, epochs=10)``
    sets ``requires_grad=False`` on every other parameter for epochs ``0..epochs-1`` and restores it
    afterwards. The optimizer skips parameters without gradients, so their Adam moments stay untouched.

    Args:
        model: the model whose parameters are frozen.
        trainable: predicate on the parameter name (as in ``named_parameters()``): True = keeps training.
        epochs: number of epochs of the phase.
        freeze_bn: also keep the frozen part's BatchNorm layers in eval mode (running statistics fixed)
            during the phase; a BatchNorm counts as frozen when none of its parameters is trainable.
    """

    #: The trainer reads this: under DDP the frozen parameters' gradients must not be waited for.
    changes_trainable_parameters = True

    def __init__(self, model: nn.Module, trainable: Callable[[str], bool], epochs: int,
                 freeze_bn: bool = False) -> None:
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        self.model = model
        self.trainable = trainable
        self.epochs = epochs
        self.freeze_bn = freeze_bn
        names = [n for n, _ in model.named_parameters()]
        if not any(trainable(n) for n in names):
            raise ValueError("FreezeParameters: the predicate keeps no parameter trainable")
        self._original = {n: p.requires_grad for n, p in model.named_parameters()}

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        in_phase = epoch < self.epochs
        for name, p in self.model.named_parameters():
            p.requires_grad_(self._original[name] and (not in_phase or self.trainable(name)))
        if in_phase and self.freeze_bn:
            for mod_name, mod in self.model.named_modules():
                if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                    own = [f"{mod_name}.{n}" if mod_name else n for n, _ in mod.named_parameters()]
                    if own and not any(self.trainable(n) for n in own):
                        mod.eval()


class SetProgress(Callback):
    """Tell curriculum objects (e.g. ``ProgressiveCutout``) how far training is: ``p = epoch / (E - 1)``
    in ``[0, 1]`` at the start of each epoch.

    With ``DataLoader`` workers the transform lives in the worker processes; they see the new value
    only when workers are re-created each epoch (``persistent_workers=False``, the default).
    """

    def __init__(self, targets: Iterable[Progressive], total_epochs: int) -> None:
        self.targets = list(targets)
        for t in self.targets:
            if not callable(getattr(t, "set_progress", None)):
                raise TypeError(f"{type(t).__name__} has no set_progress(p) method")
        if total_epochs < 1:
            raise ValueError(f"total_epochs must be >= 1, got {total_epochs}")
        self.total_epochs = total_epochs

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        p = epoch / max(self.total_epochs - 1, 1)
        for t in self.targets:
            t.set_progress(min(max(p, 0.0), 1.0))


class PeriodicEvaluation(Callback):
    """Run ``evaluate(trainer) -> dict[str, float]`` every ``every`` epochs and after the last one; the
    returned metrics are added to that epoch's history entry (e.g. ``{"mAP": 0.41, "rank1": 0.62}``)."""

    def __init__(self, evaluate: Callable[[Trainer], Mapping[str, float]], every: int) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.evaluate = evaluate
        self.every = every

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if (epoch + 1) % self.every == 0 or epoch + 1 == trainer.cfg.epochs:
            logs.update({k: float(v) for k, v in self.evaluate(trainer).items()})


class StepProgress(Callback):
    """Tell curriculum objects (e.g. ``ProgressiveCutout``) how far training is at every optimizer step:
    ``p = (step - 1) / (total_steps - 1)`` for step ``1..total_steps``, before the step's images are loaded
    (seed 001 grows its cut-out area per iteration, from 0 at the first step to the maximum at the last).
    ``total_steps`` counts optimizer steps over the whole run."""

    def __init__(self, targets: Iterable[Progressive], total_steps: int) -> None:
        self.targets = list(targets)
        for t in self.targets:
            if not callable(getattr(t, "set_progress", None)):
                raise TypeError(f"{type(t).__name__} has no set_progress(p) method")
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.total_steps = total_steps

    def on_step_start(self, trainer: Trainer, step: int) -> None:
        p = min(max((step - 1) / max(self.total_steps - 1, 1), 0.0), 1.0)
        for t in self.targets:
            t.set_progress(p)


class _KeepsEntries(Callback):
    """A callback that records ``entries`` (plain dicts) and checkpoints them, so a resumed run keeps the
    entries written before the interruption."""

    entries: list[dict[str, float]]

    def state_dict(self) -> dict[str, Any]:
        return {"entries": deepcopy(self.entries)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.entries = list(state["entries"])


class StepLog(_KeepsEntries):
    """Keep every optimizer step's logs (``{"iteration": step, "loss", terms..., "lr"}``, ``iteration``
    counted from 1, ``lr`` the rate the step used) in ``entries``; checkpointed with the run, so a resumed
    run keeps the steps before."""

    def __init__(self) -> None:
        self.entries: list[dict[str, float]] = []
        self._lr = float("nan")

    def on_step_start(self, trainer: Trainer, step: int) -> None:
        self._lr = trainer.lr

    def on_step_end(self, trainer: Trainer, step: int, logs: Mapping[str, float]) -> None:
        self.entries.append({"iteration": step, **{k: float(v) for k, v in logs.items()}, "lr": self._lr})


class EpochStart(_KeepsEntries):
    """Run ``fn(trainer) -> logs or None`` at the start of every epoch (e.g. seed 001's refresh of the
    triplet pool with the current model); returned logs are kept in ``entries`` as
    ``{"iteration": next step, **logs}`` and added to that epoch's history entry."""

    def __init__(self, fn: Callable[[Trainer], Mapping[str, float] | None]) -> None:
        self.fn = fn
        self.entries: list[dict[str, float]] = []
        self._pending: dict[str, float] = {}

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        logs = dict(self.fn(trainer) or {})
        self._pending = {k: float(v) for k, v in logs.items()}
        if logs:
            self.entries.append({"iteration": trainer.global_step + 1, **self._pending})

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        logs.update(self._pending)
