"""The chapter contract: what every paper's recipe shares, so a recipe holds only what its paper defines.

A chapter of the book trains a set of runs of one paper's method on one dataset and stores each run's
results file (``results/<chapter>/<scale>/<run>.json``, :mod:`reidlib.results.store`). This module owns
everything around that which does not depend on the paper:

* :class:`ChapterConfig`: the fields every run config has (scale, dataset, SynthReID preset, seed), checked
  against :data:`reidlib.scale.SCALES` and the dataset registry. A paper's config is a dataclass that
  inherits from it and adds the paper's own fields.
* :func:`config_for` / :func:`run_config`: a scale's config with overrides, and a run's config from a run
  table (``{run name: overrides}``), with errors that name the unknown field or run.
* :class:`ChapterData` / :func:`load_data`: SynthReID rendered once into memory, or a real dataset of
  :mod:`reidlib.data.registry`; its loaders (:func:`train_loader`, :func:`test_loader`) and ranking within
  SynthReID's look-alike families (:func:`within_family`).
* :class:`RunContext`, :func:`train_run`, :func:`evaluation_run`, :func:`run_all`: the run wrapper. It
  owns the run folder (``runs/<chapter>/<scale>/<run>/``), seeding, the weights file, reuse of a finished
  run with the same config (reloading its weights), resuming an interrupted training, and the one log
  line per run.

A recipe supplies three functions per kind of run: ``build(cfg)`` (the untrained model), ``train(model,
cfg, folder)`` (through :class:`reidlib.engine.trainer.Trainer`) and ``evaluate(model, cfg)`` (metrics and
extras). The book page *Writing a chapter* shows the smallest complete example.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from reidlib.atomic import atomic_write, atomic_write_json
from reidlib.data.dataset import ImageDataset
from reidlib.data.device_augment import DeviceAugment, DeviceImageBank, DeviceLoader
from reidlib.data.records import Record, ReIDSplits
from reidlib.data.registry import DATASETS as REGISTERED_DATASETS
from reidlib.data.registry import open_dataset
from reidlib.data.samplers import DistributedIdentitySampler
from reidlib.data.transforms import build_train_transform
from reidlib.engine import distributed
from reidlib.engine.extract import Features
from reidlib.engine.seeding import make_generator, seed_everything
from reidlib.evaluation.rank import RankResult, evaluate
from reidlib.recipes import pretrain
from reidlib.results.paths import runs_root
from reidlib.results.store import (
    RunOutcome,
    RunRecord,
    config_defaults,
    config_differences,
    reusable_run,
    run_or_reuse,
    to_jsonable,
)
from reidlib.scale import SCALES, resolve_scale

__all__ = [
    "WEIGHTS_FILE", "ChapterConfig", "ChapterData", "ChapterRun", "InputSizes", "RunContext", "arm_of",
    "backbone_weights",
    "cached_test_batches", "config_for", "data_name", "evaluation_run", "explanation_batch",
    "identity_loader", "load_data", "log_line", "run_all", "run_config", "seed_replicas", "test_loader",
    "train_loader", "train_run", "within_family",
]

C = TypeVar("C", bound="ChapterConfig")
M = TypeVar("M", bound=nn.Module)

#: Weights of a finished run, in its run folder (the trainer's resumable ``latest.pt`` is removed once the
#: results file is written).
WEIGHTS_FILE = "model.pt"
#: Beside the trainer's ``latest.pt``: what the interrupted training was (config with the trunk's key, data).
IDENTITY_FILE = "run_identity.json"
SYNTHREID = "synthreid"


@dataclass
class ChapterConfig:
    """Fields every chapter's run config has; a paper's config inherits them.

    Attributes:
        scale: ``smoke``, ``cpu`` or ``full`` (:data:`reidlib.scale.SCALES`).
        dataset: ``"synthreid"`` (rendered in memory) or a real dataset of :mod:`reidlib.data.registry`.
        synth_preset: SynthReID preset (``tiny``, ``small``, ``market``); ignored for real datasets.
        seed: training seed (initialisation, sampling, augmentation). Runs of one seed are *paired*:
            whatever their settings, seed ``s`` gives them the same data order and augmentation stream
            and the same initialisation of the parts they share.
        data_seed: seed SynthReID is drawn with: one world for every training seed of the chapter.
        device_augment: augment the training images batch-wise, as uint8 tensors held on the run's
            device (:func:`augmented_loader`: the PIL pipeline's operations, tested against it, with
            another random stream), instead of with PIL one image at a time on the CPU: the GPU fast
            path, and a fifth of a ``cpu`` run saved.
        cpu_bf16: train under bfloat16 autocast on the CPU (``cpu_bf16`` of
            :class:`reidlib.engine.config.TrainConfig`; evaluation stays in float32). The ``cpu`` configs
            set it.
    """

    scale: str = "cpu"
    dataset: str = SYNTHREID
    synth_preset: str = "small"
    seed: int = 0
    data_seed: int = 0
    device_augment: bool = False
    cpu_bf16: bool = False

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"{type(self).__name__}.scale {self.scale!r} unknown; expected one of {SCALES}")
        if self.dataset not in REGISTERED_DATASETS:
            raise ValueError(f"{type(self).__name__}.dataset {self.dataset!r} unknown; expected one of "
                             f"{sorted(REGISTERED_DATASETS)}")
        for name in ("seed", "data_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{type(self).__name__}.{name} must be a non-negative int, got {value!r}")

    @property
    def synth_seed(self) -> int:
        """Seed SynthReID is drawn with: ``data_seed``, the same world for every training seed."""
        return self.data_seed

    @property
    def render_size(self) -> tuple[int, int]:
        """``(height, width)`` SynthReID renders its images at."""
        raise NotImplementedError(f"{type(self).__name__} must define render_size")


class InputSizes:
    """``render_size`` and ``map_size`` of a chapter config with ``height``, ``width`` and ``last_stride``
    fields (put it before :class:`ChapterConfig` among the bases)."""

    height: int
    width: int
    last_stride: int

    @property
    def render_size(self) -> tuple[int, int]:
        """SynthReID is rendered at the input size."""
        return self.height, self.width

    @property
    def map_size(self) -> tuple[int, int]:
        """``(h, w)`` of the stage-4 maps: stride 16 with ``last_stride=1``, 32 otherwise."""
        stride = 16 if self.last_stride == 1 else 32
        return self.height // stride, self.width // stride


def config_for(configs: Mapping[str, C], scale: str | None = None, **overrides: Any) -> C:
    """The config of ``scale`` from ``configs`` (one per scale; ``$REIDLIB_SCALE`` wins, see
    :func:`reidlib.scale.resolve_scale`) with ``overrides`` applied.

    Raises:
        ValueError: unknown scale, a scale without a config, or an unknown field (the message lists the
            fields).
    """
    scale = resolve_scale(scale)
    if scale not in configs:
        raise ValueError(f"no config for scale {scale!r}; configs exist for {sorted(configs)}")
    base = configs[scale]
    names = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown {type(base).__name__} field(s) {unknown}; fields: {sorted(names)}")
    return dataclasses.replace(base, **overrides)


def run_config(runs: Mapping[str, Mapping[str, Any]], name: str, base: C) -> C:
    """The config of run ``name`` of the run table ``runs`` (``{run: overrides}``) on top of ``base``.

    Raises:
        ValueError: ``name`` is not in the table (the message lists the runs).
    """
    if name not in runs:
        raise ValueError(f"unknown run {name!r}; runs: {sorted(runs)}")
    return dataclasses.replace(base, **runs[name])


def seed_replicas(runs: Mapping[str, Mapping[str, Any]], arms: Iterable[str], seeds: Iterable[int]
                  ) -> dict[str, dict[str, Any]]:
    """Run-table entries ``<arm>_seed<s>``: each arm of ``arms`` again with training seed ``s``.

    A claim's verdict compares two arms seed by seed (:func:`reidlib.results.claims.judge` pairs an arm's
    runs by their recorded seed), so both arms of a claim get the same ``seeds``.

    Raises:
        KeyError: an arm that is not in ``runs``.
    """
    missing = [a for a in arms if a not in runs]
    if missing:
        raise KeyError(f"seed_replicas: arms {missing} are not runs of the table ({sorted(runs)})")
    return {f"{arm}_seed{s}": {**runs[arm], "seed": int(s)} for arm in arms for s in seeds}


def backbone_weights(cfg: Any, device: str = "cpu") -> bool | Path:
    """``pretrained`` for :func:`reidlib.models.backbone.build_backbone` from a config with ``scale``,
    ``depth``, ``base_width`` and ``pretrained``: ImageNet at width 64, the SynthReID trunk of the scale for
    a narrow ResNet (trained now when not cached, :func:`reidlib.recipes.pretrain.trunk_file`)."""
    return pretrain.backbone_weights(cfg.scale, cfg.depth, cfg.base_width, bool(cfg.pretrained), device)


def _trunk_fields(cfg: Any) -> tuple[str, int, int, bool] | None:
    fields = [_field(cfg, n) for n in ("scale", "depth", "base_width", "pretrained")]
    if any(f is None for f in fields):
        return None
    return str(fields[0]), int(fields[1]), int(fields[2]), bool(fields[3])


def _ensure_trunk(cfg: Any, device: str) -> None:
    """Train the pre-trained trunk ``cfg`` loads now if it is not cached (a no-op otherwise)."""
    fields = _trunk_fields(cfg)
    if fields is not None:
        pretrain.backbone_weights(*fields, device=device)


def _with_trunk(cfg: Any, config: Any) -> Any:
    """The stored config, with the key of the pre-trained trunk the run starts from (if any): a run is
    reused only with the same trunk."""
    fields = _trunk_fields(cfg)
    key = pretrain.trunk_key(*fields) if fields is not None else None
    if key is None:
        return config
    return {**to_jsonable(config, "config"), "pretrained_trunk": key}


# --------------------------------------------------------------------------------------------- data


@dataclass
class ChapterData:
    """A chapter's dataset: splits, the image source and, for SynthReID, the generator behind it.

    Attributes:
        splits: train (relabelled pids ``0..C-1``), query and gallery records.
        image_source: ``path -> PIL.Image`` (SynthReID renders from memory; real data reads the file).
        synth: the :class:`reidlib.data.synthetic.SynthReID` behind the data, ``None`` for real data (it
            gives rendered cue masks and look-alike families).
        name: dataset name stored in the results files (``synthreid_<preset>`` or the registry name).
        cache: anything a recipe renders once per session and reuses across runs (e.g. distractors).
    """

    splits: ReIDSplits
    image_source: Callable[[str], Any]
    synth: Any
    name: str
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        """Training identities."""
        return self.splits.num_train_pids

    @property
    def identity(self) -> str:
        """:meth:`~reidlib.data.records.ReIDSplits.fingerprint` of the splits, computed once: stored with
        every run, so a run is reused only on the same data."""
        if "identity" not in self.cache:
            self.cache["identity"] = self.splits.fingerprint()
        return self.cache["identity"]

    def family_of(self, pid: int) -> int | None:
        """Look-alike family of a SynthReID test identity; -1 for distractors (pid <= 0), ``None`` for
        real data."""
        if self.synth is None:
            return None
        return -1 if pid <= 0 else int(self.synth.family_of(pid))

    def distractors(self, count: int, chunk: int = 1024, seed: int = 0
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``count`` extra SynthReID distractors (identities outside every split) as chunks of
        ``(images (n, H, W, 3) uint8, camids (n,))``, rendered once and kept in :attr:`cache` for the next
        model (``count x H x W x 3`` bytes: 74 MB for 12,000 images at 64x32).

        Raises:
            NotImplementedError: real data (an extra gallery such as Market+500K is not wired in).
        """
        if self.synth is None:
            raise NotImplementedError("extra distractors are rendered for SynthReID only "
                                      "(Market+500K is not wired in)")
        from reidlib.data.synthetic_distractors import iter_distractor_chunks

        key = ("distractors", count, chunk, seed)
        if key not in self.cache:
            chunks = iter_distractor_chunks(self.synth, count, chunk, seed)
            self.cache[key] = [(images, camids) for images, _, camids in chunks]
        return self.cache[key]

    def family_mask(self, query_pids: Iterable[int], gallery_pids: Iterable[int]) -> torch.Tensor | None:
        """``(Q, G)`` bool: the gallery image is in the query's look-alike family (``None`` for real data)."""
        if self.synth is None:
            return None
        qf = torch.tensor([self.family_of(int(p)) for p in query_pids])
        gf = torch.tensor([self.family_of(int(p)) for p in gallery_pids])
        return qf[:, None] == gf[None, :]


