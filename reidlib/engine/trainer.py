"""The one training loop every recipe uses.

``Trainer(model, loss_fn, train_loader, cfg, out_dir).fit()`` runs ``cfg.epochs`` epochs and after each
one writes ``out_dir/latest.pt`` (everything needed to continue: model, optimizer, scheduler, gradient
scaler, RNG and loader-generator states, history) and ``out_dir/history.json``. ``fit(resume=True)``
continues from ``latest.pt`` when it exists; because every random state is restored, a resumed run ends
with the same weights as an uninterrupted one (bit-identical on CPU).

The loss contract: ``loss_fn(output: ReIDOutput, batch: dict) -> (loss, terms)`` where ``batch`` holds
the loader's tensors on the device (``"image"`` ``(B, 3, H, W)``, ``"pid"`` ``(B,)``, ``"camid"``,
``"index"``), ``loss`` is a scalar tensor and ``terms`` maps names to floats for the log.

Under ``torchrun`` (:mod:`reidlib.engine.distributed`) the same loop trains data-parallel: the model is
wrapped in ``DistributedDataParallel``, each rank reads its share of the batch from its loader, the logged
terms are averaged over ranks, and rank 0 alone writes ``latest.pt`` (with every rank's random states, so
each rank resumes its own stream) and ``history.json``.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from reidlib.engine import distributed
from reidlib.engine.checkpoint import CHECKPOINT_VERSION, LATEST, load_checkpoint, save_checkpoint
from reidlib.engine.config import TrainConfig, to_dict
from reidlib.engine.device import cpu_has_native_bf16
from reidlib.engine.history import History
from reidlib.engine.schedules import build_optimizer, build_scheduler
from reidlib.engine.seeding import get_rng_state, seed_everything, set_rng_state
from reidlib.models.output import ReIDOutput

LossFn = Callable[[ReIDOutput, dict[str, Any]], tuple[Tensor, Mapping[str, float]]]
ForwardFn = Callable[[nn.Module, dict[str, Any]], ReIDOutput]

_TUPLE_KEYS = ("image", "pid", "camid", "index")
# TrainConfig fields that may change between a run and its resumption (train longer, log differently).
RESUMABLE_CHANGES = ("epochs", "progress", "checkpoint_every", "channels_last", "compile")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names epoch, iteration, loss terms and the
    checkpoint written just before raising."""


def as_batch_dict(batch: Any) -> dict[str, Any]:
    """A loader batch as a dict: dicts pass through, tuples ``(image, pid, camid[, index])`` are named.

    Raises:
        TypeError: neither a dict nor a tuple/list of 2 to 4 entries.
    """
    if isinstance(batch, Mapping):
        if "image" not in batch:
            raise TypeError(f"batch dict has no 'image' entry (keys: {sorted(batch)})")
        return dict(batch)
    if isinstance(batch, (list, tuple)) and 2 <= len(batch) <= 4:
        return dict(zip(_TUPLE_KEYS, batch, strict=False))
    raise TypeError("expected a batch dict or a tuple (image, pid, camid[, index]), "
                    f"got {type(batch).__name__}")


def batch_to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Move every tensor of ``batch`` to ``device`` (other entries are kept as they are)."""
    nb = device.type == "cuda"
    return {k: v.to(device, non_blocking=nb) if torch.is_tensor(v) else v for k, v in batch.items()}


def autocast_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast type of ``TrainConfig.amp_dtype`` on ``device``: ``"auto"`` is bfloat16 where the GPU
    supports it (compute capability 8.0 and later) and float16 elsewhere."""
    if name == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float16
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def default_forward(model: nn.Module, batch: dict[str, Any]) -> ReIDOutput:
    """``model(batch["image"])``; recipes whose model needs labels in training pass their own."""
    return model(batch["image"])


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts (``to_dict`` output)."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs += config_differences(a, b, prefix=f"{name}.")
        elif a != b:
            diffs.append(f"{name}: {a!r} -> {b!r}")
    return diffs


def _loader_generators(loader: Iterable) -> list[torch.Generator]:
    """The distinct torch generators a DataLoader draws its order and worker seeds from."""
    found: list[torch.Generator] = []
    candidates = [getattr(loader, "generator", None)]
    for holder in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        candidates.append(getattr(holder, "generator", None))
        candidates.append(getattr(getattr(holder, "sampler", None), "generator", None))
    for g in candidates:
        if isinstance(g, torch.Generator) and all(g is not h for h in found):
            found.append(g)
    return found


