"""Results files: one JSON file per training/evaluation run, with provenance.

Layout: ``<results root>/<chapter>/<scale>/<run>.json`` (root: :func:`reidlib.results.paths.results_root`).
``smoke`` results are git-ignored; ``cpu`` and ``full`` results are committed, and every table and claim in
the book is read from them. A file holds::

    {"schema": 1, "chapter", "run", "scale", "dataset", "seed",
     "metrics": {...}, "config": {...}, "history": ..., "extra": {...}, "wall_time_s": float,
     "provenance": {"git": {"commit", "dirty"}, "versions": {...}, "device": {...}, "timestamp_utc"}}
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import numbers
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from reidlib.atomic import atomic_write_json
from reidlib.results.paths import results_root
from reidlib.results.provenance import collect_provenance
from reidlib.scale import SCALES

SCHEMA_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
#: Keys of a results file that do not describe the experiment itself (ignored when comparing runs).
VOLATILE_KEYS = ("provenance", "wall_time_s")


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One results file, loaded. ``path`` is where it was read from or written to."""

    chapter: str
    run: str
    scale: str
    dataset: str
    seed: int | None
    metrics: dict[str, Any]
    config: dict[str, Any]
    wall_time_s: float
    history: Any = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    path: Path | None = None
    reused: bool = False
    data_identity: str | None = None

    def metric(self, name: str) -> float:
        """A metric by name; nested metrics use dots (``"ap_modes.trapezoid"``).

        Raises:
            KeyError: no such metric (the message lists the available ones).
        """
        return lookup_metric(self.metrics, name, where=str(self.path or self.run))


@dataclasses.dataclass
class RunOutcome:
    """What a ``train_fn`` passed to :func:`run_or_reuse` returns."""

    metrics: dict[str, Any]
    history: Any = None
    extra: dict[str, Any] | None = None


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"invalid {what} name {value!r}: use letters, digits, '_', '-', '.' (no slashes, no leading dot)"
        )
    return value


def _check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}")
    return scale