def load_data(cfg: ChapterConfig, data_root: str | os.PathLike | None = None) -> ChapterData:
    """SynthReID of ``cfg`` (preset, ``cfg.synth_seed``, ``cfg.render_size``) rendered once into memory,
    or the real dataset ``cfg.dataset`` under ``data_root``.

    A config with a ``synth_domain`` field other than ``"a"`` (seed 003's cross-domain runs) gets that
    SynthReID rendering domain (:func:`reidlib.data.synthetic.domain_config`), named
    ``synthreid_<preset>_<domain>``.

    Raises:
        ValueError: a real dataset without ``data_root``.
    """
    if cfg.dataset != SYNTHREID and data_root is None:
        raise ValueError(f"dataset {cfg.dataset!r} needs data_root= (the folder holding it)")
    height, width = cfg.render_size
    domain = str(getattr(cfg, "synth_domain", "a"))
    preset: Any = cfg.synth_preset
    if domain != "a":
        from reidlib.data.synthetic import domain_config

        preset = domain_config(cfg.synth_preset, domain)
    splits, source, synth = open_dataset(cfg.dataset, data_root, preset=preset,
                                         seed=cfg.synth_seed, height=height, width=width)
    return ChapterData(splits, source, synth, data_name(cfg))


def data_name(cfg: ChapterConfig) -> str:
    """The dataset name results files store for ``cfg``'s data: ``synthreid_<preset>`` (``_<domain>``
    appended for a SynthReID domain other than ``"a"``) or the registry name of a real dataset."""
    if cfg.dataset != SYNTHREID:
        return cfg.dataset
    domain = str(getattr(cfg, "synth_domain", "a"))
    return f"synthreid_{cfg.synth_preset}" + ("" if domain == "a" else f"_{domain}")


