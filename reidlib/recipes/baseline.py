"""The baseline recipe every chapter compares against: a ResNet with IDE+BN or BNNeck head, trained with
label-smoothed cross-entropy plus an optional batch-hard triplet loss, then evaluated (mAP / CMC).

``run_baseline(load_baseline_config("configs/baseline_synth_small.yaml"))`` is what ``make run`` does.
The config is one YAML file mapping onto :class:`BaselineConfig` (sections ``data``, ``model``, ``loss``,
``train`` = :class:`reidlib.engine.config.TrainConfig`, ``eval``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from reidlib.data.dataset import ImageDataset
from reidlib.data.records import ReIDSplits
from reidlib.data.registry import open_dataset
from reidlib.data.samplers import DistributedIdentitySampler
from reidlib.data.transforms import build_test_transform, build_train_transform
from reidlib.engine import distributed
from reidlib.engine.callbacks import PeriodicEvaluation
from reidlib.engine.checkpoint import LATEST, load_checkpoint, model_state_from
from reidlib.engine.config import TrainConfig, load_yaml_config, to_dict
from reidlib.engine.device import check_device_name, resolve_device
from reidlib.engine.extract import evaluate_model
from reidlib.engine.outputs import OutputFolder
from reidlib.engine.seeding import make_generator, seed_everything, worker_init_fn
from reidlib.engine.trainer import Trainer
from reidlib.losses.combine import LossSum
from reidlib.losses.cross_entropy import IdentityLoss
from reidlib.losses.triplet import BatchHardTripletLoss

SYNTHREID = "synthreid"
ARCHS = ("bnneck", "idebn")
EVAL_METRICS = ("euclidean", "cosine")
METRICS_FILE = "metrics.json"
UNTRAINED_FILE = "untrained_metrics.json"
HISTORY_FILE = "history.json"
REQUIRED_SECTIONS = ("data", "model", "train")


@dataclass
class DataConfig:
    """Which images, at what size, in what batches.

    Attributes:
        name: ``"synthreid"`` or a registered dataset (``market1501``, ``dukemtmc``, ``cuhk03``, ``msmt17``).
        preset: SynthReID size (``"tiny"``, ``"small"``, ``"market"``); ignored for real datasets.
        synth_seed: SynthReID's world seed (identities, cameras, pixels).
        synth_overrides: SynthReID only: fields of the preset's ``SynthReIDConfig`` to change, e.g.
            ``{num_train_ids: 120, num_train_images: 1680}`` (``name`` becomes ``<preset>-custom``).
        root: folder of a real dataset.
        loader_kwargs: extra arguments of the dataset loader (e.g. ``{variant: detected}`` for CUHK03).
        height, width: network input size in pixels.
        batch_size: ``P * K`` images per batch.
        num_instances: ``K`` images per identity in a batch (P x K sampling for the triplet loss).
        test_batch_size: batch size of feature extraction.
        workers: DataLoader worker processes (0: load in the main process).
        flip, pad, random_erasing: training augmentation (see ``build_train_transform``).
        cache: SynthReID only: render every image once up front instead of every epoch.
    """

    name: str = SYNTHREID
    preset: str = "small"
    synth_seed: int = 0
    synth_overrides: dict[str, Any] = field(default_factory=dict)
    root: str | None = None
    loader_kwargs: dict[str, Any] = field(default_factory=dict)
    height: int = 256
    width: int = 128
    batch_size: int = 64
    num_instances: int = 4
    test_batch_size: int = 128
    workers: int = 0
    flip: bool = True
    pad: int = 10
    random_erasing: float = 0.0
    cache: bool = True

    def __post_init__(self) -> None:
        from reidlib.data.registry import DATASETS
        from reidlib.data.synthetic import PRESETS

        if self.name.lower() not in DATASETS:
            raise ValueError(f"data.name={self.name!r}; expected one of {sorted(DATASETS)}")
        if self.name == SYNTHREID and self.preset not in PRESETS:
            raise ValueError(f"data.preset={self.preset!r}; expected one of {sorted(PRESETS)}")
        if self.name != SYNTHREID and not self.root:
            raise ValueError(f"data.root is required for dataset {self.name!r} (only synthreid is generated)")
        for name in ("height", "width", "batch_size", "num_instances", "test_batch_size"):
            _at_least(f"data.{name}", getattr(self, name), 1)
        if self.batch_size % self.num_instances:
            raise ValueError(f"data.batch_size={self.batch_size} is not a multiple of data.num_instances="
                             f"{self.num_instances} (a batch holds P identities x K images each)")
        _at_least("data.workers", self.workers, 0)
        _at_least("data.pad", self.pad, 0)
        if not 0.0 <= self.random_erasing <= 1.0:
            raise ValueError(f"data.random_erasing is a probability in [0, 1], got {self.random_erasing}")


@dataclass
class ModelConfig:
    """Network.

    Attributes:
        arch: ``"bnneck"`` (BN after pooling, Luo et al.) or ``"idebn"`` (seed 000's IDE+BN, Eq. 2-3).
        depth: ResNet depth (18, 34, 50, ...).
        last_stride: 1 (PCB-style, larger maps) or 2.
        pretrained: ``false``, ``true`` (torchvision file in torch's hub cache) or a weights path; never
            downloaded.
        allow_random_init: when the pretrained file is missing, warn and train from random weights.
        pool: ``"avg"``, ``"max"`` or ``"gem"`` (BNNeck only).
    """

    arch: str = "bnneck"
    depth: int = 50
    last_stride: int = 1
    pretrained: bool | str = False
    allow_random_init: bool = False
    pool: str = "avg"

    def __post_init__(self) -> None:
        from reidlib.layers.pooling import POOLINGS
        from reidlib.models.backbone import RESNET_DEPTHS

        if self.arch not in ARCHS:
            raise ValueError(f"model.arch={self.arch!r}; expected one of {ARCHS}")
        if self.depth not in RESNET_DEPTHS:
            raise ValueError(f"model.depth={self.depth}; expected one of {sorted(RESNET_DEPTHS)}")
        if self.last_stride not in (1, 2):
            raise ValueError(f"model.last_stride={self.last_stride}; expected 1 or 2")
        if self.pool not in POOLINGS:
            raise ValueError(f"model.pool={self.pool!r}; expected one of {sorted(POOLINGS)}")
        if self.pool != "avg" and self.arch != "bnneck":
            raise ValueError(f"model.pool={self.pool!r} needs arch 'bnneck' (idebn pools by averaging)")
        if isinstance(self.pretrained, str) and not Path(self.pretrained).is_file():
            raise ValueError(f"model.pretrained={self.pretrained!r}: no such weights file")


@dataclass
class LossConfig:
    """``ce_weight * CE_eps(logits) + triplet_weight * batch_hard_triplet(features)``.

    Attributes:
        ce_weight: weight of the identity loss.
        label_smoothing: ``epsilon`` of the label-smoothed cross-entropy (0: plain CE).
        triplet_weight: weight of the batch-hard triplet loss (0: off).
        margin: triplet margin; ``null`` for the soft margin.
        triplet_metric: distance of the triplet loss (``euclidean``, ``sqeuclidean``, ``cosine``).
    """

    ce_weight: float = 1.0
    label_smoothing: float = 0.1
    triplet_weight: float = 1.0
    margin: float | None = 0.3
    triplet_metric: str = "euclidean"

    def __post_init__(self) -> None:
        from reidlib.losses.triplet import TRIPLET_METRICS

        if self.ce_weight < 0 or self.triplet_weight < 0 or self.ce_weight + self.triplet_weight == 0:
            raise ValueError(f"loss weights must be >= 0 and not both 0, got ce_weight={self.ce_weight}, "
                             f"triplet_weight={self.triplet_weight}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"loss.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.margin is not None and not self.margin > 0:
            raise ValueError(f"loss.margin must be > 0 (or null for the soft margin), got {self.margin}")
        if self.triplet_metric not in TRIPLET_METRICS:
            raise ValueError(f"loss.triplet_metric={self.triplet_metric!r}; expected one of "
                             f"{TRIPLET_METRICS}")


@dataclass
class EvalConfig:
    """Evaluation after training.

    Attributes:
        flip: average each embedding with its mirror image's.
        metric: ``euclidean`` or ``cosine`` (on L2-normalised features both rank alike).
        rerank: k-reciprocal re-ranking.
        ap_mode: ``full`` (standard), ``trapezoid`` or ``truncated50``.
        every: also evaluate every this many epochs during training (0: only at the end).
        untrained: also evaluate the model before training, as a reference point.
        max_memory: bound on what the ranking holds beyond the features (``"6GB"``, ``"512MiB"`` or
            bytes; ``None``: query chunks of about 1 GB): MSMT17's 11,659 x 82,161 fits in a few GB, with
            re-ranking too (:func:`reidlib.evaluation.evaluate_features`).
    """

    flip: bool = False
    metric: str = "euclidean"
    rerank: bool = False
    ap_mode: str = "full"
    every: int = 0
    untrained: bool = True
    max_memory: str | None = None

    def __post_init__(self) -> None:
        from reidlib.evaluation.rank import AP_MODES

        if self.metric not in EVAL_METRICS:
            raise ValueError(f"eval.metric={self.metric!r}; expected one of {EVAL_METRICS}")
        if self.ap_mode not in AP_MODES:
            raise ValueError(f"eval.ap_mode={self.ap_mode!r}; expected one of {AP_MODES}")
        _at_least("eval.every", self.every, 0)
        if self.max_memory is not None:
            from reidlib.evaluation.memory import parse_memory

            parse_memory(self.max_memory, "eval.max_memory")


@dataclass
class BaselineConfig:
    """A whole baseline experiment (one YAML file).

    Attributes:
        name: run name (printed and stored in ``metrics.json``).
        out_dir: where checkpoints, ``history.json`` and ``metrics.json`` go.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
    """

    name: str = "baseline"
    out_dir: str = "runs/baseline"
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("name must not be empty")
        if not self.out_dir.strip():
            raise ValueError("out_dir must not be empty")
        check_device_name(self.device, "device")


def load_baseline_config(path: str | os.PathLike[str], notice: Callable[[str], Any] | None = print
                         ) -> BaselineConfig:
    """Read a baseline YAML config; every value is checked here, before any work.

    The ``data``, ``model`` and ``train`` sections must be present (an empty file or a config without
    its ``model`` would otherwise train a default ResNet-50 without a word); ``notice`` is told which
    other sections take their defaults.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: the message names the file and the bad field (unknown, missing, wrong type or out
            of range).
    """
    return load_yaml_config(BaselineConfig, path, required=REQUIRED_SECTIONS, notice=notice)


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


# ---------------------------------------------------------------------------------------------- data
@dataclass
class BaselineData:
    """Splits and loaders of one experiment."""

    splits: ReIDSplits
    train_loader: DataLoader
    query_loader: DataLoader
    gallery_loader: DataLoader


def synth_config(cfg: DataConfig):
    """The ``SynthReIDConfig`` of ``cfg.preset`` with ``cfg.synth_overrides`` applied.

    Raises:
        ValueError: unknown preset or override field (the message lists the known ones).
    """
    import dataclasses

    from reidlib.data.synthetic import PRESETS

    if cfg.preset not in PRESETS:
        raise ValueError(f"data.preset={cfg.preset!r}; expected one of {sorted(PRESETS)}")
    base = PRESETS[cfg.preset]
    if not cfg.synth_overrides:
        return base
    known = {f.name for f in dataclasses.fields(base)} - {"name"}
    unknown = sorted(set(cfg.synth_overrides) - known)
    if unknown:
        raise ValueError(f"data.synth_overrides has unknown field(s) {unknown}; known: {sorted(known)}")
    return dataclasses.replace(base, name=f"{cfg.preset}-custom", **cfg.synth_overrides)


def load_splits(cfg: DataConfig, progress: bool = True, precache: bool | None = None
                ) -> tuple[ReIDSplits, Callable]:
    """The dataset's splits and its ``image_source`` (:func:`reidlib.data.registry.open_dataset`).

    ``precache`` (default ``cfg.cache``): render every SynthReID image into memory up front; without it
    an image is rendered when it is read (what an evaluation, which reads each test image once, wants).
    """
    precache = cfg.cache if precache is None else precache
    if cfg.name == SYNTHREID and precache and progress:
        print(f"rendering SynthReID {cfg.preset} at {cfg.height}x{cfg.width} ...", flush=True)
    splits, source, _ = open_dataset(cfg.name, cfg.root, preset=synth_config(cfg), seed=cfg.synth_seed,
                                     height=cfg.height, width=cfg.width, precache=precache,
                                     progress=progress and sys.stderr.isatty(), **cfg.loader_kwargs)
    return splits, source


def _loader_options(cfg: DataConfig) -> dict[str, Any]:
    return {"num_workers": cfg.workers, "worker_init_fn": worker_init_fn if cfg.workers else None,
            "pin_memory": torch.cuda.is_available()}


def eval_loaders(cfg: DataConfig, splits: ReIDSplits, source: Callable) -> tuple[DataLoader, DataLoader]:
    """Query and gallery loaders in record order through the test transform."""
    test_tf = build_test_transform(cfg.height, cfg.width)

    def loader(records: list) -> DataLoader:
        return DataLoader(ImageDataset(records, test_tf, source), batch_size=cfg.test_batch_size,
                          shuffle=False, **_loader_options(cfg))

    return loader(splits.query), loader(splits.gallery)


def build_data(cfg: DataConfig, seed: int, progress: bool = True) -> BaselineData:
    """Datasets and loaders: P x K sampled training batches (drop-last), ordered query/gallery loaders.

    ``seed`` seeds the identity sampler and the loader's generator, so the data order follows the
    training seed and is restored on resume. In a process group (``torchrun``) each rank loads its
    identities of every global batch of ``cfg.batch_size`` (:class:`DistributedIdentitySampler`).
    """
    splits, source = load_splits(cfg, progress=progress)
    train_tf = build_train_transform(cfg.height, cfg.width, flip=cfg.flip, pad=cfg.pad,
                                     random_erasing=cfg.random_erasing)
    sampler = DistributedIdentitySampler(splits.train, cfg.batch_size, cfg.num_instances, seed=seed,
                                         rank=distributed.rank(), world_size=distributed.world_size())
    train_loader = DataLoader(ImageDataset(splits.train, train_tf, source),
                              batch_size=sampler.local_batch_size,
                              sampler=sampler, drop_last=True, generator=make_generator(seed),
                              **_loader_options(cfg))
    return BaselineData(splits, train_loader, *eval_loaders(cfg, splits, source))


# ---------------------------------------------------------------------------------------------- model
def build_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """IDE+BN or BNNeck over a ResNet, as ``cfg`` says."""
    from reidlib.models.baseline import IDEBN, BNNeck

    common = {"depth": cfg.depth, "last_stride": cfg.last_stride, "pretrained": cfg.pretrained,
              "allow_random_init": cfg.allow_random_init}
    if cfg.arch == "bnneck":
        return BNNeck(num_classes, pool=cfg.pool, **common)
    return IDEBN(num_classes, **common)


def baseline_loss(cfg: LossConfig) -> LossSum:
    """``ce_weight * IdentityLoss(label_smoothing) + triplet_weight * BatchHardTripletLoss(margin,
    triplet_metric)`` (on ``features[0]``), as :class:`LossConfig` says; weight-0 terms are skipped.

    Logs ``ce``, ``acc`` (training accuracy of the first branch), ``triplet`` and ``active_fraction``;
    the Trainer logs the total as ``loss`` itself.
    """
    return LossSum([(cfg.ce_weight, IdentityLoss(cfg.label_smoothing)),
                    (cfg.triplet_weight, BatchHardTripletLoss(cfg.margin, cfg.triplet_metric))],
                   log_total=False)


def num_classes_in(state: Mapping[str, Tensor]) -> int:
    """Number of identities of the classifier stored in a model state dict (``classifiers.0.weight``).

    Raises:
        ValueError: the state dict has no such weight.
    """
    for key, value in state.items():
        if key.endswith("classifiers.0.weight"):
            return int(value.shape[0])
    raise ValueError("the checkpoint's model has no 'classifiers.0.weight' to read the number of "
                     "classes from")


# ---------------------------------------------------------------------------------------------- run
def _print_result(title: str, result: Any) -> None:
    cmc = result.cmc
    print(f"{title}: mAP {100 * result.mAP:.1f}%  CMC rank-1 {100 * result.rank1:.1f}%  "
          f"rank-5 {100 * result.rank5:.1f}%  rank-10 {100 * result.rank10:.1f}%  "
          f"rank-20 {100 * result.rank20:.1f}%  ({result.num_valid} queries, {len(cmc)} ranks)", flush=True)


def run_outputs(cfg: BaselineConfig) -> list[str]:
    """The file names :func:`run_baseline` writes into its folder (``epoch_XXX.pt`` as configured)."""
    names = [LATEST, HISTORY_FILE, METRICS_FILE, UNTRAINED_FILE]
    every = cfg.train.checkpoint_every
    if every:
        names += [f"epoch_{e:03d}.pt" for e in range(every, cfg.train.epochs + 1, every)]
    return names


def _input_folders(cfg: DataConfig) -> list[str]:
    return [cfg.root] if cfg.root and cfg.name != SYNTHREID else []


def untrained_identity(cfg: BaselineConfig, splits: ReIDSplits) -> dict[str, Any]:
    """What the untrained model's metrics depend on: data, model, seed (the initial weights), the
    evaluation options and the splits' :meth:`~reidlib.data.records.ReIDSplits.fingerprint`."""
    data = {k: v for k, v in to_dict(cfg.data).items() if k != "workers"}
    ev = cfg.eval
    return {"data": data, "model": to_dict(cfg.model), "seed": cfg.train.seed,
            "eval": {"flip": ev.flip, "metric": ev.metric, "rerank": ev.rerank, "ap_mode": ev.ap_mode},
            "splits": splits.fingerprint(("query", "gallery"))}


def _stored_untrained(path: Path, identity: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The metrics stored in ``path`` when they were computed for ``identity``; else ``None`` and why."""
    if not path.is_file():
        return None, ""
    try:
        stored = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, f"{path} is not valid JSON"
    if not isinstance(stored, dict) or "identity" not in stored or "metrics" not in stored:
        return None, f"{path} does not say what it was computed for"
    if stored["identity"] != identity:
        old = stored["identity"] if isinstance(stored["identity"], dict) else {}
        changed = sorted(k for k in identity if old.get(k) != identity[k])
        return None, f"{path} was computed for other {', '.join(changed) or 'settings'}"
    return stored["metrics"], ""


def run_baseline(cfg: BaselineConfig, out_dir: str | os.PathLike[str] | None = None, resume: bool = True,
                 device: str | None = None, progress: bool = True,
                 inputs: tuple[str | os.PathLike[str], ...] = ()) -> dict[str, Any]:
    """Train and evaluate the baseline; write ``metrics.json`` (and checkpoints/history) to ``out_dir``.

    Before any work the device is checked and the run folder is claimed
    (:class:`~reidlib.engine.outputs.OutputFolder`): a file there that this command would replace must
    have been written by an earlier ``train`` into the same folder. The untrained model's metrics
    (``untrained_metrics.json``) are reused only when they were computed for the same data, model,
    seed and evaluation options (:func:`untrained_identity`); otherwise they are recomputed, with a
    notice.

    Args:
        cfg: the experiment.
        out_dir: overrides ``cfg.out_dir``.
        resume: continue from ``out_dir/latest.pt`` when it exists.
        device: overrides ``cfg.device``.
        progress: print data-preparation progress and results.
        inputs: files the caller read (the config file): the run refuses to write over any of them.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the ranks train data-parallel (:mod:`reidlib.engine.distributed`;
    ``cfg.data.batch_size`` is the global batch) and rank 0 alone claims the folder, evaluates and writes.

    Returns:
        the content of ``metrics.json``: a dict with keys ``name``, ``dataset``, ``metrics``
        (``RankResult.as_dict()``), ``untrained`` (the same for the untrained model, or ``None``),
        ``history``, ``config`` and ``wall_time_s`` (on ranks other than 0: ``name``, ``history`` and
        ``wall_time_s`` only).

    Raises:
        ValueError: a bad device, or an output folder that would lose data
            (:class:`~reidlib.engine.outputs.OutputPathError`).
    """
    t0 = time.perf_counter()
    out = Path(out_dir if out_dir is not None else cfg.out_dir)
    dev = resolve_device(device or cfg.device)
    dev = distributed.init_from_env(dev) or dev
    main = distributed.is_main_process()
    progress = progress and main
    folder = OutputFolder(out, "train", option="--out" if out_dir is not None else "out_dir")
    names = run_outputs(cfg)
    if main:
        folder.check(names, inputs=inputs, input_folders=_input_folders(cfg.data))
        folder.claim(names, quiet=not progress)
    distributed.barrier()
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    data = build_data(cfg.data, seed=cfg.train.seed, progress=progress)
    if progress:
        print(data.splits.summary(), flush=True)
    model = build_model(cfg.model, data.splits.num_train_pids)
    ev = cfg.eval

    def evaluate(m: nn.Module):
        return evaluate_model(m, data.query_loader, data.gallery_loader, dev, flip=ev.flip, metric=ev.metric,
                              rerank=ev.rerank, ap_mode=ev.ap_mode, max_memory=ev.max_memory)

    untrained = None
    if ev.untrained and main:
        untrained_file = out / UNTRAINED_FILE
        identity = untrained_identity(cfg, data.splits)
        untrained, why = _stored_untrained(untrained_file, identity)
        if untrained is None:
            if why:
                print(f"notice: {why}; evaluating the untrained model again", flush=True)
            model.to(dev)
            result = evaluate(model)
            untrained = result.as_dict()
            folder.write_json(UNTRAINED_FILE, {"identity": identity, "metrics": untrained})
            if progress:
                _print_result("untrained model", result)

    callbacks = []
    if ev.every and main:
        callbacks.append(PeriodicEvaluation(lambda tr: _short(evaluate(tr.model)), every=ev.every))
    trainer = Trainer(model, baseline_loss(cfg.loss), data.train_loader, cfg.train, out, device=dev,
                      callbacks=callbacks, record=_resume_record(cfg))
    history = trainer.fit(resume=resume)
    if not main:
        return {"name": cfg.name, "history": history.to_list(), "wall_time_s": time.perf_counter() - t0}
    result = evaluate(trainer.model)
    if progress:
        _print_result(f"{cfg.name} after {trainer.epoch} epochs", result)
    summary = {
        "name": cfg.name,
        "dataset": data.splits.name,
        "metrics": result.as_dict(),
        "untrained": untrained,
        "history": history.to_list(),
        "config": to_dict(cfg),
        "wall_time_s": time.perf_counter() - t0,
    }
    folder.write_json(METRICS_FILE, summary)
    return summary


def _resume_record(cfg: BaselineConfig) -> dict[str, Any]:
    """The config sections a resumed run must share with the checkpoint (eval, paths, device may change)."""
    return {"data": to_dict(cfg.data), "model": to_dict(cfg.model), "loss": to_dict(cfg.loss)}


def _short(result: Any) -> dict[str, float]:
    return {"mAP": result.mAP, "rank1": result.rank1}


def evaluation_file_name(checkpoint: str | os.PathLike[str], cfg: DataConfig) -> str:
    """``evaluation_<checkpoint stem>_<dataset>.json``: the file ``evaluate`` writes into ``--out``."""
    dataset = f"{cfg.name}-{cfg.preset}" if cfg.name == SYNTHREID else cfg.name
    return f"evaluation_{Path(checkpoint).stem}_{dataset}.json"


def build_eval_data(cfg: DataConfig, progress: bool = True) -> tuple[ReIDSplits, DataLoader, DataLoader]:
    """Query and gallery loaders only: SynthReID renders its test images as they are read, and no
    training image is prepared."""
    splits, source = load_splits(cfg, progress=progress, precache=False)
    return (splits, *eval_loaders(cfg, splits, source))


def evaluate_checkpoint(
    cfg: BaselineConfig, checkpoint: str | os.PathLike[str], device: str | None = None,
    flip: bool | None = None, rerank: bool | None = None, metric: str | None = None, progress: bool = True,
    out_dir: str | os.PathLike[str] | None = None, inputs: tuple[str | os.PathLike[str], ...] = (),
    max_memory: str | None = None,
) -> dict[str, Any]:
    """Evaluate saved weights on ``cfg.data``'s query/gallery (the classifier size is read from the file,
    so a model trained on another dataset can be evaluated cross-domain). Options left ``None`` take the
    config's ``eval`` values.

    With ``out_dir``, the metrics also go to ``out_dir/``:func:`evaluation_file_name` (the folder is
    checked before any work, as in :func:`run_baseline`; ``inputs`` are the files the caller read).

    Returns:
        ``RankResult.as_dict()`` plus ``checkpoint``, ``dataset`` and ``options`` (flip, rerank, metric).

    Raises:
        FileNotFoundError / ValueError: a missing or unreadable checkpoint, weights that do not fit the
            config's model, a bad device or metric, an output folder that would lose data.
    """
    ev = cfg.eval
    flip = ev.flip if flip is None else flip
    rerank = ev.rerank if rerank is None else rerank
    metric = metric or ev.metric
    if metric not in EVAL_METRICS:
        raise ValueError(f"metric={metric!r}; expected one of {EVAL_METRICS}")
    dev = resolve_device(device or cfg.device)
    folder = name = None
    if out_dir is not None:
        folder, name = OutputFolder(out_dir, "evaluate"), evaluation_file_name(checkpoint, cfg.data)
        folder.check([name], inputs=(checkpoint, *inputs), input_folders=_input_folders(cfg.data))
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    state = load_checkpoint(checkpoint)
    weights = model_state_from(state, checkpoint)
    model = build_model(cfg.model, num_classes_in(weights))
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        first = (str(err).strip().splitlines()[1:2] or [str(err)])[0].strip()  # torch lists every key
        first = first if len(first) <= 200 else first[:200] + " ..."
        raise ValueError(f"weights in {checkpoint} do not fit the config's model "
                         f"({cfg.model.arch}, ResNet-{cfg.model.depth}): {first}") from err
    splits, query_loader, gallery_loader = build_eval_data(cfg.data, progress=progress)
    max_memory = ev.max_memory if max_memory is None else max_memory
    result = evaluate_model(model.to(dev), query_loader, gallery_loader, dev, flip=flip, metric=metric,
                            rerank=rerank, ap_mode=ev.ap_mode, max_memory=max_memory)
    if progress:
        _print_result(f"{Path(checkpoint).name} on {splits.name}", result)
    metrics = {**result.as_dict(), "checkpoint": str(checkpoint), "dataset": splits.name,
               "options": {"flip": flip, "rerank": rerank, "metric": metric}}
    if folder is not None and name is not None:
        folder.claim([name], quiet=not progress)
        path = folder.write_json(name, metrics)
        if progress:
            print(f"metrics written to {path}")
    return metrics