def _epoch_samplers(loader: Iterable) -> list[Any]:
    """Samplers of ``loader`` that have ``set_epoch`` (each reshuffles per epoch)."""
    out = []
    for holder in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                   getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        has_set_epoch = callable(getattr(holder, "set_epoch", None))
        if holder is not None and has_set_epoch and all(holder is not o for o in out):
            out.append(holder)
    return out


class Trainer:
    """Trains ``model`` with ``loss_fn`` on ``train_loader`` as ``cfg`` says; see the module docstring.

    Args:
        model: returns a :class:`ReIDOutput` (through ``forward_fn``).
        loss_fn: ``(output, batch) -> (scalar loss, {name: float})``.
        train_loader: yields batch dicts (or ``(image, pid, camid[, index])`` tuples). For a resumable
            shuffled order give the DataLoader a ``generator`` (see
            :func:`reidlib.engine.seeding.make_generator`); its state is checkpointed.
        cfg: optimizer, schedule, epochs, accumulation, AMP, seed.
        out_dir: where ``latest.pt``, ``epoch_XXX.pt`` and ``history.json`` go.
        device: ``"cpu"``, ``"cuda"``, ...
        param_groups: optimizer parameter groups (dicts with ``params`` and optional ``lr``,
            ``lr_mult``, ``weight_decay``); default: all model parameters in one group.
        callbacks: see :mod:`reidlib.engine.callbacks`.
        forward_fn: ``(model, batch) -> ReIDOutput``; default ``model(batch["image"])``.
        record: plain data stored in each checkpoint under ``"record"``, e.g. the recipe's data and model
            config. Resuming requires the same ``record`` and the same ``cfg`` (except ``epochs``,
            ``progress`` and ``checkpoint_every``), so a changed experiment never continues a stale run.
        sync_batchnorm, find_unused_parameters: data-parallel options (only in a process group; see
            :func:`reidlib.engine.distributed.wrap_model`). A callback with a true
            ``changes_trainable_parameters`` (:class:`~reidlib.engine.callbacks.FreezeParameters`) turns on
            ``find_unused_parameters``.

    ``forward_fn`` receives the model as trained: the ``DistributedDataParallel`` wrapper in a process
    group (its ``.module`` is the model), the model itself otherwise.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        train_loader: Iterable,
        cfg: TrainConfig,
        out_dir: str | Path,
        device: str | torch.device = "cpu",
        param_groups: Sequence[dict[str, Any]] | None = None,
        callbacks: Sequence[Any] = (),
        forward_fn: ForwardFn | None = None,
        record: Mapping[str, Any] | None = None,
        sync_batchnorm: bool = False,
        find_unused_parameters: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.is_main = distributed.is_main_process()
        if cfg.channels_last and distributed.is_distributed():  # DDP's gradient buckets follow the layout
            self.model.to(memory_format=torch.channels_last)
        # DDP waits for a gradient of every parameter that trained when it was wrapped; a phase that
        # freezes some of them (CAMA's classifier warm-up) would stall it without unused-parameter search.
        callbacks = list(callbacks)
        freezes = any(getattr(cb, "changes_trainable_parameters", False) for cb in callbacks)
        self.trained_model = distributed.wrap_model(self.model, self.device, sync_batchnorm,
                                                    find_unused_parameters or freezes)
        if self.trained_model is not self.model and sync_batchnorm:
            self.model = self.trained_model.module
        if cfg.compile:
            self.trained_model = torch.compile(self.trained_model)
        self.loss_fn = loss_fn
        self.train_loader = train_loader
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.callbacks = callbacks
        self.forward_fn = forward_fn or default_forward
        self.record = dict(record or {})

        self.batches_per_epoch = self._batches_per_epoch()
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / cfg.grad_accum_steps)
        self.optimizer = build_optimizer(param_groups if param_groups is not None else model, cfg.optimizer)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, cfg.epochs, self.steps_per_epoch,
                                         base_lr=cfg.optimizer.lr)
        on_cuda = self.device.type == "cuda"
        self.use_amp = bool(cfg.amp and on_cuda) or bool(cfg.cpu_bf16 and self.device.type == "cpu")
        self.amp_dtype = autocast_dtype(cfg.amp_dtype, self.device) if on_cuda else torch.bfloat16
        if cfg.cpu_bf16 and self.device.type == "cpu" and not cpu_has_native_bf16():
            warnings.warn("train.cpu_bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX), so autocast "
                          "emulates it and trains slower than float32. cpu_bf16=False in the config trains "
                          "in float32; rounding differs, which training turns into differences of the size "
                          "of the seed spread", stacklevel=2)
        # bfloat16 has float32's exponent range: its gradients do not underflow, so they need no scaling.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.epoch = 0  # finished epochs
        self.global_step = 0  # optimizer steps taken
        self.history = History()
        self.progress = self._progress_mode(cfg.progress)

    # ------------------------------------------------------------------ setup helpers
    def _batches_per_epoch(self) -> int:
        try:
            n = len(self.train_loader)  # type: ignore[arg-type]
        except TypeError:
            if self.cfg.max_iters_per_epoch is None:
                raise ValueError("the training loader has no len(); set train.max_iters_per_epoch") from None
            n = self.cfg.max_iters_per_epoch
        if self.cfg.max_iters_per_epoch is not None:
            n = min(n, self.cfg.max_iters_per_epoch)
        if n < 1:
            raise ValueError("the training loader yields no batches (is the dataset smaller than one batch "
                             "with drop_last=True?)")
        return n

    @staticmethod
    def _progress_mode(mode: str) -> str:
        if mode == "auto":
            return "bar" if sys.stderr.isatty() else "line"
        return mode

    @property
    def latest_path(self) -> Path:
        return self.out_dir / LATEST

    @property
    def lr(self) -> float:
        """Current LR of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training, as tensors and plain data."""
        sampler_states = [s.state_dict() for s in _epoch_samplers(self.train_loader)
                          if callable(getattr(s, "state_dict", None))]
        loader = {"generators": [g.get_state() for g in _loader_generators(self.train_loader)],
                  "samplers": sampler_states}
        ranks = distributed.all_gather_objects({"rng": get_rng_state(), "loader": loader})
        return {
            "version": CHECKPOINT_VERSION,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": History(self.history.epochs).to_list(),
            "rng": get_rng_state(),
            "loader": loader,
            "ranks": ranks if len(ranks) > 1 else [],
            "callbacks": [cb.state_dict() if callable(getattr(cb, "state_dict", None)) else None
                          for cb in self.callbacks],
            "config": to_dict(self.cfg),
            "record": self.record,
        }

    def resume_differences(self, state: Mapping[str, Any]) -> list[str]:
        """Why the checkpoint ``state`` cannot be resumed by this trainer: its version, and the config and
        ``record`` entries that differ (empty when it can)."""
        if state.get("version") != CHECKPOINT_VERSION:
            return [f"checkpoint version {state.get('version')!r}, expected {CHECKPOINT_VERSION}"]
        diffs = [d for d in config_differences(state.get("config", {}), to_dict(self.cfg))
                 if d.split(":")[0] not in RESUMABLE_CHANGES]
        return diffs + config_differences(state.get("record", {}), self.record)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (model, optimizer, scheduler, scaler, RNGs, loader, history).

        Raises:
            ValueError: the state was written by an incompatible version or a different loader setup.
        """
        diffs = self.resume_differences(state)
        if diffs:
            raise ValueError("cannot resume: the checkpoint was trained with a different config ("
                             + "; ".join(diffs) + "); start over (resume=False) or use another output folder")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] or not self.scaler.is_enabled():  # a CPU or bfloat16 run saved no scale
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = History(state["history"])
        ranks = state.get("ranks") or []
        if len(ranks) not in (0, distributed.world_size()) or (not ranks and distributed.world_size() > 1):
            raise ValueError(f"cannot resume: the checkpoint holds the random states of {len(ranks) or 1} "
                             f"process(es), this run has {distributed.world_size()}; resume with the same "
                             "--nproc_per_node")
        own = ranks[distributed.rank()] if ranks else {"rng": state["rng"], "loader": state["loader"]}
        set_rng_state(own["rng"])
        gens = _loader_generators(self.train_loader)
        saved = own["loader"]["generators"]
        if len(saved) != len(gens):
            raise ValueError(f"checkpoint has {len(saved)} loader generator state(s), "
                             f"the loader has {len(gens)}")
        for g, s in zip(gens, saved, strict=True):
            g.set_state(s)
        samplers = [s for s in _epoch_samplers(self.train_loader)
                    if callable(getattr(s, "load_state_dict", None))]
        for s, st in zip(samplers, own["loader"]["samplers"], strict=False):
            s.load_state_dict(st)
        for cb, st in zip(self.callbacks, state.get("callbacks", []), strict=False):
            if st is not None and callable(getattr(cb, "load_state_dict", None)):
                cb.load_state_dict(st)

    def save(self, path: Path | None = None) -> Path:
        """Write the training state (default: ``out_dir/latest.pt``); in a process group every rank
        calls it (the states are gathered) and rank 0 writes, the others wait until the file is there."""
        path = path or self.latest_path
        state = self.state_dict()
        if self.is_main:
            save_checkpoint(state, path)
        distributed.barrier()
        return path

    # ------------------------------------------------------------------ training
    def fit(self, resume: bool = True) -> History:
        """Train until ``cfg.epochs`` epochs are done; with ``resume``, continue from ``latest.pt``.

        Returns the full history (restored epochs included).

        Raises:
            NonFiniteLossError: the loss became NaN/inf (a checkpoint of that moment is saved first).
        """
        seed_everything(self.cfg.seed, self.cfg.deterministic)
        if self.cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        try:
            return self._fit(resume)
        finally:
            if self.cfg.channels_last:
                self.model.to(memory_format=torch.contiguous_format)

    def fit_or_resume(self) -> History:
        """:meth:`fit`, resuming from ``latest.pt`` when the run folder holds one of this same experiment
        (an interrupted run continues where it stopped); a checkpoint of another config is not resumed:
        training starts over and replaces it at the end of the first epoch."""
        resume = False
        if self.latest_path.is_file():
            diffs = self.resume_differences(load_checkpoint(self.latest_path, map_location="cpu"))
            resume = not diffs
            if diffs and self.progress != "none":
                print(f"not resuming {self.latest_path}: {'; '.join(diffs[:4])}; training from the start",
                      flush=True)
        return self.fit(resume=resume)

    def _fit(self, resume: bool) -> History:
        if resume and self.latest_path.is_file():
            self.load_state_dict(load_checkpoint(self.latest_path, map_location=self.device))
            if self.progress != "none":
                print(f"resumed from {self.latest_path} after epoch {self.epoch}/{self.cfg.epochs}",
                      flush=True)
        for epoch in range(self.epoch, self.cfg.epochs):
            logs = self._run_epoch(epoch)
            for cb in self.callbacks:
                if hasattr(cb, "on_epoch_end"):
                    cb.on_epoch_end(self, epoch, logs)
            self.history.append(logs)
            self.epoch = epoch + 1
            self.save()
            if self.cfg.checkpoint_every and self.epoch % self.cfg.checkpoint_every == 0:
                self.save(self.out_dir / f"epoch_{self.epoch:03d}.pt")
            if self.is_main:
                self.history.save(self.out_dir / "history.json")
            if self.progress == "line" and self.is_main:
                print(self._summary_line(logs), flush=True)
        return self.history

    def _summary_line(self, logs: Mapping[str, Any]) -> str:
        skip = {"epoch", "lr", "time_s", "images_per_s", "iterations", "loss"}
        terms = ", ".join(f"{k} {v:.4g}" for k, v in logs.items() if k not in skip and isinstance(v, float))
        return (f"epoch {logs['epoch']}/{self.cfg.epochs}  loss {logs['loss']:.4f}"
                + (f" ({terms})" if terms else "")
                + f"  lr {logs['lr']:.2e}  {logs['time_s']:.1f} s  {logs['images_per_s']:.0f} img/s")

    def _run_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        self.trained_model.train()
        for s in _epoch_samplers(self.train_loader):
            s.set_epoch(epoch)
        for cb in self.callbacks:
            if hasattr(cb, "on_epoch_start"):
                cb.on_epoch_start(self, epoch)
        lr_start = self.lr
        sums: dict[str, float] = defaultdict(float)
        n_batches = n_images = 0
        accum = cfg.grad_accum_steps
        total = self.batches_per_epoch
        bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=self.progress != "bar" or not self.is_main,
                   leave=True, dynamic_ncols=True, file=sys.stderr)
        t0 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        group_sums: dict[str, float] = defaultdict(float)
        batches = iter(self.train_loader)
        for i in itertools.count():
            if i < total and i % accum == 0:
                for cb in self.callbacks:
                    if hasattr(cb, "on_step_start"):
                        cb.on_step_start(self, self.global_step + 1)
            # Ask the loader once more after the last batch, as a for loop does: a sampler may draw from
            # its generator when it runs out (the order of the next epoch depends on it).
            try:
                raw = next(batches)
            except StopIteration:
                break
            if i >= total:
                break
            batch = batch_to_device(as_batch_dict(raw), self.device)
            if cfg.channels_last and torch.is_tensor(batch.get("image")) and batch["image"].ndim == 4:
                batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                output = self.forward_fn(self.trained_model, batch)
                loss, terms = self.loss_fn(output, batch)
            if not torch.is_tensor(loss) or loss.ndim != 0:
                raise TypeError(f"loss_fn must return a scalar tensor first, got {type(loss).__name__} "
                                f"{tuple(getattr(loss, 'shape', ()))}")
            terms = {k: float(v) for k, v in terms.items()}
            loss_value = float(loss.detach())
            # Every rank must stop together, or the others would wait forever in the next all-reduce.
            if max(distributed.all_reduce_sum([0.0 if math.isfinite(loss_value) else 1.0], self.device)):
                self._fail(epoch, i, loss_value, terms, batch)
            # The last group of an epoch may be shorter than `accum`; divide by its true size so every
            # optimizer step sees the mean gradient of its micro-batches.
            group_start = (i // accum) * accum
            group_size = min(accum, total - group_start)
            self.scaler.scale(loss / group_size).backward()
            sums["loss"] += loss_value
            for k, v in terms.items():
                if k != "loss":
                    sums[k] += v
            group_sums["loss"] += loss_value
            for k, v in terms.items():
                if k != "loss":
                    group_sums[k] += v
            n_batches += 1
            n_images += len(batch["image"])
            if i + 1 - group_start == group_size:
                self._optimizer_step()
                logs = {k: v / group_size for k, v in group_sums.items()} | {"lr": self.lr}
                group_sums.clear()
                for cb in self.callbacks:
                    if hasattr(cb, "on_step_end"):
                        cb.on_step_end(self, self.global_step, logs)
            bar.update(1)
            if self.progress == "bar":
                bar.set_postfix(loss=f"{sums['loss'] / n_batches:.4f}", lr=f"{self.lr:.2e}", refresh=False)
        bar.close()
        if n_batches == 0:
            raise ValueError(f"epoch {epoch + 1}: the training loader yielded no batches")
        if n_batches < total:
            raise ValueError(f"epoch {epoch + 1}: the training loader yielded {n_batches} batches, "
                             f"expected {total} (its length changed?)")
        if not cfg.schedule.per_iteration:
            self.scheduler.step()
        elapsed = time.perf_counter() - t0
        if distributed.is_distributed():  # the epoch's terms over all ranks; images: the global count
            keys = sorted(sums)
            totals = distributed.all_reduce_sum([sums[k] for k in keys] + [float(n_images)], self.device)
            ranks = distributed.world_size()
            sums = defaultdict(float, {k: v / ranks for k, v in zip(keys, totals, strict=False)})
            n_images = int(totals[-1])
        logs: dict[str, Any] = {"epoch": epoch + 1, "lr": lr_start}
        logs.update({k: v / n_batches for k, v in sums.items()})
        logs.update({"time_s": elapsed, "images_per_s": n_images / max(elapsed, 1e-9),
                     "iterations": n_batches})
        return logs

    def _optimizer_step(self) -> None:
        if self.cfg.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        if self.cfg.schedule.per_iteration:
            self.scheduler.step()

    def _fail(self, epoch: int, it: int, loss: float, terms: Mapping[str, float],
              batch: Mapping[str, Any]) -> None:
        state = self.state_dict()
        state["failure"] = {"epoch": epoch + 1, "iteration": it + 1, "loss": loss, "terms": dict(terms)}
        if torch.is_tensor(batch.get("index")):
            state["failure"]["batch_index"] = batch["index"].detach().cpu()
        path = save_checkpoint(state, self.out_dir / f"nonfinite_epoch{epoch + 1:03d}_iter{it + 1:05d}.pt")
        term_text = ", ".join(f"{k}={v:.4g}" for k, v in terms.items()) or "none"
        raise NonFiniteLossError(
            f"non-finite loss {loss} at epoch {epoch + 1}, iteration {it + 1} of {self.batches_per_epoch} "
            f"(optimizer step {self.global_step}); loss terms: {term_text}. The state at that moment is "
            f"saved in {path}; {self.latest_path.name} still holds the last finished epoch."
        )