def pin_memory() -> bool:
    """Whether the loaders put their batches in page-locked memory: on a machine with a GPU, so that the
    trainer's ``non_blocking`` copies overlap the step (pinning costs a copy and is useless without one)."""
    return torch.cuda.is_available()


def train_loader(data: ChapterData, transform: Callable[[Any], torch.Tensor] | None, batch_size: int,
                 seed: int, num_workers: int = 0, device_augment: DeviceAugment | None = None,
                 size: tuple[int, int] | None = None,
                 device: torch.device | str = "cpu") -> DataLoader | DeviceLoader:
    """Shuffled training batches of ``batch_size`` (the last partial one dropped) through ``transform``;
    their order depends on ``seed`` only, whichever runs trained before. Under ``torchrun`` each rank
    reads ``batch_size / world_size`` images of every step (``DistributedSampler``, seeded with ``seed``).
    With ``device_augment`` the images are augmented batch-wise on ``device`` (see :func:`identity_loader`).

    Raises:
        ValueError: fewer training images than one batch, a batch the ranks cannot share evenly, or
            ``device_augment`` without ``size``.
    """
    train = ImageDataset(data.splits.train, transform, image_source=data.image_source)
    if len(train) < batch_size:
        raise ValueError(f"{data.name}: {len(train)} training images, fewer than one batch of "
                         f"{batch_size}")
    ranks = distributed.world_size()
    if ranks > 1 and batch_size % ranks:
        raise ValueError(f"batch_size {batch_size} cannot be shared by {ranks} ranks")
    sampler = (DistributedSampler(train, num_replicas=ranks, rank=distributed.rank(), shuffle=True, seed=seed,
                                  drop_last=True) if ranks > 1 else None)
    if device_augment is not None:
        order = sampler if sampler is not None else RandomSampler(train, generator=make_generator(seed))
        return DeviceLoader(_image_bank(data, size, device, "train_loader"), order, batch_size // ranks,
                            device_augment, make_generator(seed))
    if transform is None:
        raise ValueError("train_loader: give a transform or a device_augment")
    workers = {"num_workers": num_workers, "persistent_workers": num_workers > 0, "pin_memory": pin_memory()}
    if sampler is not None:
        return DataLoader(train, batch_size=batch_size // ranks, sampler=sampler, drop_last=True, **workers)
    return DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=True,
                      generator=make_generator(seed), **workers)