def to_jsonable(obj: Any, where: str = "value") -> Any:
    """Convert configs and metrics to plain JSON types.

    Dataclasses become dicts, tuples lists, paths strings, enums their value, numpy/torch scalars Python
    numbers; non-finite floats become ``None`` (JSON has no NaN).

    Raises:
        TypeError: an object that has no JSON form (the message names where it was found).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = dataclasses.fields(obj)
        return {f.name: to_jsonable(getattr(obj, f.name), f"{where}.{f.name}") for f in fields}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value, where)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist") and hasattr(obj, "shape"):  # numpy arrays and torch tensors, 0-d included
        return to_jsonable(obj.tolist(), where)
    raise TypeError(f"{where}: cannot store {type(obj).__name__} in a results file (expected JSON-like data)")


def _check_metrics(metrics: Mapping[str, Any], where: str = "metrics") -> None:
    if not isinstance(metrics, Mapping) or not metrics:
        raise ValueError(f"{where} must be a non-empty mapping of name -> number, got {metrics!r}")
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            _check_metrics(value, f"{where}.{key}")
        elif isinstance(value, (list, tuple, str)):
            continue  # a CMC curve, or a label such as ``ap_mode`` that ``RankResult.as_dict`` includes
        elif value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)  # numpy / torch scalars
            except (TypeError, ValueError):
                raise ValueError(f"{where}.{key} must be a number, got {value!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where}.{key} is not finite ({value}); a diverged run should not be stored")


def lookup_metric(metrics: Mapping[str, Any], name: str, where: str = "run") -> float:
    """``metrics[name]``, following dots into nested dicts (a flat key with dots wins).

    Raises:
        KeyError: no such metric (the message lists the available names).
    """
    if name in metrics:
        return metrics[name]
    node: Any = metrics
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            available = ", ".join(sorted(flatten_metrics(metrics)))
            raise KeyError(f"{where}: no metric {name!r}; available: {available}")
        node = node[part]
    return node


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metric dicts flattened to ``{"a.b": value}``; lists (curves) are left out."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, f"{name}."))
        elif not isinstance(value, (list, tuple)):
            flat[name] = value
    return flat


def run_path(chapter: str, run: str, scale: str, root: str | os.PathLike | None = None) -> Path:
    """``<root>/<chapter>/<scale>/<run>.json`` (names validated)."""
    folder = results_root(root) / _check_name(chapter, "chapter") / _check_scale(scale)
    return folder / f"{_check_name(run, 'run')}.json"


def save_run(
    chapter: str,
    run: str,
    scale: str,
    metrics: Mapping[str, Any],
    config: Any,
    dataset: str,
    seed: int | None,
    wall_time_s: float,
    history: Any = None,
    extra: Mapping[str, Any] | None = None,
    root: str | os.PathLike | None = None,
    device: str | None = None,
    data_identity: str | None = None,
) -> Path:
    """Write one run's results file, adding provenance (git commit, versions, device, UTC time).

    Args:
        chapter, run: names (letters, digits, ``_-.``); the file is ``<root>/<chapter>/<scale>/<run>.json``.
        scale: one of ``smoke``, ``cpu``, ``full``.
        metrics: name -> number, finite (nested dicts, lists such as a CMC curve, and string labels such as
            ``ap_mode`` are allowed, so ``RankResult.as_dict()`` can be stored as it is).
            Rank metrics are stored as the evaluation returns them (fractions in [0, 1]).
        config: the run's configuration (dataclass or mapping) - what makes two runs the same run.
        dataset: dataset name, e.g. ``"synth_small"`` or ``"market1501"``.
        seed: random seed of the run.
        wall_time_s: seconds the run took.
        history: per-epoch logs (anything JSON-like), e.g. the engine's metrics history.
        extra: anything else worth keeping (e.g. per-branch metrics).
        device: the device the run used (``"cpu"``, ``"cuda"``); recorded with its model name.

    Returns:
        The path written.

    Raises:
        ValueError: bad names, unknown scale, empty or non-finite metrics, negative wall time.
        TypeError: something that cannot be stored as JSON (the message names the field).
    """
    path = run_path(chapter, run, scale, root)
    _check_metrics(metrics)
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"dataset must be a non-empty string, got {dataset!r}")
    if wall_time_s is None or not math.isfinite(float(wall_time_s)) or float(wall_time_s) < 0:
        raise ValueError(f"wall_time_s must be a finite number >= 0, got {wall_time_s!r}")
    payload = {
        "schema": SCHEMA_VERSION,
        "chapter": chapter,
        "run": run,
        "scale": scale,
        "dataset": dataset,
        "seed": None if seed is None else int(seed),
        "metrics": to_jsonable(metrics, "metrics"),
        "config": to_jsonable(config, "config"),
        "history": to_jsonable(history, "history"),
        "extra": to_jsonable(dict(extra or {}), "extra"),
        "wall_time_s": round(float(wall_time_s), 3),
        "provenance": collect_provenance(device),
    }
    if data_identity is not None:
        payload["data_identity"] = str(data_identity)
    return atomic_write_json(path, payload)


def read_run_file(path: str | os.PathLike) -> RunRecord:
    """Load a results file from an explicit path.

    Raises:
        FileNotFoundError: no such file. ValueError: not a results file (names the missing keys).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    required = ("chapter", "run", "scale", "dataset", "metrics", "config")
    missing = [k for k in required if k not in data] if isinstance(data, dict) else list(required)
    if missing:
        raise ValueError(f"{path} is not a results file: missing keys {missing}")
    return RunRecord(
        chapter=data["chapter"],
        run=data["run"],
        scale=data["scale"],
        dataset=data["dataset"],
        seed=data.get("seed"),
        metrics=data["metrics"],
        config=data["config"],
        wall_time_s=float(data.get("wall_time_s") or 0.0),
        history=data.get("history"),
        extra=data.get("extra") or {},
        provenance=data.get("provenance") or {},
        path=path,
        data_identity=data.get("data_identity"),
    )


