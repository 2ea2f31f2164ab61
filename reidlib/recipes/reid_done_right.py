"""Recipe of seed 001 ("Re-ID done right", Almazán et al., 2018): configs per scale, the two training
stages, hard triplet mining from a descriptor pool, evaluation with and without re-ranking, and the
runs behind every table and figure of the chapter.

One :class:`RdrConfig` describes one run. :func:`config_for` gives a scale's config (``smoke`` / ``cpu``
/ ``full``); :data:`RUNS` lists the chapter's runs as overrides of it (Table 1's "cut-out" row, Table 2's
middle size, Table 3's max pooling / middle depth / "with pre-training" rows and the hard-mining row are
all the main run ``rdr``). :func:`run_rdr` trains one run (or reuses a finished one), evaluates it and
writes ``results/reid_done_right/<scale>/<run>.json``.

The paper's training (Sec. 3-4.1):

1. *Identity classification* (the curriculum's first task, Sec. 3.3): an ImageNet ResNet fine-tuned as
   a classifier of the training identities; random-sized crops resized to 224x224, SGD with momentum 0.9,
   weight decay 5e-5, batch 128, LR 1e-2 decreased to 1e-4 (:func:`train_classifier`).
2. *Ranking* (Eq. 1) with a three-stream Siamese network: the conv weights of stage 1, max pooling, a
   new randomly initialised FC to 2,048 dimensions, L2 normalisation; images resized so that the largest
   side is ``M = 416`` pixels without distortion, processed one triplet at a time with gradients
   accumulated to a batch of 64 triplets; SGD at 1e-3 halved every 512 iterations, about 4,096
   iterations; margin ``m = 0.1``; triplets mined from a pool of ``N = 5,000`` random training images
   whose descriptors are refreshed every ``k = 16`` updates (a random query, one of its 25 hardest
   triplets); cut-out whose maximum area grows during training (:func:`train_ranking`).

**BatchNorm during the ranking stage.** With one triplet per forward pass, batch statistics are
meaningless, so the BN layers run with the statistics of the pre-trained network (``freeze_bn``; the
affine parameters still train). Then one triplet at a time with accumulated gradients is *exactly* one
batch of triplets, which lets us process equal-size triplets together on the CPU
(``triplets_per_pass``; :func:`accumulate_triplet_gradients`, tested). A network that skips stage 1
(Table 3c) first re-estimates its BN statistics on training images (:func:`calibrate_bn`), the role
ImageNet statistics play in the paper.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from reidlib.data.dataset import ImageDataset
from reidlib.data.records import Record, ReIDSplits
from reidlib.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ProgressiveCutout,
    build_aspect_transform,
)
from reidlib.engine.config import OptimizerConfig, ScheduleConfig, TrainConfig
from reidlib.engine.extract import Features
from reidlib.engine.schedules import build_optimizer, build_scheduler
from reidlib.engine.seeding import make_generator, seed_everything
from reidlib.engine.trainer import Trainer
from reidlib.evaluation.features import evaluate_features
from reidlib.evaluation.query_expansion import query_expansion
from reidlib.evaluation.rank import RankResult
from reidlib.losses.mining import MINING_MODES, TripletPool
from reidlib.losses.triplet import batch_hard_triplet_loss, ranking_triplet_loss
from reidlib.models.global_descriptor import GlobalDescriptor, build_backbone
from reidlib.scale import SCALES, resolve_scale
from reidlib.results.paths import runs_root
from reidlib.results.store import RunOutcome, RunRecord, run_or_reuse

CHAPTER = "reid_done_right"
DATASETS = ("synthreid", "market1501", "dukemtmc", "cuhk03", "msmt17")
CUTOUT_MODES = ("none", "progressive", "fixed")
TRAIN_MODES = (*MINING_MODES, "batch_hard")
#: Extra training seeds of the main run (``rdr_seed<s>``, seed = base seed + s).
SPREAD_SEEDS = (1, 2)


@dataclass
class RdrConfig:
    """Everything that defines one run of the chapter (stored with its results).

    Attributes:
        scale: ``smoke``, ``cpu`` or ``full``.
        dataset: ``"synthreid"`` (in memory) or a real dataset of :mod:`reidlib.data.registry`.
        synth_preset: SynthReID preset; ``render_height`` x ``render_width``: the size SynthReID draws its
            images at (the counterpart of Market's 256x128 "native" size, which the paper up-scales).
        depth: ResNet depth; ``depth_sweep``: Table 3b's three depths (``depth`` is the middle one).
        base_width: 64 = torchvision's ResNet; less = a randomly initialised narrow ResNet (CPU).
        pretrained: ImageNet weights for the backbone (from disk; never downloaded).
        pool: ``"max"`` or ``"avg"`` (Table 3a). dim: descriptor size (2,048 in the paper).
        cls_pretrain: run stage 1 (identity classification) before the ranking stage (Table 3c).
        cls_size: side of the square random-sized crops of stage 1 (224). cls_crop_scale: their area range.
        cls_epochs, cls_batch, cls_lr, cls_final_lr: stage 1's length, batch and log-linear LR decay.
        momentum, weight_decay: SGD settings of both stages (0.9 and 5e-5; the paper gives the weight
            decay for stage 1 only).
        max_side: ``M``, the largest image side in stage 2 and at test time; ``size_sweep``: Table 2's
            three values (``max_side`` is the middle one).
        iterations: stage-2 optimizer updates (~4,096). batch_triplets: triplets per update (64).
        triplets_per_pass: triplets per forward pass (1 = the paper's one triplet at a time; with frozen
            BN any value gives the same gradient for equal-size images).
        lr, half_life: stage-2 SGD LR (1e-3), halved every ``half_life`` updates (512).
        margin: ``m`` of Eq. 1 (0.1).
        mining: ``"hard"`` (pool mining, the paper), ``"random"`` (random triplets from the pool) or
            ``"batch_hard"`` (P x K batches with batch-hard triplets, Hermans et al., for comparison).
        pool_size, pool_updates, num_hard: ``N`` (5,000), ``k`` (16) and the 25 hardest triplets.
        pk_instances: ``K`` images per identity of a batch-hard batch (P = 3 x batch_triplets / K, so
            both mining modes see the same number of images per update).
        flip, crop: Table 1's flip and crop (``crop``: smallest kept fraction of each side; ``None`` =
            no crop).
        cutout: ``"none"``, ``"progressive"`` (max area grows linearly from 0 to ``cutout_max_area``)
            or ``"fixed"`` (always up to ``cutout_max_area``). cutout_max_area: area fraction.
        freeze_bn: BN statistics fixed in stage 2 (see the module docstring).
        qe_k_query, qe_k_db: neighbours averaged by query expansion (5) and database augmentation (10).
        explain_images: query images used for the attention scores.
        seed: random seed of the training (initialisation, sampling, augmentation).
        data_seed: seed SynthReID is drawn with (fixed across the chapter's training seeds).
    """

    scale: str = "cpu"
    dataset: str = "synthreid"
    synth_preset: str = "small"
    render_height: int = 64
    render_width: int = 32
    depth: int = 18
    depth_sweep: tuple[int, int, int] = (10, 18, 34)
    base_width: int = 16
    pretrained: bool = False
    pool: str = "max"
    dim: int = 256
    cls_pretrain: bool = True
    cls_size: int = 56
    cls_crop_scale: tuple[float, float] = (0.5, 1.0)
    cls_epochs: int = 8
    cls_batch: int = 64
    cls_lr: float = 0.1
    cls_final_lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-5
    max_side: int = 104
    size_sweep: tuple[int, int, int] = (64, 104, 160)
    iterations: int = 64
    batch_triplets: int = 16
    triplets_per_pass: int = 16
    lr: float = 1e-3
    half_life: float = 16.0
    margin: float = 0.1
    mining: str = "hard"
    pool_size: int = 640
    pool_updates: int = 16
    num_hard: int = 25
    pk_instances: int = 4
    flip: bool = False
    crop: float | None = None
    cutout: str = "progressive"
    cutout_max_area: float = 0.4
    freeze_bn: bool = True
    qe_k_query: int = 5
    qe_k_db: int = 10
    explain_images: int = 48
    seed: int = 0
    data_seed: int = 0

    def __post_init__(self) -> None:
        self.depth_sweep = tuple(self.depth_sweep)  # type: ignore[assignment]  (JSON gives lists)
        self.size_sweep = tuple(self.size_sweep)  # type: ignore[assignment]
        self.cls_crop_scale = tuple(self.cls_crop_scale)  # type: ignore[assignment]
        if self.scale not in SCALES:
            raise ValueError(f"scale {self.scale!r} unknown; expected one of {SCALES}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset {self.dataset!r} unknown; expected one of {DATASETS}")
        if self.pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {self.pool!r}")
        if self.mining not in TRAIN_MODES:
            raise ValueError(f"mining {self.mining!r} unknown; expected one of {TRAIN_MODES}")
        if self.cutout not in CUTOUT_MODES:
            raise ValueError(f"cutout {self.cutout!r} unknown; expected one of {CUTOUT_MODES}")
        if self.crop is not None and not 0 < self.crop <= 1:
            raise ValueError(f"crop must be None or in (0, 1], got {self.crop}")
        if self.iterations < 1 or self.batch_triplets < 1 or self.triplets_per_pass < 1:
            raise ValueError("iterations, batch_triplets and triplets_per_pass must be >= 1")
        if self.pool_updates < 1 or self.num_hard < 1 or self.pool_size < 4:
            raise ValueError("pool_updates and num_hard must be >= 1 and pool_size >= 4")
        if self.pk_instances < 2:
            raise ValueError(f"pk_instances must be >= 2, got {self.pk_instances}")
        if self.max_side < 16 or self.cls_size < 16:
            raise ValueError(f"max_side and cls_size must be >= 16, got {self.max_side}, {self.cls_size}")
        if self.base_width != 64 and self.pretrained:
            raise ValueError("ImageNet weights exist for base_width 64 only")


#: The three scales. ``cpu`` and ``smoke`` train narrow ResNets from scratch (no ImageNet weights here), so
#: their stage-1 LR starts 10x higher than the paper's fine-tuning LR (0.1 -> 1e-3) on larger crops; stage 2
#: keeps the paper's LR (1e-3; 1e-2 collapsed every descriptor onto one point in our trials) with 64
#: updates of 16 triplets, halving the LR every 16 updates. Sizes are scaled in proportion: SynthReID drawn
#: at 64x32 plays Market's 256x128, so ``M`` = 64 / 104 / 160 is the paper's 256 / 416 / 640.
SCALE_CONFIGS: dict[str, RdrConfig] = {
    "smoke": RdrConfig(scale="smoke", synth_preset="tiny", depth=10, depth_sweep=(10, 10, 18), base_width=8,
                       dim=64, cls_size=32, cls_epochs=2, cls_batch=32, max_side=48, size_sweep=(32, 48, 64),
                       iterations=4, batch_triplets=4, triplets_per_pass=4, half_life=2.0, pool_size=60,
                       pool_updates=2, explain_images=6),
    "cpu": RdrConfig(scale="cpu"),
    "full": RdrConfig(scale="full", dataset="market1501", synth_preset="market", render_height=256,
                      render_width=128, depth=101, depth_sweep=(50, 101, 152), base_width=64, pretrained=True,
                      dim=2048, cls_size=224, cls_crop_scale=(0.08, 1.0), cls_epochs=40, cls_batch=128,
                      cls_lr=1e-2, cls_final_lr=1e-4, max_side=416, size_sweep=(256, 416, 640),
                      iterations=4096, batch_triplets=64, triplets_per_pass=1, lr=1e-3, half_life=512.0,
                      pool_size=5000, explain_images=256),
}


def config_for(scale: str | None = None, **overrides: Any) -> RdrConfig:
    """The config of ``scale`` (``$REIDLIB_SCALE`` wins, see :func:`resolve_scale`) with ``overrides``.

    Raises:
        ValueError: unknown scale or override name (the message lists the fields).
    """
    scale = resolve_scale(scale)
    names = {f.name for f in dataclasses.fields(RdrConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown RdrConfig field(s) {unknown}; fields: {sorted(names)}")
    return dataclasses.replace(SCALE_CONFIGS[scale], **overrides)


def _sweep_overrides(base: RdrConfig) -> dict[str, dict[str, Any]]:
    small, _, large = base.size_sweep
    shallow, _, deep = base.depth_sweep
    return {
        "rdr": {},
        # Table 1: flip / crop / cut-out ("cut-out" alone is the main run).
        "aug_none": {"cutout": "none"},
        "aug_flip": {"cutout": "none", "flip": True},
        "aug_crop": {"cutout": "none", "crop": 0.8},
        "aug_all": {"flip": True, "crop": 0.8},
        # Table 2: largest image side.
        "size_small": {"max_side": small},
        "size_large": {"max_side": large},
        # Table 3: pooling, depth, classification pre-training.
        "pool_avg": {"pool": "avg"},
        "depth_shallow": {"depth": shallow},
        "depth_deep": {"depth": deep},
        "no_cls_pretrain": {"cls_pretrain": False},
        # The curriculum claims: fixed vs progressive cut-out, random vs hard triplets; and batch-hard.
        "cutout_fixed": {"cutout": "fixed"},
        "mining_random": {"mining": "random"},
        "mining_batch_hard": {"mining": "batch_hard"},
        # The main run again with other training seeds: how far two runs of one setting land apart.
        **{f"rdr_seed{s}": {"seed": base.seed + s} for s in SPREAD_SEEDS},
    }


#: Every stage-2 run of the chapter: name -> overrides of the scale's config (sizes and depths are read
#: from the config's sweeps, see :func:`run_config`).
RUNS: tuple[str, ...] = tuple(_sweep_overrides(RdrConfig()))
#: Table rows: paper row label -> our run.
TABLE1_RUNS = {"none": "aug_none", "flip": "aug_flip", "crop": "aug_crop", "cut-out": "rdr",
               "flip + crop + cut-out": "aug_all"}
TABLE2_RUNS = {0: "size_small", 1: "rdr", 2: "size_large"}
TABLE3_RUNS = {"(a) pooling: average": "pool_avg", "(a) pooling: max": "rdr",
               "(b) backbone: shallow": "depth_shallow", "(b) backbone: middle": "rdr",
               "(b) backbone: deep": "depth_deep",
               "(c) classification pre-training: no": "no_cls_pretrain",
               "(c) classification pre-training: yes": "rdr"}


def run_config(name: str, base: RdrConfig) -> RdrConfig:
    """The config of run ``name`` of :data:`RUNS` on top of ``base`` (a scale's config)."""
    overrides = _sweep_overrides(base)
    if name not in overrides:
        raise ValueError(f"unknown run {name!r}; runs: {sorted(overrides)}")
    return dataclasses.replace(base, **overrides[name])


# --------------------------------------------------------------------------------------------- data


@dataclass
class RdrData:
    """The data of the chapter.

    Attributes:
        splits: train (relabelled pids ``0..C-1``), query and gallery records.
        image_source: ``path -> PIL.Image``.
        synth: the :class:`reidlib.data.synthetic.SynthReID` behind the data (``None`` for real data).
        name: dataset name stored in the results files.
    """

    splits: ReIDSplits
    image_source: Callable[[str], Any]
    synth: Any
    name: str
    distractor_cache: dict[tuple[int, int, int], list[tuple[np.ndarray, np.ndarray]]] = field(
        default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        return self.splits.num_train_pids

    def family_of(self, pid: int) -> int | None:
        """Look-alike family of a SynthReID test identity; -1 for distractors, ``None`` for real data."""
        if self.synth is None:
            return None
        return -1 if pid <= 0 else int(self.synth.family_of(pid))


def load_data(cfg: RdrConfig, data_root: str | os.PathLike | None = None) -> RdrData:
    """SynthReID of ``cfg`` rendered once into memory, or a real dataset under ``data_root``.

    Raises:
        ValueError: a real dataset without ``data_root``.
    """
    if cfg.dataset == "synthreid":
        from reidlib.data.synthetic import SynthReID

        synth = SynthReID(preset=cfg.synth_preset, seed=cfg.data_seed, height=cfg.render_height,
                          width=cfg.render_width)
        synth.precache(progress=False)
        return RdrData(synth.splits, synth.load_image, synth, f"synthreid_{cfg.synth_preset}")
    if data_root is None:
        raise ValueError(f"dataset {cfg.dataset!r} needs data_root= (the folder holding it)")
    from reidlib.data.dataset import open_rgb
    from reidlib.data.registry import load_dataset

    return RdrData(load_dataset(cfg.dataset, data_root), open_rgb, None, cfg.dataset)


def test_transform(cfg: RdrConfig) -> T.Compose:
    """Largest side to ``M`` without distortion, ``ToTensor``, ImageNet normalisation."""
    return build_aspect_transform(cfg.max_side)


def ranking_transform(cfg: RdrConfig) -> tuple[T.Compose, ProgressiveCutout | None]:
    """Stage-2 training pipeline of ``cfg`` (crop, resize to ``M``, flip, cut-out) and its cut-out."""
    cutout = None
    if cfg.cutout == "progressive":
        cutout = ProgressiveCutout(cfg.cutout_max_area, start=0.0)
    elif cfg.cutout == "fixed":
        cutout = ProgressiveCutout(cfg.cutout_max_area, start=cfg.cutout_max_area)
    return build_aspect_transform(cfg.max_side, flip=cfg.flip, cutout=cutout, crop=cfg.crop), cutout


def classification_transform(cfg: RdrConfig) -> T.Compose:
    """Stage-1 pipeline: random-sized square crops resized to ``cls_size`` (224), flips, normalisation."""
    return T.Compose([
        T.RandomResizedCrop(cfg.cls_size, scale=cfg.cls_crop_scale, antialias=True),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


# -------------------------------------------------------------------------------------------- model


def build_model(cfg: RdrConfig, num_classes: int | None = None, depth: int | None = None) -> GlobalDescriptor:
    """The descriptor network of ``cfg`` (with a classifier when ``num_classes`` is given: stage 1)."""
    backbone = build_backbone(depth or cfg.depth, cfg.base_width, cfg.pretrained)
    pool = "avg" if num_classes is not None else cfg.pool
    return GlobalDescriptor(backbone, dim=cfg.dim, pool=pool, num_classes=num_classes)


def set_bn_eval(model: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode (fixed statistics); other layers keep their mode."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@torch.no_grad()
def calibrate_bn(model: nn.Module, images: Sequence[Tensor], batch_size: int = 64) -> None:
    """Re-estimate every BN layer's running statistics as the plain average over ``images`` (training
    mode, no gradient); the weights are untouched."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    was_training = model.training
    model.train()
    device = next(model.parameters()).device
    try:
        for _, idx in _size_groups(images, batch_size):
            model(torch.stack([images[i] for i in idx]).to(device))
    finally:
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom
        model.train(was_training)


# ------------------------------------------------------------------------------- descriptors


def _size_groups(images: Sequence[Tensor], batch_size: int) -> list[tuple[tuple[int, ...], list[int]]]:
    """Indices of ``images`` grouped by shape, in chunks of at most ``batch_size`` (first-seen order)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape), []).append(i)
    out = []
    for shape, idx in groups.items():
        out.extend((shape, idx[s : s + batch_size]) for s in range(0, len(idx), batch_size))
    return out


def descriptors(model: nn.Module, images: Sequence[Tensor], batch_size: int = 256, which: str = "embedding"
                ) -> Tensor:
    """Descriptors ``(N, D)`` of images of any sizes, in input order.

    Images of equal size are batched together; no padding is ever used, so each descriptor is exactly
    the one of the image alone (in eval mode / with frozen BN). Gradients flow when enabled.

    Args:
        which: ``"embedding"`` (the L2-normalised descriptor) or ``"pooled"`` (the L2-normalised pooled
            conv features, before the FC: how stage 1's classification network is evaluated).
    """
    if len(images) == 0:
        raise ValueError("descriptors: no images")
    if which not in ("embedding", "pooled"):
        raise ValueError(f"which must be 'embedding' or 'pooled', got {which!r}")
    parts, order = [], []
    device = next(model.parameters()).device
    for _, idx in _size_groups(images, batch_size):
        out = model(torch.stack([images[i] for i in idx]).to(device))
        parts.append(out.embedding if which == "embedding" else F.normalize(out.extras["pooled"], dim=1))
        order.extend(idx)
    stacked = torch.cat(parts)
    inverse = torch.empty(len(order), dtype=torch.int64)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return stacked[inverse.to(stacked.device)]


def load_images(data: RdrData, records: Sequence[Record], transform: Callable[[Any], Tensor]) -> list[Tensor]:
    """``transform(image)`` of every record."""
    return [transform(data.image_source(r.path)) for r in records]


@torch.no_grad()
def extract(model: nn.Module, data: RdrData, records: Sequence[Record], transform: Callable[[Any], Tensor],
            which: str = "embedding", chunk: int = 512, desc: str = "extract", progress: bool = False
            ) -> Features:
    """Descriptors of ``records`` (eval mode, images loaded ``chunk`` at a time; a tqdm bar with
    ``progress``)."""
    was_training = model.training
    model.eval()
    try:
        feats = []
        starts = range(0, len(records), chunk)
        for s in tqdm(starts, desc=desc, leave=False, disable=not progress):
            images = load_images(data, records[s : s + chunk], transform)
            feats.append(descriptors(model, images, which=which).cpu())
    finally:
        model.train(was_training)
    return Features(torch.cat(feats).float(), np.array([r.pid for r in records], dtype=np.int64),
                    np.array([r.camid for r in records], dtype=np.int64))


# ------------------------------------------------------------------------------ stage 1: classification


def classification_key(cfg: RdrConfig) -> dict[str, Any]:
    """The fields of ``cfg`` that define its stage-1 network (runs that share them share the network)."""
    names = ("dataset", "synth_preset", "render_height", "render_width", "depth", "base_width", "pretrained",
             "dim", "cls_size", "cls_crop_scale", "cls_epochs", "cls_batch", "cls_lr", "cls_final_lr",
             "momentum", "weight_decay", "seed", "data_seed")
    return {n: getattr(cfg, n) for n in names} | {"scale": cfg.scale}


def classification_run_name(cfg: RdrConfig) -> str:
    """``classification_r<depth>`` (``_seed<s>`` for a training seed other than the scale's)."""
    suffix = f"_seed{cfg.seed}" if cfg.seed != SCALE_CONFIGS[cfg.scale].seed else ""
    return f"classification_r{cfg.depth}{suffix}"


def _cls_loss(output: Any, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
    logits = output.logits[0]
    loss = F.cross_entropy(logits, batch["pid"])
    acc = float((logits.argmax(1) == batch["pid"]).float().mean())
    return loss, {"accuracy": acc}


def train_classifier(cfg: RdrConfig, data: RdrData, out_dir: str | os.PathLike, device: str = "cpu"
                     ) -> tuple[GlobalDescriptor, list[dict[str, Any]]]:
    """Stage 1: identity classification (SGD, log-linear LR decay from ``cls_lr`` to ``cls_final_lr``).

    Returns the network (eval mode) and its per-epoch history.
    """
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.num_classes)
    dataset = ImageDataset(data.splits.train, classification_transform(cfg), image_source=data.image_source)
    batch = min(cfg.cls_batch, len(dataset))
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                        generator=make_generator(cfg.seed))
    schedule = ScheduleConfig(kind="log_decay", final_lr=cfg.cls_final_lr, per_iteration=True)
    train_cfg = TrainConfig(epochs=cfg.cls_epochs, optimizer=OptimizerConfig(
        name="sgd", lr=cfg.cls_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay),
        schedule=schedule, seed=cfg.seed, progress="line", amp=False)
    trainer = Trainer(model, _cls_loss, loader, train_cfg, out_dir, device=device,
                      record={"rdr_classification": classification_key(cfg)})
    history = trainer.fit(resume=False)
    (Path(out_dir) / "latest.pt").unlink(missing_ok=True)
    return model.eval(), history.to_list()


# ----------------------------------------------------------------------------------- stage 2: ranking


def accumulate_triplet_gradients(model: nn.Module, triplets: Sequence[tuple[Tensor, Tensor, Tensor]],
                                 margin: float, triplets_per_pass: int, normalizer: int | None = None
                                 ) -> tuple[float, int]:
    """Backpropagate Eq. 1 over ``triplets``, ``triplets_per_pass`` at a time, accumulating ``.grad``.

    Each pass contributes ``sum of its triplet losses / normalizer`` (default ``len(triplets)``), so
    after all passes the gradient is that of the mean loss of the whole batch: with fixed BN statistics,
    one triplet at a time (the paper, ``triplets_per_pass=1``) and one batch give the same gradient.
    Images may have any size (equal sizes within a pass are batched, see :func:`descriptors`).

    Returns:
        ``(sum of the triplet losses, number of triplets with a positive loss)``.
    """
    if not triplets:
        raise ValueError("no triplets")
    norm = normalizer or len(triplets)
    total, active = 0.0, 0
    for s in range(0, len(triplets), triplets_per_pass):
        chunk = triplets[s : s + triplets_per_pass]
        d = descriptors(model, [img for t in chunk for img in t])
        losses = ranking_triplet_loss(d[0::3], d[1::3], d[2::3], margin, reduction="none")
        (losses.sum() / norm).backward()
        total += float(losses.detach().sum())
        active += int((losses.detach() > 0).sum())
    return total, active


def refresh_pool(model: nn.Module, cfg: RdrConfig, data: RdrData, generator: torch.Generator) -> TripletPool:
    """Descriptors of ``pool_size`` random training images under the current model (test pipeline)."""
    train = data.splits.train
    pick = torch.randperm(len(train), generator=generator)[: min(cfg.pool_size, len(train))]
    records = [train[int(i)] for i in pick]
    feats = extract(model, data, records, test_transform(cfg), desc="pool")
    return TripletPool(pick, feats.feats, torch.as_tensor(feats.pids), mode=cfg.mining, num_hard=cfg.num_hard,
                       margin=cfg.margin)


def _pk_batch(data: RdrData, cfg: RdrConfig, generator: torch.Generator) -> tuple[list[int], Tensor]:
    """Indices of a P x K batch of training images (P identities, K images each) and their pids."""
    by_pid: dict[int, list[int]] = {}
    for i, r in enumerate(data.splits.train):
        by_pid.setdefault(r.pid, []).append(i)
    pids = sorted(by_pid)
    k = cfg.pk_instances
    p = max(2, round(3 * cfg.batch_triplets / k))
    chosen = torch.randperm(len(pids), generator=generator)[:p].tolist()
    idx: list[int] = []
    labels: list[int] = []
    for c in chosen:
        pool = by_pid[pids[c]]
        if len(pool) >= k:
            pick = torch.randperm(len(pool), generator=generator)[:k].tolist()
        else:
            pick = torch.randint(len(pool), (k,), generator=generator).tolist()
        idx += [pool[j] for j in pick]
        labels += [pids[c]] * k
    return idx, torch.tensor(labels)


def initial_model(cfg: RdrConfig, data: RdrData, classifier: nn.Module | None) -> GlobalDescriptor:
    """Stage 2's starting point: conv weights of the stage-1 ``classifier`` and a random FC, or (no
    classification pre-training) the backbone as built, with BN statistics estimated on 256 training
    images."""
    torch.manual_seed(cfg.seed + 1)
    model = build_model(cfg)
    if classifier is not None:
        model.load_backbone_from(classifier)
    else:
        train = data.splits.train
        pick = torch.randperm(len(train), generator=make_generator(cfg.seed))[:256].tolist()
        calibrate_bn(model, load_images(data, [train[i] for i in pick], test_transform(cfg)))
    return model


def train_ranking(cfg: RdrConfig, data: RdrData, classifier: nn.Module | None, device: str = "cpu",
                  progress: bool = True) -> tuple[GlobalDescriptor, list[dict[str, Any]]]:
    """Stage 2: the three-stream Siamese network trained with Eq. 1 (see the module docstring).

    Returns the model (eval mode, on the CPU) and its history: one entry per update with ``iteration``,
    ``loss`` (mean over the batch's triplets), ``active`` (share of triplets with a positive loss),
    ``lr`` and ``cutout_max_area``; at every pool refresh also ``pool_hard_loss`` (mean loss of the
    pool's hardest triplets under the current model: how hard the mined triplets still are).
    """
    seed_everything(cfg.seed)
    model = initial_model(cfg, data, classifier).to(device)
    optimizer = build_optimizer(model, OptimizerConfig(name="sgd", lr=cfg.lr, momentum=cfg.momentum,
                                                       weight_decay=cfg.weight_decay))
    scheduler = build_scheduler(optimizer, ScheduleConfig(kind="log_decay", half_life=cfg.half_life,
                                                          unit="iteration", per_iteration=True),
                                epochs=1, iters_per_epoch=cfg.iterations)
    transform, cutout = ranking_transform(cfg)
    generator = make_generator(cfg.seed)
    train = data.splits.train
    pool: TripletPool | None = None
    history: list[dict[str, Any]] = []
    bar = tqdm(range(cfg.iterations), desc=f"ranking ({cfg.mining})", leave=False, disable=not progress,
               mininterval=5.0)
    for it in bar:
        logs: dict[str, Any] = {"iteration": it + 1, "lr": float(optimizer.param_groups[0]["lr"])}
        if cutout is not None:
            cutout.set_progress(it / max(cfg.iterations - 1, 1))
            logs["cutout_max_area"] = cutout.max_area()
        if cfg.mining != "batch_hard" and it % cfg.pool_updates == 0:
            pool = refresh_pool(model, cfg, data, generator)
            logs["pool_hard_loss"] = pool.mean_hard_loss(generator=generator)
        model.train()
        if cfg.freeze_bn:
            set_bn_eval(model)
        optimizer.zero_grad(set_to_none=True)
        if cfg.mining == "batch_hard":
            idx, pids = _pk_batch(data, cfg, generator)
            images = [transform(data.image_source(train[i].path)).to(device) for i in idx]
            d = descriptors(model, images)
            # Euclidean^2 = 2 - 2 q.d on unit vectors: margin 2m and a factor 1/2 give Eq. 1's hinge.
            loss, stats = batch_hard_triplet_loss(d, pids.to(device), margin=2 * cfg.margin,
                                                  metric="sqeuclidean")
            (loss / 2).backward()
            logs["loss"], logs["active"] = float(loss.detach()) / 2, stats["active_fraction"]
        else:
            assert pool is not None
            chosen = pool.sample(cfg.batch_triplets, generator)
            triplets = [tuple(transform(data.image_source(train[int(i)].path)).to(device) for i in row)
                        for row in chosen]
            total, active = accumulate_triplet_gradients(model, triplets, cfg.margin, cfg.triplets_per_pass)
            logs["loss"], logs["active"] = total / len(triplets), active / len(triplets)
        if not math.isfinite(logs["loss"]):
            raise FloatingPointError(f"non-finite ranking loss at iteration {it + 1}")
        optimizer.step()
        scheduler.step()
        history.append(logs)
    return model.cpu().eval(), history


# --------------------------------------------------------------------------------------- evaluation


def rank_metrics(result: RankResult) -> dict[str, Any]:
    """The numeric fields of a :class:`RankResult` for a results file (rates are fractions)."""
    d = result.as_dict()
    return {k: d[k] for k in ("mAP", "rank1", "rank5", "rank10", "num_valid", "num_skipped")} | {
        "cmc": d["cmc"][:20]}


def _rank(q: Features, g: Features, qf: Tensor | None = None, gf: Tensor | None = None,
          rerank: bool = False, gallery_chunk: int | None = None) -> RankResult:
    return evaluate_features(q.feats if qf is None else qf, g.feats if gf is None else gf, q.pids, g.pids,
                             q.camids, g.camids, metric="euclidean", rerank=rerank,
                             gallery_chunk=gallery_chunk)


def family_map(data: RdrData, q: Features, g: Features) -> float | None:
    """mAP when each query is ranked only against gallery images of its own look-alike family."""
    if data.synth is None:
        return None
    qf = np.array([data.family_of(int(p)) for p in q.pids])
    gf = np.array([data.family_of(int(p)) for p in g.pids])
    dist = torch.cdist(q.feats, g.feats)
    dist[torch.as_tensor(qf[:, None] != gf[None, :])] = float("inf")
    from reidlib.evaluation.rank import evaluate

    return float(evaluate(dist, q.pids, g.pids, q.camids, g.camids).mAP)


def evaluate_model(model: nn.Module, cfg: RdrConfig, data: RdrData, which: str = "embedding"
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Retrieval metrics of a model at ``cfg.max_side``: ``(metrics, extra)``.

    ``metrics``: plain mAP/CMC, ``qe`` (query expansion + database augmentation, the paper's
    re-ranking), ``krr`` (k-reciprocal re-ranking, Zhong et al.) and ``family`` (SynthReID look-alikes).
    ``extra``: per-query AP of the plain ranking (for the ranked-list figure).
    """
    tf = test_transform(cfg)
    q = extract(model, data, data.splits.query, tf, which, desc="query")
    g = extract(model, data, data.splits.gallery, tf, which, desc="gallery")
    plain = _rank(q, g)
    metrics = rank_metrics(plain)
    qe_q, qe_g = query_expansion(q.feats, g.feats, cfg.qe_k_query, cfg.qe_k_db)
    metrics["qe"] = {k: v for k, v in rank_metrics(_rank(q, g, qe_q, qe_g)).items() if k != "cmc"}
    metrics["krr"] = {k: v for k, v in rank_metrics(_rank(q, g, rerank=True)).items() if k != "cmc"}
    fam = family_map(data, q, g)
    if fam is not None:
        metrics["family"] = {"mAP": fam}
    extra = {"ap": [float(a) for a in plain.ap], "query_index": [int(i) for i in plain.query_index]}
    return metrics, extra


# ----------------------------------------------------------------------------------------- runs


@dataclass
class RdrRun:
    """A finished run: its results record, config and trained model (eval mode, on the CPU)."""

    name: str
    config: RdrConfig
    record: RunRecord
    model: GlobalDescriptor

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record.metrics


@dataclass
class RunContext:
    """Where and how runs execute, and the stage-1 networks already trained in this session."""

    data: RdrData
    device: str = "cpu"
    reuse: bool = False
    results_root: str | os.PathLike | None = None
    runs_dir: str | os.PathLike | None = None
    classifiers: dict[str, GlobalDescriptor] = field(default_factory=dict)


def _folder(ctx: RunContext, cfg: RdrConfig, name: str) -> Path:
    return runs_root(ctx.runs_dir) / CHAPTER / cfg.scale / name


def _load_weights(model: nn.Module, path: Path) -> nn.Module:
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def classifier_for(cfg: RdrConfig, ctx: RunContext) -> GlobalDescriptor:
    """Stage 1 of ``cfg``: trained once per depth (and stage-1 settings), stored as its own run
    ``classification_r<depth>`` with the retrieval metrics of its pooled features."""
    key = repr(sorted(classification_key(cfg).items()))
    if key in ctx.classifiers:
        return ctx.classifiers[key]
    name = classification_run_name(cfg)
    folder = _folder(ctx, cfg, name)
    weights = folder / "model.pt"
    trained: dict[str, GlobalDescriptor] = {}

    def train_fn() -> RunOutcome:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        model, history = train_classifier(cfg, ctx.data, folder, ctx.device)
        torch.save(model.state_dict(), weights)
        trained["model"] = model.cpu().eval()
        metrics, _ = evaluate_model(trained["model"], cfg, ctx.data, which="pooled")
        return RunOutcome(metrics=metrics, history=history)

    config = classification_key(cfg) | {"eval_max_side": cfg.max_side}
    record = run_or_reuse(CHAPTER, name, cfg.scale, config, train_fn, reuse=ctx.reuse and weights.is_file(),
                          dataset=ctx.data.name, seed=cfg.seed, root=ctx.results_root, device=ctx.device)
    if record.reused:
        trained["model"] = _load_weights(build_model(cfg, ctx.data.num_classes), weights)
    ctx.classifiers[key] = trained["model"]
    return trained["model"]


def run_rdr(name: str, cfg: RdrConfig, ctx: RunContext) -> RdrRun:
    """Train (stage 1 if needed, then stage 2), evaluate and store run ``name`` -- or, with
    ``ctx.reuse``, load a finished run with the same config whose weights are still on disk."""
    folder = _folder(ctx, cfg, name)
    weights = folder / "model.pt"
    trained: dict[str, GlobalDescriptor] = {}

    def train_fn() -> RunOutcome:
        classifier = classifier_for(cfg, ctx) if cfg.cls_pretrain else None
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        model, history = train_ranking(cfg, ctx.data, classifier, ctx.device)
        torch.save(model.state_dict(), weights)
        trained["model"] = model
        metrics, extra = evaluate_model(model, cfg, ctx.data)
        return RunOutcome(metrics=metrics, history=history, extra=extra)

    record = run_or_reuse(CHAPTER, name, cfg.scale, cfg, train_fn, reuse=ctx.reuse and weights.is_file(),
                          dataset=ctx.data.name, seed=cfg.seed, root=ctx.results_root, device=ctx.device)
    if record.reused:
        trained["model"] = _load_weights(build_model(cfg), weights)
    return RdrRun(name, cfg, record, trained["model"])


def run_all(base: RdrConfig, ctx: RunContext, names: Sequence[str] | None = None) -> dict[str, RdrRun]:
    """Every run of :data:`RUNS` (or ``names``) in order; prints one line per run."""
    out: dict[str, RdrRun] = {}
    for name in names if names is not None else RUNS:
        start = time.perf_counter()
        run = run_rdr(name, run_config(name, base), ctx)
        m = run.metrics
        print(f"{name:>18}: mAP {100 * m['mAP']:5.1f}  rank-1 {100 * m['rank1']:5.1f}  "
              f"({'reused' if run.record.reused else f'{time.perf_counter() - start:.0f} s'})", flush=True)
        out[name] = run
    return out


def run_untrained(base: RdrConfig, ctx: RunContext) -> RunRecord:
    """The reference point every trained run must beat: the network of ``base`` with random weights (BN
    statistics estimated on training images, as for ``no_cls_pretrain``), evaluated as run ``untrained``."""

    def eval_fn() -> RunOutcome:
        seed_everything(base.seed)
        model = initial_model(base, ctx.data, None).to(ctx.device).eval()
        metrics, _ = evaluate_model(model, base, ctx.data)
        return RunOutcome(metrics=metrics)

    config = dataclasses.asdict(base) | {"untrained": True}
    return run_or_reuse(CHAPTER, "untrained", base.scale, config, eval_fn, reuse=ctx.reuse,
                        dataset=ctx.data.name, seed=base.seed, root=ctx.results_root, device=ctx.device)


def run_reranking(base: RdrRun, ctx: RunContext) -> dict[str, RunRecord]:
    """Table 4's re-ranking rows as evaluation-only runs of ``base``: ``<base>_qe`` (query expansion,
    the paper's) and ``<base>_krr`` (k-reciprocal re-ranking), whose top-level metrics are the
    re-ranked ones (so claims compare them with ``base`` on the same metric names)."""
    out = {}
    for suffix in ("qe", "krr"):
        cfg = base.config

        def eval_fn(suffix: str = suffix) -> RunOutcome:
            metrics = dict(base.metrics[suffix])
            return RunOutcome(metrics=metrics, extra={"evaluated_from": base.name, "reranking": suffix})

        config = dataclasses.asdict(cfg) | {"reranking": suffix}
        out[suffix] = run_or_reuse(CHAPTER, f"{base.name}_{suffix}", cfg.scale, config, eval_fn,
                                   reuse=ctx.reuse, dataset=ctx.data.name, seed=cfg.seed,
                                   root=ctx.results_root, device=ctx.device)
    return out


# ------------------------------------------------------------------------- Fig. 7: distractors


def distractor_counts(scale: str, gallery_size: int) -> list[int]:
    """Fig. 7's x axis: distractors added to the gallery. The paper goes from 0 to 500,000 on Market's
    19,732-image gallery (25x); ``cpu`` goes to 10x the SynthReID gallery, ``smoke`` to 1x."""
    factors = {"smoke": (0, 0.5, 1), "cpu": (0, 1, 2.5, 5, 10), "full": (0, 2.5, 5, 10, 25)}[scale]
    return [int(round(f * gallery_size)) for f in factors]


@torch.no_grad()
def distractor_features(model: nn.Module, cfg: RdrConfig, data: RdrData, count: int, chunk: int = 1024,
                        seed: int = 0) -> tuple[Tensor, np.ndarray]:
    """Descriptors ``(count, D)`` and cameras of ``count`` extra SynthReID distractors, rendered and
    described ``chunk`` at a time. The rendered uint8 images stay in ``data.distractor_cache`` for the
    next model (``count x H x W x 3`` bytes: 74 MB for 12,000 images at 64x32).

    Raises:
        NotImplementedError: real datasets (Market+500K is not wired in).
    """
    if data.synth is None:
        raise NotImplementedError("extra distractors are rendered for SynthReID only "
                                  "(Market+500K is not wired in)")
    from PIL import Image

    from reidlib.data.synthetic_distractors import iter_distractor_chunks

    tf = test_transform(cfg)
    model.eval()
    feats, cams = [], []
    key = (count, chunk, seed)
    if key not in data.distractor_cache:
        chunks = iter_distractor_chunks(data.synth, count, chunk, seed)
        data.distractor_cache[key] = [(images, camids) for images, _, camids in chunks]
    for images, camids in data.distractor_cache[key]:
        feats.append(descriptors(model, [tf(Image.fromarray(im)) for im in images]).cpu())
        cams.append(camids)
    if not feats:
        return torch.zeros((0, model.dim)), np.zeros(0, dtype=np.int64)
    return torch.cat(feats), np.concatenate(cams)


def run_distractors(base: RdrRun, ctx: RunContext, counts: Sequence[int], gallery_chunk: int = 2048
                    ) -> RunRecord:
    """Fig. 7 for run ``base``: mAP and rank-1 as ``counts`` distractors join the gallery, stored as
    ``distractors_<base>`` (metrics at 0 distractors on top, the curve under ``curve``). Ranking streams
    the gallery in blocks of ``gallery_chunk`` (:func:`reidlib.evaluation.evaluate_blocks`), so the
    query x gallery distance matrix is never held whole."""
    cfg = base.config

    def eval_fn() -> RunOutcome:
        tf = test_transform(cfg)
        q = extract(base.model, ctx.data, ctx.data.splits.query, tf, desc="query")
        g = extract(base.model, ctx.data, ctx.data.splits.gallery, tf, desc="gallery")
        extra_f, extra_c = distractor_features(base.model, cfg, ctx.data, max(counts), seed=cfg.seed + 1)
        curve = {}
        for n in counts:
            feats = torch.cat([g.feats, extra_f[:n]])
            pids = np.concatenate([g.pids, np.zeros(n, dtype=np.int64)])
            cams = np.concatenate([g.camids, extra_c[:n]])
            r = evaluate_features(q.feats, feats, q.pids, pids, q.camids, cams, gallery_chunk=gallery_chunk)
            curve[str(n)] = {"mAP": float(r.mAP), "rank1": float(r.rank1), "gallery": int(len(pids))}
        first = curve[str(counts[0])]
        return RunOutcome(metrics={"mAP": first["mAP"], "rank1": first["rank1"], "curve": curve},
                          extra={"evaluated_from": base.name, "counts": list(counts)})

    config = dataclasses.asdict(cfg) | {"distractor_counts": list(counts)}
    return run_or_reuse(CHAPTER, f"distractors_{base.name}", cfg.scale, config, eval_fn, reuse=ctx.reuse,
                        dataset=ctx.data.name, seed=cfg.seed, root=ctx.results_root, device=ctx.device)


# -------------------------------------------------------------- beyond the paper: attention on cues


def attention_items(data: RdrData, count: int) -> list[Any]:
    """``count`` SynthReID query samples (with cue masks), spread over identities."""
    if data.synth is None:
        raise NotImplementedError("attention scores need SynthReID's cue masks")
    by_pid: dict[int, list[Record]] = {}
    for r in data.splits.query:
        by_pid.setdefault(r.pid, []).append(r)
    chosen = [recs[0] for _, recs in sorted(by_pid.items())][:count]
    return [data.synth.render(r.path) for r in chosen]


def attention_scores(model: nn.Module, cfg: RdrConfig, items: Sequence[Any]):
    """Per-image scores of the implicit attention (Grad-CAM of the 50 strongest dimensions, Sec. 4.4)
    against SynthReID's masks (:func:`reidlib.explain.scores.explanation_scores`, ``"all"`` rows)."""
    from PIL import Image

    from reidlib.explain.scores import explanation_scores

    tf = test_transform(cfg)
    scores = explanation_scores(model, list(items), "gradcam", gradcam_target="implicit", implicit_k=50,
                                image_to_input=lambda im: tf(Image.fromarray(im)), progress=False)
    return scores[scores["map"] == "all"].reset_index(drop=True)


def run_attention(base: RdrRun, ctx: RunContext) -> dict[str, RunRecord]:
    """Where the implicit attention of ``base`` falls: stored as ``attention_<base>`` (shares of the
    Grad-CAM energy on identity cues, body and background) and ``attention_uniform`` (a uniform map, whose
    energy shares are the areas: the chance level)."""
    cfg = base.config
    cols = ("energy_cues", "energy_body", "energy_background", "area_cues", "area_body", "pointing_cues")

    def scores_fn() -> RunOutcome:
        table = attention_scores(base.model, cfg, attention_items(ctx.data, cfg.explain_images))
        metrics = {c: float(table[c].astype(float).mean()) for c in cols}
        metrics["cue_lift"] = metrics["energy_cues"] / metrics["area_cues"]
        return RunOutcome(metrics=metrics, extra={"evaluated_from": base.name, "images": len(table)})

    def uniform_fn() -> RunOutcome:
        items = attention_items(ctx.data, cfg.explain_images)
        area_cues = float(np.mean([(it.cues > 0).mean() for it in items]))
        body = float(np.mean([1 - _background_share(it) for it in items]))
        metrics = {"energy_cues": area_cues, "energy_body": body, "energy_background": 1 - body,
                   "area_cues": area_cues, "area_body": body, "cue_lift": 1.0}
        return RunOutcome(metrics=metrics, extra={"images": len(items)})

    config = dataclasses.asdict(cfg) | {"attention": "implicit-50"}
    common = {"dataset": ctx.data.name, "seed": cfg.seed, "root": ctx.results_root, "device": ctx.device}
    return {
        base.name: run_or_reuse(CHAPTER, f"attention_{base.name}", cfg.scale, config, scores_fn,
                                reuse=ctx.reuse, **common),
        "uniform": run_or_reuse(CHAPTER, "attention_uniform", cfg.scale,
                                {"explain_images": cfg.explain_images, "dataset": ctx.data.name,
                                 "scale": cfg.scale, "attention": "uniform"}, uniform_fn,
                                reuse=ctx.reuse, **common),
    }


def _background_share(item: Any) -> float:
    from reidlib.explain.scores import body_label_values

    body = np.isin(item.parts, body_label_values()) | (item.cues > 0)
    return float(1 - body.mean())


# ------------------------------------------------------------------------------------ tables


def results_table(scale: str, rows: Mapping[str, str], metrics: Sequence[str] = ("mAP", "rank1"),
                  root: str | os.PathLike | None = None):
    """Rows ``label -> run`` with the runs' metrics in percent (NaN where a run is missing)."""
    import pandas as pd

    from reidlib.results.store import list_runs, load_run, lookup_metric

    stored = set(list_runs(CHAPTER, scale, root))
    out = []
    for label, run in rows.items():
        row: dict[str, Any] = {"setting": label, "run": run}
        rec = load_run(CHAPTER, run, scale, root) if run in stored else None
        for m in metrics:
            row[m] = 100 * float(lookup_metric(rec.metrics, m)) if rec is not None else float("nan")
        out.append(row)
    return pd.DataFrame(out).set_index("setting")


def config_table(configs: Mapping[str, RdrConfig]) -> list[dict[str, Any]]:
    """Rows describing configs side by side (the chapter's parameter table)."""
    rows = []
    for label, c in configs.items():
        data = c.dataset + (f" ({c.synth_preset}, drawn at {c.render_height}x{c.render_width})"
                            if c.dataset == "synthreid" else "")
        rows.append({
            "setting": label,
            "dataset": data,
            "backbone": f"ResNet-{c.depth}" + ("" if c.base_width == 64 else f" at width {c.base_width}/64")
                        + (" ImageNet" if c.pretrained else " random init")
                        + f"; depths {'/'.join(map(str, c.depth_sweep))}",
            "descriptor": f"{c.pool} pooling, FC to {c.dim}, L2",
            "stage 1": f"{c.cls_epochs} epochs, {c.cls_size}x{c.cls_size} crops "
                       f"(area {c.cls_crop_scale[0]:g}-1), batch {c.cls_batch}, "
                       f"SGD {c.cls_lr:g} -> {c.cls_final_lr:g}",
            "stage 2": f"{c.iterations} updates x {c.batch_triplets} triplets, SGD {c.lr:g} halved every "
                       f"{c.half_life:g}, m = {c.margin:g}",
            "input M": f"{c.max_side} (sweep {'/'.join(map(str, c.size_sweep))})",
            "mining": f"{c.mining}: N = {c.pool_size}, k = {c.pool_updates}, top {c.num_hard}",
            "cut-out": f"{c.cutout}, max area {c.cutout_max_area:g}",
        })
    return rows