def identity_loader(data: ChapterData, transform: Callable[[Any], torch.Tensor] | None, batch_size: int,
                    num_instances: int, seed: int, device_augment: DeviceAugment | None = None,
                    size: tuple[int, int] | None = None,
                    device: torch.device | str = "cpu") -> DataLoader | DeviceLoader:
    """``P x K`` training batches (``P = batch_size // num_instances`` identities, ``K = num_instances``
    images each; :class:`reidlib.data.samplers.RandomIdentitySampler`) for batch-hard triplet losses; the
    order of epoch ``e`` depends on ``(seed, e)`` only (the trainer calls ``set_epoch``). Under
    ``torchrun`` each rank gets its identities of every global batch
    (:class:`~reidlib.data.samplers.DistributedIdentitySampler`).

    The images go through ``transform`` (PIL, one at a time), or, with ``device_augment``, are resized
    once to ``size`` ``(H, W)`` into a :class:`~reidlib.data.device_augment.DeviceImageBank` on ``device``
    (kept in ``data.cache``) and augmented batch-wise there (:class:`~reidlib.data.device_augment.
    DeviceLoader`, its stream seeded with ``seed``): on a GPU no image is decoded or augmented by the CPU.

    Raises:
        ValueError: ``batch_size`` not a multiple of ``num_instances``, fewer than ``P`` identities, or
            ``device_augment`` without ``size``.
    """
    sampler = DistributedIdentitySampler(data.splits.train, batch_size, num_instances, seed=seed,
                                         rank=distributed.rank(), world_size=distributed.world_size())
    if device_augment is not None:
        return DeviceLoader(_image_bank(data, size, device, "identity_loader"), sampler,
                            sampler.local_batch_size, device_augment, make_generator(seed))
    if transform is None:
        raise ValueError("identity_loader: give a transform or a device_augment")
    train = ImageDataset(data.splits.train, transform, image_source=data.image_source)
    return DataLoader(train, batch_size=sampler.local_batch_size, sampler=sampler, drop_last=True,
                      pin_memory=pin_memory())