def list_runs(chapter: str, scale: str, root: str | os.PathLike | None = None) -> list[str]:
    """Names of the runs stored for ``chapter`` at ``scale`` (sorted; empty when none)."""
    folder = results_root(root) / _check_name(chapter, "chapter") / _check_scale(scale)
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def load_run(chapter: str, run: str, scale: str, root: str | os.PathLike | None = None) -> RunRecord:
    """Load ``<root>/<chapter>/<scale>/<run>.json``.

    Raises:
        FileNotFoundError: no such run (the message lists the runs that do exist).
    """
    path = run_path(chapter, run, scale, root)
    if not path.is_file():
        have = list_runs(chapter, scale, root)
        raise FileNotFoundError(
            f"no results for run {run!r} of chapter {chapter!r} at scale {scale!r} ({path}); "
            f"stored runs: {', '.join(have) if have else 'none'}"
        )
    return read_run_file(path)


def load_runs(chapter: str, scale: str, root: str | os.PathLike | None = None):
    """All runs of a chapter at one scale as a ``pandas.DataFrame``, one row per run.

    Columns: ``run, dataset, seed, scale, wall_time_s, git_commit`` then every (flattened) metric.
    Empty (with those first columns) when nothing has been run at that scale.
    """
    import pandas as pd

    base = ["run", "dataset", "seed", "scale", "wall_time_s", "git_commit"]
    rows = []
    for name in list_runs(chapter, scale, root):
        rec = load_run(chapter, name, scale, root)
        git = rec.provenance.get("git", {}) if isinstance(rec.provenance, dict) else {}
        rows.append(
            {
                "run": rec.run,
                "dataset": rec.dataset,
                "seed": rec.seed,
                "scale": rec.scale,
                "wall_time_s": rec.wall_time_s,
                "git_commit": str(git.get("commit", "unknown"))[:10],
                **flatten_metrics(rec.metrics),
            }
        )
    return pd.DataFrame(rows, columns=None if rows else base)


def config_differences(a: Any, b: Any, prefix: str = "", defaults: Any = None) -> list[str]:
    """Dotted names of the fields where two JSON-like configs differ (empty when equal).

    ``defaults``: the JSON-like default values of ``b``'s fields (:func:`config_defaults`). A field that
    ``a`` lacks and ``b`` holds at its default is no difference: it was added to the config class after
    ``a`` was stored, and a new field's default keeps the behaviour it had before.
    """
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = []
        known = defaults if isinstance(defaults, dict) else {}
        for key in sorted(set(a) | set(b)):
            name = f"{prefix}{key}"
            if key not in a and key in known and b[key] == known[key]:
                continue
            if key not in a or key not in b:
                diffs.append(name)
            else:
                diffs.extend(config_differences(a[key], b[key], f"{name}.", known.get(key)))
        return diffs
    return [] if a == b else [prefix.rstrip(".") or "<root>"]


