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
from reidlib.data.samplers import RandomIdentitySampler
from reidlib.data.transforms import build_test_transform, build_train_transform
from reidlib.engine.callbacks import PeriodicEvaluation
from reidlib.engine.checkpoint import load_checkpoint, model_state_from
from reidlib.engine.config import TrainConfig, load_yaml_config, to_dict
from reidlib.engine.device import resolve_device
from reidlib.engine.extract import evaluate_model
from reidlib.engine.seeding import make_generator, seed_everything, worker_init_fn
from reidlib.engine.trainer import Trainer
from reidlib.losses.combine import LossSum
from reidlib.losses.cross_entropy import IdentityLoss
from reidlib.losses.triplet import BatchHardTripletLoss

SYNTHREID = "synthreid"
ARCHS = ("bnneck", "idebn")
METRICS_FILE = "metrics.json"


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
        if self.name != SYNTHREID and not self.root:
            raise ValueError(f"data.root is required for dataset {self.name!r} (only synthreid is generated)")
        if self.workers < 0:
            raise ValueError(f"data.workers must be >= 0, got {self.workers}")


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
        if self.arch not in ARCHS:
            raise ValueError(f"model.arch={self.arch!r}; expected one of {ARCHS}")


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
        if self.ce_weight < 0 or self.triplet_weight < 0 or self.ce_weight + self.triplet_weight == 0:
            raise ValueError(f"loss weights must be >= 0 and not both 0, got ce_weight={self.ce_weight}, "
                             f"triplet_weight={self.triplet_weight}")


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
    """

    flip: bool = False
    metric: str = "euclidean"
    rerank: bool = False
    ap_mode: str = "full"
    every: int = 0
    untrained: bool = True


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


def load_baseline_config(path: str | os.PathLike[str]) -> BaselineConfig:
    """Read a baseline YAML config (errors name the file and the bad field)."""
    return load_yaml_config(BaselineConfig, path)


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


def load_splits(cfg: DataConfig, progress: bool = True) -> tuple[ReIDSplits, Callable]:
    """The dataset's splits and its ``image_source`` (:func:`reidlib.data.registry.open_dataset`)."""
    if cfg.name == SYNTHREID and cfg.cache and progress:
        print(f"rendering SynthReID {cfg.preset} at {cfg.height}x{cfg.width} ...", flush=True)
    splits, source, _ = open_dataset(cfg.name, cfg.root, preset=synth_config(cfg), seed=cfg.synth_seed,
                                     height=cfg.height, width=cfg.width, precache=cfg.cache,
                                     progress=progress and sys.stderr.isatty(), **cfg.loader_kwargs)
    return splits, source


def build_data(cfg: DataConfig, seed: int, progress: bool = True) -> BaselineData:
    """Datasets and loaders: P x K sampled training batches (drop-last), ordered query/gallery loaders.

    ``seed`` seeds the identity sampler and the loader's generator, so the data order follows the
    training seed and is restored on resume.
    """
    splits, source = load_splits(cfg, progress=progress)
    train_tf = build_train_transform(cfg.height, cfg.width, flip=cfg.flip, pad=cfg.pad,
                                     random_erasing=cfg.random_erasing)
    test_tf = build_test_transform(cfg.height, cfg.width)
    sampler = RandomIdentitySampler(splits.train, cfg.batch_size, cfg.num_instances, seed=seed)
    common = {"num_workers": cfg.workers, "worker_init_fn": worker_init_fn if cfg.workers else None,
              "pin_memory": torch.cuda.is_available()}
    train_loader = DataLoader(ImageDataset(splits.train, train_tf, source), batch_size=cfg.batch_size,
                              sampler=sampler, drop_last=True, generator=make_generator(seed), **common)
    query_loader = DataLoader(ImageDataset(splits.query, test_tf, source), batch_size=cfg.test_batch_size,
                              shuffle=False, **common)
    gallery_loader = DataLoader(ImageDataset(splits.gallery, test_tf, source), batch_size=cfg.test_batch_size,
                                shuffle=False, **common)
    return BaselineData(splits, train_loader, query_loader, gallery_loader)


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


