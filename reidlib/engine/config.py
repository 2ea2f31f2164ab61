"""Training configuration: optimizer, LR schedule and trainer settings as nested dataclasses.

A YAML file maps onto these dataclasses key for key (:func:`from_dict`); an unknown key, a missing
required key or a value of the wrong type raises an error that names the dotted field path and the file,
so a typo in a config never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

T = TypeVar("T")

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "step", "multistep", "log_decay")
SCHEDULE_UNITS = ("epoch", "iteration")
PROGRESS_MODES = ("auto", "bar", "line", "none")


@dataclass
class OptimizerConfig:
    """Which optimizer and its hyper-parameters.

    Attributes:
        name: ``"adam"`` (seed 000), ``"adamw"`` or ``"sgd"`` (seed 001, with momentum 0.9).
        lr: base learning rate of every parameter group (a group may scale it by ``lr_mult``).
        weight_decay: L2 penalty (decoupled for ``adamw``).
        momentum: SGD momentum; ignored by Adam.
        nesterov: SGD Nesterov momentum.
        betas: Adam ``(beta1, beta2)``.
    """

    name: str = "adam"
    lr: float = 3e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer.name={self.name!r}; expected one of {OPTIMIZERS}")
        if not self.lr > 0:
            raise ValueError(f"optimizer.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"optimizer.weight_decay must be >= 0, got {self.weight_decay}")
        self.betas = tuple(self.betas)  # YAML gives lists
        if len(self.betas) != 2:
            raise ValueError(f"optimizer.betas must have two entries, got {self.betas}")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, as a factor on the base LR (see :mod:`reidlib.engine.schedules`).

    The counts ``step_size``, ``milestones``, ``warmup`` and ``half_life`` are in ``unit``: epochs
    (fractions allowed) or optimizer iterations. ``per_iteration`` says how often the LR changes: after
    every optimizer step (a smooth ramp/decay) or once per epoch. Epoch counts with per-iteration
    updates are converted with the loader's real number of steps per epoch, so a config never has to
    know how many batches an identity sampler yields.

    Attributes:
        kind: ``"constant"``; ``"step"`` (times ``gamma`` every ``step_size``); ``"multistep"``
            (times ``gamma`` at each of ``milestones``); ``"log_decay"`` (log-linear decay from the base
            LR to ``final_lr``, or halving every ``half_life``, seed 001).
        step_size: period of ``"step"``.
        milestones: when ``"multistep"`` multiplies by ``gamma``. Like ``step_size`` they count from the
            start of training, warm-up included (BDB's milestones are absolute epochs).
        gamma: decay factor of ``"step"``/``"multistep"``.
        warmup: length of the linear warm-up at the start (0: none).
        warmup_start_factor: LR factor of the first warm-up step (seed 000: 3e-6 / 3e-4 = 0.01).
        final_lr: ``"log_decay"``: LR of the last step (seed 001: 1e-2 -> 1e-4).
        half_life: ``"log_decay"`` alternative to ``final_lr``: the LR halves every ``half_life``
            (seed 001's ranking stage halves it every 512 iterations).
        unit: ``"epoch"`` or ``"iteration"`` (the latter needs ``per_iteration``).
        per_iteration: update the LR after every optimizer step instead of every epoch.
    """

    kind: str = "constant"
    step_size: float = 0
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    warmup: float = 0
    warmup_start_factor: float = 0.01
    final_lr: float | None = None
    half_life: float | None = None
    unit: str = "epoch"
    per_iteration: bool = False

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule.kind={self.kind!r}; expected one of {SCHEDULES}")
        if self.unit not in SCHEDULE_UNITS:
            raise ValueError(f"schedule.unit={self.unit!r}; expected one of {SCHEDULE_UNITS}")
        if self.unit == "iteration" and not self.per_iteration:
            raise ValueError("schedule.unit='iteration' needs per_iteration: true (counts in iterations "
                             "cannot be followed by a once-per-epoch update)")
        if self.kind == "step" and self.step_size <= 0:
            raise ValueError(f"schedule.kind='step' needs step_size > 0, got {self.step_size}")
        if self.kind == "multistep":
            if not self.milestones:
                raise ValueError("schedule.kind='multistep' needs a non-empty milestones list")
            if list(self.milestones) != sorted(self.milestones):
                raise ValueError(f"schedule.milestones must be increasing, got {self.milestones}")
        if self.kind == "log_decay":
            if (self.final_lr is None) == (self.half_life is None):
                raise ValueError("schedule.kind='log_decay' needs exactly one of final_lr and half_life")
            if self.final_lr is not None and not self.final_lr > 0:
                raise ValueError(f"schedule.final_lr must be > 0, got {self.final_lr}")
            if self.half_life is not None and not self.half_life > 0:
                raise ValueError(f"schedule.half_life must be > 0, got {self.half_life}")
        if self.warmup < 0:
            raise ValueError(f"schedule.warmup must be >= 0, got {self.warmup}")
        if not 0 < self.warmup_start_factor <= 1:
            raise ValueError(f"schedule.warmup_start_factor is not in (0, 1]: {self.warmup_start_factor}")
        if not self.gamma > 0:
            raise ValueError(f"schedule.gamma must be > 0, got {self.gamma}")
        self.milestones = [float(m) for m in self.milestones]