def _image_bank(data: ChapterData, size: tuple[int, int] | None, device: torch.device | str,
                caller: str) -> DeviceImageBank:
    if size is None:
        raise ValueError(f"{caller}: device_augment needs the training size (H, W)")
    key = ("device_image_bank", tuple(size), str(torch.device(device)))
    if key not in data.cache:
        data.cache[key] = DeviceImageBank(data.splits.train, data.image_source, *size, device=device)
    return data.cache[key]


def augmented_loader(data: ChapterData, height: int, width: int, batch_size: int, seed: int, *,
                     flip: bool = True, pad: int = 10, random_erasing: float = 0.0,
                     num_instances: int | None = None, batch_wise: bool = False,
                     device: torch.device | str = "cpu") -> DataLoader | DeviceLoader:
    """A recipe's training batches with the common augmentations: resize to ``height x width``, flips,
    ``pad``-pixel pad-and-crop, random erasing with probability ``random_erasing``.

    ``num_instances``: ``P x K`` identity batches (:func:`identity_loader`), else shuffled batches
    (:func:`train_loader`). ``batch_wise``: the same operations on uint8 tensors held on ``device``
    (:class:`~reidlib.data.device_augment.DeviceAugment`, tested against the PIL pipeline), instead of
    PIL one image at a time (:func:`reidlib.data.transforms.build_train_transform`).
    """
    augment = DeviceAugment(flip=flip, pad=pad, random_erasing=random_erasing) if batch_wise else None
    tf = None if batch_wise else build_train_transform(height, width, flip=flip, pad=pad,
                                                       random_erasing=random_erasing)
    size = (height, width)
    if num_instances is not None:
        return identity_loader(data, tf, batch_size, num_instances, seed, device_augment=augment, size=size,
                               device=device)
    return train_loader(data, tf, batch_size, seed, device_augment=augment, size=size, device=device)