def run_baseline(cfg: BaselineConfig, out_dir: str | os.PathLike[str] | None = None, resume: bool = True,
                 device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train and evaluate the baseline; write ``metrics.json`` (and checkpoints/history) to ``out_dir``.

    Args:
        cfg: the experiment.
        out_dir: overrides ``cfg.out_dir``.
        resume: continue from ``out_dir/latest.pt`` when it exists.
        device: overrides ``cfg.device``.
        progress: print data-preparation progress and results.

    Returns:
        the content of ``metrics.json``: a dict with keys ``name``, ``dataset``, ``metrics``
        (``RankResult.as_dict()``), ``untrained`` (the same for the untrained model, or ``None``),
        ``history``, ``config`` and ``wall_time_s``.
    """
    t0 = time.perf_counter()
    out = Path(out_dir if out_dir is not None else cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device or cfg.device)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    data = build_data(cfg.data, seed=cfg.train.seed, progress=progress)
    if progress:
        print(data.splits.summary(), flush=True)
    model = build_model(cfg.model, data.splits.num_train_pids)
    ev = cfg.eval

    def evaluate(m: nn.Module):
        return evaluate_model(m, data.query_loader, data.gallery_loader, dev, flip=ev.flip, metric=ev.metric,
                              rerank=ev.rerank, ap_mode=ev.ap_mode)

    untrained = None
    if ev.untrained:
        untrained_file = out / "untrained_metrics.json"
        if untrained_file.is_file():
            untrained = json.loads(untrained_file.read_text())
        else:
            model.to(dev)
            result = evaluate(model)
            untrained = result.as_dict()
            untrained_file.write_text(json.dumps(untrained, indent=1))
            if progress:
                _print_result("untrained model", result)

    callbacks = []
    if ev.every:
        callbacks.append(PeriodicEvaluation(lambda tr: _short(evaluate(tr.model)), every=ev.every))
    trainer = Trainer(model, baseline_loss(cfg.loss), data.train_loader, cfg.train, out, device=dev,
                      callbacks=callbacks, record=_resume_record(cfg))
    history = trainer.fit(resume=resume)
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
    (out / METRICS_FILE).write_text(json.dumps(summary, indent=1))
    return summary


def _resume_record(cfg: BaselineConfig) -> dict[str, Any]:
    """The config sections a resumed run must share with the checkpoint (eval, paths, device may change)."""
    return {"data": to_dict(cfg.data), "model": to_dict(cfg.model), "loss": to_dict(cfg.loss)}


def _short(result: Any) -> dict[str, float]:
    return {"mAP": result.mAP, "rank1": result.rank1}


def evaluate_checkpoint(
    cfg: BaselineConfig, checkpoint: str | os.PathLike[str], device: str | None = None,
    flip: bool | None = None, rerank: bool | None = None, metric: str | None = None, progress: bool = True,
) -> dict[str, Any]:
    """Evaluate saved weights on ``cfg.data``'s query/gallery (the classifier size is read from the file,
    so a model trained on another dataset can be evaluated cross-domain). Options left ``None`` take the
    config's ``eval`` values. Returns ``RankResult.as_dict()``."""
    dev = resolve_device(device or cfg.device)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    state = load_checkpoint(checkpoint)
    weights = model_state_from(state, checkpoint)
    model = build_model(cfg.model, num_classes_in(weights))
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"weights in {checkpoint} do not fit the config's model "
                         f"({cfg.model.arch}, ResNet-{cfg.model.depth}): {err}") from err
    data = build_data(cfg.data, seed=cfg.train.seed, progress=progress)
    ev = cfg.eval
    result = evaluate_model(model.to(dev), data.query_loader, data.gallery_loader, dev,
                            flip=ev.flip if flip is None else flip, metric=metric or ev.metric,
                            rerank=ev.rerank if rerank is None else rerank, ap_mode=ev.ap_mode)
    if progress:
        _print_result(f"{Path(checkpoint).name} on {data.splits.name}", result)
    return result.as_dict()