AMP_DTYPES = ("auto", "bfloat16", "float16")


@dataclass
class TrainConfig:
    """How :class:`reidlib.engine.trainer.Trainer` trains.

    Attributes:
        epochs: number of passes over the training loader.
        optimizer: optimizer settings.
        schedule: LR schedule settings.
        grad_accum_steps: micro-batches whose gradients are summed before one optimizer step (seed 001
            accumulates per-triplet gradients to reach its effective batch size). The loss of each
            micro-batch is divided by this number, so the step sees the mean gradient.
        amp: mixed precision autocast; only takes effect on CUDA.
        amp_dtype: the autocast type: ``"auto"`` (bfloat16 on GPUs that support it, which needs no
            gradient scaling and cannot overflow, else float16 with gradient scaling), ``"bfloat16"``
            or ``"float16"``.
        seed: seed of python, numpy and torch RNGs.
        deterministic: ask torch for deterministic kernels (warn-only where none exists).
        max_iters_per_epoch: stop each epoch after this many batches (``None``: the whole loader).
        checkpoint_every: write ``epoch_XXX.pt`` every this many epochs (0: only ``latest.pt``,
            which is rewritten after every epoch so a killed run can resume).
        clip_grad_norm: clip the global gradient norm to this value (``None``: no clipping).
        progress: ``"auto"`` (a tqdm bar on a terminal, one summary line per epoch otherwise),
            ``"bar"``, ``"line"`` or ``"none"``.
        channels_last: train in the ``channels_last`` memory format (images and conv weights as
            ``(B, H, W, C)`` in memory). The same computation; on CPU the convolutions of a narrow ResNet
            ran 15-35 % faster this way on 2 cores. The model is returned in the default format after
            :meth:`~reidlib.engine.trainer.Trainer.fit`, so code that calls ``view`` on its maps is
            unaffected.
        compile: train through ``torch.compile(model)`` (the same arithmetic up to kernel fusion; the first
            steps pay the compilation). Checkpoints hold the plain model's weights either way.
        cpu_bf16: on the CPU, train under bfloat16 autocast (``amp`` is CUDA's switch): convolutions and
            matrix products run in bf16, and so do the activations that follow them; weights, gradients and
            optimizer state stay float32, as do the ops autocast keeps in float32 (cross-entropy). oneDNN
            runs bf16 natively on CPUs with AVX512-BF16 or AMX (``benchmarks/bench_train.py`` times the
            chapters' ``cpu`` models both ways); elsewhere it is emulated, slower, and the trainer warns.
    """

    epochs: int = 10
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    grad_accum_steps: int = 1
    amp: bool = True
    seed: int = 0
    deterministic: bool = True
    max_iters_per_epoch: int | None = None
    checkpoint_every: int = 0
    clip_grad_norm: float | None = None
    progress: str = "auto"
    channels_last: bool = False
    amp_dtype: str = "auto"
    compile: bool = False
    cpu_bf16: bool = False

    def __post_init__(self) -> None:
        if self.amp_dtype not in AMP_DTYPES:
            raise ValueError(f"train.amp_dtype={self.amp_dtype!r}; expected one of {AMP_DTYPES}")
        if self.epochs < 1:
            raise ValueError(f"train.epochs must be >= 1, got {self.epochs}")
        if self.grad_accum_steps < 1:
            raise ValueError(f"train.grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        if self.max_iters_per_epoch is not None and self.max_iters_per_epoch < 1:
            raise ValueError(f"train.max_iters_per_epoch must be >= 1 or null: {self.max_iters_per_epoch}")
        if self.checkpoint_every < 0:
            raise ValueError(f"train.checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"train.clip_grad_norm must be > 0 or null, got {self.clip_grad_norm}")
        if self.progress not in PROGRESS_MODES:
            raise ValueError(f"train.progress={self.progress!r}; expected one of {PROGRESS_MODES}")


class ConfigError(ValueError):
    """A config file or dict does not match its dataclass (unknown key, bad type, missing field)."""


def _where(path: str, source: str | None) -> str:
    return f"{path or '<root>'}" + (f" in {source}" if source else "")


def _convert(value: Any, tp: Any, path: str, source: str | None) -> Any:
    """Convert a plain YAML value to the annotated type ``tp``, recursing into dataclasses."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{_where(path, source)}: null is not allowed (expected {tp})")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path, source)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError("; ".join(errors))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{_where(path, source)}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, source=source, _path=path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{_where(path, source)}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{_where(path, source)}: expected {len(args)} entries, got {value!r}")
            pairs = enumerate(zip(value, args, strict=True))
            return tuple(_convert(v, a, f"{path}[{i}]", source) for i, (v, a) in pairs)
        item = args[0] if args else Any
        out = [_convert(v, item, f"{path}[{i}]", source) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{_where(path, source)}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # PyYAML reads "3e-4" (no dot) as a string; accept numeric strings.
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(f"{_where(path, source)}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{_where(path, source)}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{_where(path, source)}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{_where(path, source)}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], source: str | None = None, _path: str = "") -> T:
    """Build dataclass ``cls`` from a nested mapping (e.g. parsed YAML).

    Missing keys take the dataclass defaults. ``source`` (a file name) is quoted in error messages.

    Raises:
        ConfigError: unknown key, missing required key, or wrong value type; the message names the
            dotted field path (``train.optimizer.lr``) and ``source``.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_where(_path, source)}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = _where(_path, source)
        raise ConfigError(f"{where}: unknown field(s) {unknown} for {cls.__name__}; known: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{_path}.{name}" if _path else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], sub, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_where(sub, source)}: required field is missing")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{_where(_path, source)}: {err}") from err