def config_defaults(config: Any) -> Any:
    """The JSON-like default values of a dataclass config's fields, nested like ``to_jsonable(config)``
    (fields without a default are left out)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return None
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out[f.name] = config_defaults(value)
        elif f.default is not dataclasses.MISSING:
            out[f.name] = to_jsonable(f.default, f.name)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = to_jsonable(f.default_factory(), f.name)
    return out


def _field(config: Any, name: str) -> Any:
    if isinstance(config, Mapping):
        return config.get(name)
    return getattr(config, name, None)


def reusable_run(chapter: str, run: str, scale: str, config: Any, data_identity: str | None = None,
                 root: str | os.PathLike | None = None, defaults: Any = None) -> tuple[RunRecord | None, str]:
    """The stored run :func:`run_or_reuse` would reuse (marked ``reused``), or ``None`` and why not: no
    results file, a stored config that differs from ``config``, or other data.

    ``defaults``: the default values of ``config``'s fields (:func:`config_defaults`; computed from
    ``config`` when it is a dataclass): a field the stored config lacks and ``config`` holds at its default
    is no difference (see :func:`config_differences`)."""
    path = run_path(chapter, run, scale, root)
    if not path.is_file():
        return None, f"no results file {path}"
    stored = read_run_file(path)
    defaults = config_defaults(config) if defaults is None else defaults
    diffs = config_differences(stored.config, to_jsonable(config, "config"), defaults=defaults)
    same_data = data_identity is None or stored.data_identity == data_identity
    if not diffs and same_data:
        return dataclasses.replace(stored, reused=True), ""
    why = [f"config differs in {', '.join(diffs[:8])}"] if diffs else []
    if not same_data:
        stored_identity = stored.data_identity or "not recorded"
        why.append(f"its data differ (stored {stored_identity}, now {data_identity})")
    return None, "; ".join(why)


def run_or_reuse(
    chapter: str,
    run: str,
    scale: str,
    config: Any,
    train_fn: Callable[[], RunOutcome | Mapping[str, Any]],
    reuse: bool = False,
    dataset: str | None = None,
    seed: int | None = None,
    root: str | os.PathLike | None = None,
    device: str | None = None,
    data_identity: str | None = None,
    defaults: Any = None,
) -> RunRecord:
    """Train (via ``train_fn``) and save, or load a finished run with the same config and data.

    With ``reuse=True`` and a results file whose stored config equals ``config`` (and, when
    ``data_identity`` is given, whose stored data identity equals it), the file is loaded and a line saying
    so is printed; otherwise ``train_fn()`` runs, its wall time is measured, and the results are saved
    with :func:`save_run`. CI and ``make reproduce`` never reuse.

    Args:
        train_fn: no-argument callable returning a :class:`RunOutcome` or a mapping with key ``"metrics"``
            (and optionally ``"history"``, ``"extra"``).
        dataset, seed: default to ``config.dataset`` / ``config.seed`` (attribute or key).
        data_identity: a digest of the data the run sees (e.g.
            :meth:`reidlib.data.records.ReIDSplits.fingerprint`), stored with the run; a stored run with
            another (or none) is trained again, with a printed notice.
        defaults: as in :func:`reusable_run` (for a ``config`` given as a plain mapping).

    Raises:
        ValueError: no dataset given or found in the config; ``train_fn`` returned something else.
    """
    dataset = dataset if dataset is not None else _field(config, "dataset")
    seed = seed if seed is not None else _field(config, "seed")
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(
            f"run {chapter}/{run}: pass dataset= or give the config a 'dataset' field (got {dataset!r})"
        )
    path = run_path(chapter, run, scale, root)
    if reuse and path.is_file():
        stored, why = reusable_run(chapter, run, scale, config, data_identity, root, defaults)
        if stored is not None:
            when = stored.provenance.get("timestamp_utc", "?")
            commit = str(stored.provenance.get("git", {}).get("commit", "unknown"))[:10]
            print(f"Reused {chapter}/{scale}/{run}: same config, recorded {when} at commit {commit} ({path})")
            return stored
        print(f"Not reusing {path}: {why}; training again")
    start = time.perf_counter()
    outcome = train_fn()
    wall = time.perf_counter() - start
    if isinstance(outcome, RunOutcome):
        metrics, history, extra = outcome.metrics, outcome.history, outcome.extra
    elif isinstance(outcome, Mapping) and "metrics" in outcome:
        unknown = sorted(set(outcome) - {"metrics", "history", "extra"})
        if unknown:
            raise ValueError(f"train_fn for {chapter}/{run} returned unknown keys {unknown}")
        metrics, history, extra = outcome["metrics"], outcome.get("history"), outcome.get("extra")
    else:
        raise ValueError(
            f"train_fn for {chapter}/{run} must return a RunOutcome or a mapping with 'metrics', "
            f"got {type(outcome).__name__}"
        )
    saved = save_run(chapter, run, scale, metrics, config, dataset, seed, wall, history, extra, root, device,
                     data_identity=data_identity)
    return read_run_file(saved)