def arm_of(name: str) -> str:
    """The arm of a run: ``"pmm"`` of ``"pmm_seed1"`` (a name without a seed suffix is its own arm)."""
    head, sep, seed = name.rpartition("_seed")
    return head if sep and seed.isdigit() else name


def test_loader(data: ChapterData, records: Sequence[Record], transform: Callable[[Any], torch.Tensor],
                batch_size: int = 128) -> DataLoader:
    """``records`` in order through ``transform`` (for feature extraction)."""
    dataset = ImageDataset(records, transform, image_source=data.image_source)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, pin_memory=pin_memory())


def cached_test_batches(data: ChapterData, records: Sequence[Record],
                        transform: Callable[[Any], torch.Tensor], key: Any, image_size: tuple[int, int],
                        batch_size: int = 128, max_bytes: int = 2 << 30) -> Iterable[dict[str, Any]]:
    """The batches of :func:`test_loader` (``records`` through ``transform``), computed once per ``key``
    and kept in ``data.cache``: every model of a chapter is tested on the same images, so decoding and
    transforming them once saves that work for every further run (about half of an extraction's time
    for a small network). A set larger than ``max_bytes`` as float32 ``(3, *image_size)`` tensors (a
    real dataset at the paper's input size) is streamed each time instead.

    Args:
        key: names the set, e.g. ``("gallery", misalignment)``; the same key must mean the same
            ``records`` and ``transform``.
    """
    height, width = image_size
    if len(records) * 3 * height * width * 4 > max_bytes:
        return test_loader(data, records, transform, batch_size)
    cache_key = ("test batches", key)
    if cache_key not in data.cache:
        data.cache[cache_key] = list(test_loader(data, records, transform, batch_size))
    return data.cache[cache_key]


def explanation_batch(data: ChapterData, count: int, height: int, width: int, device: str = "cpu"
                      ) -> tuple[list[Record], list[Any], torch.Tensor]:
    """The training images a chapter's explanation scores are computed on: ``count`` records, one per
    identity first (:func:`reidlib.data.records.one_per_identity`), their SynthReID renderings (with the
    cue and part masks) and the test-transformed batch ``(count, 3, height, width)`` on ``device``.

    Raises:
        ValueError: real data (no cue masks to score against).
    """
    if data.synth is None:
        raise ValueError(f"{data.name}: explanation scores need SynthReID's cue masks")
    from reidlib.data.records import one_per_identity
    from reidlib.data.transforms import build_test_transform

    records = one_per_identity(data.splits.train, count)
    items = [data.synth.render(r.path) for r in records]
    tf = build_test_transform(height, width)
    images = torch.stack([tf(data.image_source(r.path)) for r in records]).to(device)
    return records, items, images


def within_family(data: ChapterData, dist: torch.Tensor | np.ndarray, query: Features, gallery: Features
                  ) -> RankResult | None:
    """mAP/CMC when each query is ranked only against the gallery images of its own look-alike family
    (SynthReID; ``None`` for real data): the other images get an infinite distance ``(Q, G)``."""
    mask = data.family_mask(query.pids, gallery.pids)
    if mask is None:
        return None
    dist = torch.as_tensor(dist).clone()
    dist[~mask] = float("inf")
    return evaluate(dist, query.pids, gallery.pids, query.camids, gallery.camids)


# --------------------------------------------------------------------------------------------- runs