def to_dict(obj: Any) -> Any:
    """A dataclass (possibly nested) as plain dicts/lists, ready for YAML or JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _defaults_text(cls: type) -> str:
    """``a=1, b='x', ...``: the default of every field of dataclass ``cls`` (nested ones by name)."""
    parts = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            parts.append(f"{f.name}={f.default!r}")
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            shown = type(value).__name__ if dataclasses.is_dataclass(value) else repr(value)
            parts.append(f"{f.name}={shown}")
    return ", ".join(parts)


def load_yaml_config(
    cls: type[T],
    path: str | os.PathLike[str],
    required: tuple[str, ...] = (),
    notice: Callable[[str], Any] | None = None,
) -> T:
    """Read a YAML file into dataclass ``cls`` (see :func:`from_dict`).

    Args:
        cls: the dataclass of the whole file.
        path: the YAML file.
        required: top-level fields the file must set (sections such as ``model``): a config without
            its ``model`` section would otherwise train the default network without a word. A section
            written as ``model: {}`` takes every default, which ``notice`` reports.
        notice: called with one line for each top-level dataclass section the file leaves out or
            writes empty, naming the defaults it takes (``None``: silent).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: the file is empty, is not a YAML mapping, misses a ``required`` field or does not
            match ``cls``; the message names the file.
    """
    import yaml

    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config {p} is a folder, not a YAML file")
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: not valid YAML: {err}") from err
    if data is None:
        if required:
            raise ConfigError(f"config {p} is empty; it must set at least {', '.join(required)}")
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p}: expected a YAML mapping at the top level, got {type(data).__name__}")
    cfg = from_dict(cls, data, source=str(p))  # unknown keys and bad values first: they name a typo
    missing = [name for name in required if name not in data]
    if missing:
        raise ConfigError(f"{p}: section(s) {', '.join(missing)} missing; they decide what is trained, so "
                          f"they are not defaulted silently (write e.g. `{missing[0]}: {{}}` to take every "
                          "default)")
    if notice is not None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            section = hints[f.name]
            if not dataclasses.is_dataclass(section):
                continue
            if f.name not in data:
                notice(f"{p}: no '{f.name}' section; using its defaults ({_defaults_text(section)})")
            elif data[f.name] == {}:
                notice(f"{p}: '{f.name}' is empty; using its defaults ({_defaults_text(section)})")
    return cfg