@dataclass
class RunContext:
    """Where and how a chapter's runs execute.

    Attributes:
        chapter: results folder name (``results/<chapter>/``).
        data: the chapter's data.
        device: ``"cpu"``, ``"cuda"`` ...
        reuse: load a finished run with the same config instead of training again (never in CI or
            ``make reproduce``).
        results_root, runs_dir: override ``results/`` and ``runs/`` (tests).
        models: models trained in this session and shared by several runs (e.g. a stage-1 network).
    """

    chapter: str
    data: ChapterData
    device: str = "cpu"
    reuse: bool = False
    results_root: str | os.PathLike | None = None
    runs_dir: str | os.PathLike | None = None
    models: dict[str, nn.Module] = field(default_factory=dict, repr=False)

    def folder(self, scale: str, name: str) -> Path:
        """``runs/<chapter>/<scale>/<name>/``: checkpoints and weights of run ``name``."""
        return runs_root(self.runs_dir) / self.chapter / scale / name


@dataclass
class ChapterRun(Generic[C, M]):
    """A finished run: its name, config, results record and trained model (eval mode, on the CPU)."""

    name: str
    config: C
    record: RunRecord
    model: M

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record.metrics


def _field(config: Any, name: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def train_run(
    ctx: RunContext,
    name: str,
    cfg: Any,
    build: Callable[[], M],
    train: Callable[[M, Path], Any],
    evaluate: Callable[[M], tuple[dict[str, Any], dict[str, Any] | None]],
    stored_config: Any = None,
) -> ChapterRun[Any, M]:
    """Train, evaluate and store run ``name`` -- or, with ``ctx.reuse``, load the finished run whose stored
    config equals this one and reload its weights.

    Training: the torch, numpy and python RNGs are seeded with the config's ``seed``, ``build()`` makes the
    model, ``train(model, folder)`` trains it in the run folder and returns its history (the engine's
    trainer resumes there from ``latest.pt`` after a crash), the weights go to ``model.pt``, then
    ``evaluate(model)`` (on the training device) returns ``(metrics, extra)`` and the results file is
    written (atomically: a run that
    fails leaves no results file of its own, and a finished run's file is replaced only when the new one is
    complete). The trainer's ``latest.pt`` is removed only after that.

    Under ``torchrun`` (:mod:`reidlib.engine.distributed`) every rank trains its share of the batches
    (the trainer's DDP, the loaders' rank split); rank 0 alone decides on reuse, writes the weights,
    evaluates and writes the results file, and the other ranks receive its record.

    Args:
        cfg: the run's config (its ``scale`` and ``seed`` are read); stored in the results file unless
            ``stored_config`` is given (a run defined by part of a config, e.g. a shared stage 1).

    Returns:
        the run, its model in eval mode on the CPU.
    """
    scale, seed = _field(cfg, "scale"), _field(cfg, "seed", 0)
    folder = ctx.folder(scale, name)
    weights = folder / WEIGHTS_FILE
    trained: dict[str, M] = {}
    main = distributed.is_main_process()

    def train_fn() -> RunOutcome:
        if main:
            folder.mkdir(parents=True, exist_ok=True)
            weights.unlink(missing_ok=True)  # never leave another config's weights beside a new training
            drop_stale_checkpoint(folder, {"config": config, "data_identity": ctx.data.identity})
        distributed.barrier()
        _ensure_trunk(cfg, ctx.device)  # pre-training draws random numbers: never between seeding and build
        seed_everything(int(seed))
        model = build()
        history = train(model, folder)
        model.eval()  # still on the training device: evaluation runs there too
        trained["model"] = model
        if not main:
            return RunOutcome(metrics={})
        state = {k: v.cpu() for k, v in model.state_dict().items()}
        atomic_write(weights, lambda fh: torch.save(state, fh))
        metrics, extra = evaluate(model)
        trained["model"] = model.cpu()
        return RunOutcome(metrics=metrics, history=history, extra=extra)

    config = _with_trunk(cfg, cfg if stored_config is None else stored_config)
    defaults = config_defaults(cfg if stored_config is None else stored_config)
    reuse = ctx.reuse and weights.is_file()
    if distributed.is_distributed():
        if main and reuse:
            stored, _ = reusable_run(ctx.chapter, name, scale, config, ctx.data.identity, ctx.results_root,
                                     defaults)
            reuse = stored is not None
        reuse = distributed.all_gather_objects(reuse)[0]
        if not main and not reuse:
            train_fn()
    record = None
    if main:
        record = run_or_reuse(ctx.chapter, name, scale, config, train_fn, reuse=reuse, dataset=ctx.data.name,
                              seed=seed, root=ctx.results_root, device=ctx.device,
                              data_identity=ctx.data.identity, defaults=defaults)
    record = distributed.all_gather_objects(record)[0]
    if record.reused:
        model = build()
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        trained["model"] = model.eval()
    elif main:
        (folder / "latest.pt").unlink(missing_ok=True)
    return ChapterRun(name, cfg, record, trained["model"].cpu())


def drop_stale_checkpoint(folder: Path, identity: Mapping[str, Any]) -> None:
    """Before training in run ``folder``: remove the trainer's ``latest.pt`` when it was written for
    another ``identity`` (the stored config with the pre-trained trunk's key, and the data's identity),
    or when nothing says what it was written for; then record ``identity`` for the next attempt.

    The trainer resumes a checkpoint of the same config (:meth:`~reidlib.engine.trainer.Trainer.
    fit_or_resume`), but a recipe's config does not name the trunk or the data: without this, a run
    interrupted on another trunk would be continued as if it were this one.
    """
    current = json.loads(json.dumps(to_jsonable(dict(identity), "run identity")))
    latest, marker = folder / "latest.pt", folder / IDENTITY_FILE
    if latest.is_file():
        try:
            saved = json.loads(marker.read_text())
        except (OSError, ValueError):
            saved = None
        if saved != current:
            if saved is None:
                why = f"no readable {IDENTITY_FILE} says what it was trained for"
            else:
                diffs = config_differences(saved, current)
                why = "it was trained for another run (" + "; ".join(diffs[:3]) + ")"
            print(f"not resuming {latest}: {why}; training from the start", flush=True)
            latest.unlink()
    atomic_write_json(marker, current)


def evaluation_run(
    ctx: RunContext,
    name: str,
    config: Any,
    evaluate: Callable[[], tuple[dict[str, Any], dict[str, Any] | None]],
    evaluated_from: str | None = None,
) -> RunRecord:
    """An evaluation-only run derived from trained models (a test-descriptor variant, re-ranking,
    distractors ...): ``evaluate()`` returns ``(metrics, extra)``, stored as run ``name`` with ``config``
    (reused under the same rule as :func:`train_run`). ``evaluated_from`` (the trained run's name) is
    recorded in ``extra``."""
    seed = _field(config, "seed", 0)

    def eval_fn() -> RunOutcome:
        metrics, extra = evaluate()
        extra = dict(extra or {})
        if evaluated_from is not None:
            extra = {"evaluated_from": evaluated_from, **extra}
        return RunOutcome(metrics=metrics, extra=extra)

    return run_or_reuse(ctx.chapter, name, _field(config, "scale"), _with_trunk(config, config), eval_fn,
                        reuse=ctx.reuse, dataset=ctx.data.name, seed=seed, root=ctx.results_root,
                        device=ctx.device, data_identity=ctx.data.identity, defaults=config_defaults(config))


def log_line(name: str, record: RunRecord, seconds: float) -> str:
    """The one line printed per run: name, mAP and rank-1 (percent), and wall time or "reused"."""
    m = record.metrics
    when = "reused" if record.reused else f"{seconds:.0f} s"
    return f"{name:>18}: mAP {100 * m['mAP']:5.1f}  rank-1 {100 * m['rank1']:5.1f}  ({when})"


def run_all(
    names: Iterable[str],
    run_one: Callable[[str], ChapterRun[Any, Any]],
) -> dict[str, ChapterRun[Any, Any]]:
    """``run_one(name)`` for every name in order, printing :func:`log_line` after each."""
    out: dict[str, ChapterRun[Any, Any]] = {}
    for name in names:
        start = time.perf_counter()
        run = run_one(name)
        if distributed.is_main_process():
            print(log_line(name, run.record, time.perf_counter() - start), flush=True)
        out[name] = run
    return out

