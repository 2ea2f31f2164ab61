"""The stand-in for ImageNet at ``smoke`` and ``cpu`` scale: a narrow ResNet trunk pre-trained by identity
classification on a large SynthReID population that no chapter ever sees.

Every paper of the book starts from ImageNet weights, which cannot be downloaded here. Without them the
``cpu`` runs start from nothing: they are weak, and two seeds of one setting land points apart. So each
backbone the chapters use at those scales is first trained (IDE+BN: BN, global average pooling, a
bias-free classifier, cross-entropy) on the training identities of a SynthReID world drawn with its own
seed, :data:`POPULATION_SEED`. SynthReID draws every identity from its seed, so that world shares no
identity with any chapter's (``tests/recipes/test_pretrain.py`` checks the attributes).

The trunk is cached in ``<repo>/.cache/pretrain/<name>-<key>/`` (``$REIDLIB_CACHE`` overrides the root)
as ``trunk.pt`` (the backbone's state dict) and ``record.json`` (config, key, the file's SHA-256, wall time,
history, provenance). :func:`trunk_file` reuses it when the key of the config matches and the file's hash
is the recorded one; a corrupt or incomplete cache is rebuilt with a message, never loaded. A results file
``results/pretrain/<scale>/<name>.json`` (committed) carries the same record for the book.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reidlib.atomic import atomic_write, atomic_write_json
from reidlib.data.dataset import ImageDataset
from reidlib.data.synthetic import PRESETS, SynthReID, SynthReIDConfig
from reidlib.data.transforms import build_train_transform
from reidlib.engine.config import OptimizerConfig, ScheduleConfig, TrainConfig
from reidlib.engine.seeding import make_generator, seed_everything
from reidlib.engine.trainer import Trainer
from reidlib.losses.cross_entropy import IdentityLoss
from reidlib.models.backbone import FULL_WIDTH, NARROW_DEPTHS, build_backbone
from reidlib.models.baseline import IDEBN
from reidlib.results.paths import repo_root
from reidlib.results.provenance import collect_provenance
from reidlib.results.store import save_run, to_jsonable
from reidlib.scale import SCALES

CACHE_ENV = "REIDLIB_CACHE"
CHAPTER = "pretrain"
TRUNK_FILE = "trunk.pt"
RECORD_FILE = "record.json"
#: SynthReID seed of the pre-training population. Chapters draw their worlds with small seeds (0-9).
POPULATION_SEED = 7919


def population_preset(name: str) -> SynthReIDConfig:
    """The training side of SynthReID preset ``name`` (``large``: 1,500 identities, 25,872 images), with a
    token test side: the population is only ever trained on."""
    base = PRESETS[name]
    return dataclasses.replace(base, name=f"{name}-pretrain", num_test_ids=1, num_query=1,
                               num_gallery_test=2, num_distractors=0, num_junk=0)


@dataclass(frozen=True)
class PretrainConfig:
    """One pre-trained trunk.

    Attributes:
        scale: ``smoke`` or ``cpu`` (``full`` uses ImageNet weights).
        depth, base_width: the narrow ResNet (:func:`reidlib.models.backbone.build_backbone`).
        population: SynthReID preset whose training side is the population.
        population_seed: the seed that world is drawn with (never a chapter's).
        height, width: render and input size in pixels.
        epochs, batch_size, lr, weight_decay, lr_milestones, lr_gamma: Adam with step decays (epochs
            counted from 0).
        label_smoothing: epsilon of the cross-entropy.
        pad: zero padding (pixels) before the random crop; flips are always on.
        seed: initialisation and data order.
        cpu_bf16: train under bfloat16 autocast on the CPU
            (``cpu_bf16`` of :class:`reidlib.engine.config.TrainConfig`).
    """

    scale: str = "cpu"
    depth: int = 18
    base_width: int = 16
    population: str = "large"
    population_seed: int = POPULATION_SEED
    height: int = 128
    width: int = 64
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    lr_milestones: tuple[int, ...] = (15,)
    lr_gamma: float = 0.1
    label_smoothing: float = 0.1
    pad: int = 6
    seed: int = 0
    cpu_bf16: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_milestones", tuple(self.lr_milestones))
        if self.scale not in SCALES:
            raise ValueError(f"PretrainConfig.scale={self.scale!r}: expected one of {SCALES}")
        if self.base_width == FULL_WIDTH or self.depth not in NARROW_DEPTHS:
            raise ValueError(f"PretrainConfig: a narrow ResNet is pre-trained here (depth in "
                             f"{sorted(NARROW_DEPTHS)}, base_width != {FULL_WIDTH}); got depth={self.depth}, "
                             f"base_width={self.base_width} (width {FULL_WIDTH} loads ImageNet weights)")
        if self.population not in PRESETS:
            raise ValueError(f"PretrainConfig.population={self.population!r}: expected one of "
                             f"{sorted(PRESETS)}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(f"PretrainConfig: epochs >= 1 and batch_size >= 2, got {self.epochs}, "
                             f"{self.batch_size}")

    @property
    def name(self) -> str:
        """``resnet<depth>w<width>`` (one trunk per backbone of a scale)."""
        return f"resnet{self.depth}w{self.base_width}"

    def as_dict(self) -> dict[str, Any]:
        """The fields that define the trunk (what its key hashes)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.compare} | {
            "lr_milestones": list(self.lr_milestones)}

    @property
    def key(self) -> str:
        """12 hex digits of the SHA-1 of :meth:`as_dict`: equal keys, equal trunks."""
        text = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


#: The pre-training of each scale for the chapters' default backbone (quarter-width ResNet-18 at cpu);
#: :func:`trunk_config` changes depth and width. ``smoke`` takes seconds on the ``tiny`` population. At
#: ``cpu``, 20 epochs instead of 14 (LR step after 15 instead of 10) lifted both chapter baselines over
#: three seeds (in float32, before ``cpu_bf16``): CAMA's IDE+BN from 38.7 +- 0.7 to 41.3 +- 0.9 mAP, Re-ID
#: done right's main run from 31.4 +- 0.5 to 33.2 +- 0.5 (drawn at 64x32 and up-scaled then; at the
#: trunk's 128x64, as now, 41.8 +- 0.4). The ResNet-18 trunk is compute-bound on 2 cores (~880 img/s in
#: the run against ~930 for the network alone). Progressive resizing, tried to make it cheaper (epochs 1-16
#: on 64x32 images, 17-20 on 128x64, batch-wise augmentation), took 421 s instead of 617 s but cost the
#: fine-tuned baselines about 9 points: CAMA's IDE+BN 31.8 +- 0.3 mAP over three seeds, Re-ID done
#: right's main run 31.6 (seed 0); the trunk never recovered from the change of size (train accuracy 86%
#: after it against 92%).
SCALE_CONFIGS: dict[str, PretrainConfig] = {
    "smoke": PretrainConfig(scale="smoke", base_width=8, population="tiny", height=64, width=32, epochs=1,
                            batch_size=16, lr_milestones=(), pad=4),
    "cpu": PretrainConfig(scale="cpu", cpu_bf16=True),
}


#: ``(depth, base_width)`` of every trunk the chapters load at each scale (their configs with
#: ``pretrained`` and a narrow ResNet; ``tests/recipes/test_pretrain.py`` checks the list against them):
#: what ``python -m reidlib pretrain`` and ``make book`` build first. Re-ID done right's Table 3b trains
#: ResNet-10 and ResNet-34 next to the chapters' ResNet-18, each from its own trunk (the paper's depths all
#: start from ImageNet; from random weights stage 2 alone stays at chance and the sweep tests nothing).
CHAPTER_TRUNKS: dict[str, tuple[tuple[int, int], ...]] = {
    "smoke": ((18, 8), (10, 8)),
    "cpu": ((18, 16), (10, 16), (34, 16)),
}


def chapter_trunks(scale: str) -> list[PretrainConfig]:
    """The pre-trainings of :data:`CHAPTER_TRUNKS` at ``scale``.

    Raises:
        ValueError: a scale without pre-training (``full`` starts from ImageNet).
    """
    _check_scale(scale)
    return [trunk_config(scale, depth, width) for depth, width in CHAPTER_TRUNKS[scale]]


def trunk_config(scale: str, depth: int, base_width: int) -> PretrainConfig:
    """The pre-training of ``scale`` for a ResNet of ``depth`` and ``base_width``.

    Raises:
        ValueError: a scale without pre-training (``full`` starts from ImageNet).
    """
    _check_scale(scale)
    return dataclasses.replace(SCALE_CONFIGS[scale], depth=depth, base_width=base_width)


def _check_scale(scale: str) -> None:
    if scale not in SCALE_CONFIGS:
        raise ValueError(f"no SynthReID pre-training at scale {scale!r} (scales with one: "
                         f"{sorted(SCALE_CONFIGS)}; {FULL_WIDTH}-wide ResNets load ImageNet weights)")


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$REIDLIB_CACHE``, else ``<repo>/.cache`` (git-ignored); trunks go in ``pretrain/``."""
    if root is not None:
        return Path(root)
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env) if env else repo_root() / ".cache"


def cache_folder(cfg: PretrainConfig, root: str | os.PathLike | None = None) -> Path:
    """``<cache>/pretrain/<scale>-<name>-<key>``."""
    return cache_root(root) / CHAPTER / f"{cfg.scale}-{cfg.name}-{cfg.key}"


def population(cfg: PretrainConfig) -> SynthReID:
    """The pre-training world of ``cfg`` (not yet rendered)."""
    return SynthReID(population_preset(cfg.population), seed=cfg.population_seed, height=cfg.height,
                     width=cfg.width)


_RENDERED: dict[tuple[str, int, int, int], SynthReID] = {}


def rendered_population(cfg: PretrainConfig) -> SynthReID:
    """:func:`population` with its training images rendered into memory, kept for the next trunk of the same
    population and size in this process (the trunks of a scale share one world: rendered once, not per
    depth). One world is kept at a time: 0.6 GB at ``cpu``."""
    key = (cfg.population, cfg.population_seed, cfg.height, cfg.width)
    if key not in _RENDERED:
        _RENDERED.clear()
        world = population(cfg)
        world.precache(("train",), progress=True)
        _RENDERED[key] = world
    return _RENDERED[key]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_problem(cfg: PretrainConfig, root: str | os.PathLike | None = None) -> str | None:
    """Why the cached trunk of ``cfg`` cannot be used (``None``: it can; ``"missing"``: never built)."""
    folder = cache_folder(cfg, root)
    trunk, record_path = folder / TRUNK_FILE, folder / RECORD_FILE
    if not trunk.is_file() and not record_path.is_file():
        return "missing"
    if not record_path.is_file():
        return f"{record_path} is missing"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as err:
        return f"{record_path} is unreadable ({err})"
    if not isinstance(record, dict) or record.get("key") != cfg.key:
        return f"{record_path} holds key {record.get('key') if isinstance(record, dict) else None!r}, " \
               f"not {cfg.key!r}"
    if not trunk.is_file():
        return f"{trunk} is missing"
    if _sha256(trunk) != record.get("sha256"):
        return f"{trunk} does not match the SHA-256 in {record_path} (truncated or overwritten)"
    return None


def read_record(cfg: PretrainConfig, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The cache record of ``cfg``'s trunk (config, key, sha256, wall_time_s, history, provenance)."""
    return json.loads((cache_folder(cfg, root) / RECORD_FILE).read_text())


def pretrain(cfg: PretrainConfig, root: str | os.PathLike | None = None,
             results_root: str | os.PathLike | None = None, device: str = "cpu") -> Path:
    """Train ``cfg``'s trunk now and store it (cache folder and results file); returns ``trunk.pt``.

    The run folder ``<cache folder>/run`` keeps the trainer's ``latest.pt``, so a crash resumes there.
    """
    folder = cache_folder(cfg, root)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    world = rendered_population(cfg)
    splits = world.splits
    transform = build_train_transform(cfg.height, cfg.width, flip=True, pad=cfg.pad)
    dataset = ImageDataset(splits.train, transform, image_source=world.load_image)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                         generator=make_generator(cfg.seed))
    seed_everything(cfg.seed)
    model = IDEBN(splits.num_train_pids, backbone=build_backbone(cfg.depth, cfg.base_width, last_stride=2))
    schedule = ScheduleConfig(kind="multistep" if cfg.lr_milestones else "constant",
                              milestones=list(cfg.lr_milestones), gamma=cfg.lr_gamma,
                              warmup=1 if cfg.epochs > 1 else 0,
                              warmup_start_factor=0.1, per_iteration=True)
    train_cfg = TrainConfig(epochs=cfg.epochs, optimizer=OptimizerConfig(name="adam", lr=cfg.lr,
                                                                         weight_decay=cfg.weight_decay),
                            schedule=schedule, seed=cfg.seed, progress="line", channels_last=True,
                            cpu_bf16=cfg.cpu_bf16)
    print(f"Pre-training {cfg.name} ({cfg.scale}, key {cfg.key}) on {len(splits.train):,} images of "
          f"{splits.num_train_pids} SynthReID identities (seed {cfg.population_seed}), {cfg.epochs} epochs")
    trainer = Trainer(model, IdentityLoss(cfg.label_smoothing), loader, train_cfg, folder / "run",
                      device=device, record={"pretrain_config": cfg.as_dict()})
    history = trainer.fit_or_resume().to_list()
    wall = time.perf_counter() - start
    trunk = folder / TRUNK_FILE
    state = {k: v.detach().cpu() for k, v in model.backbone.state_dict().items()}
    atomic_write(trunk, lambda fh: torch.save(state, fh))
    last = history[-1] if history else {}
    record = {"key": cfg.key, "name": cfg.name, "config": cfg.as_dict(), "sha256": _sha256(trunk),
              "wall_time_s": round(wall, 3), "images": len(splits.train),
              "identities": splits.num_train_pids, "history": to_jsonable(history, "history"),
              "provenance": collect_provenance(device)}
    atomic_write_json(folder / RECORD_FILE, record)
    metrics = {"train_acc": float(last.get("acc", float("nan"))), "train_loss": float(last.get("loss", 0.0))}
    save_run(CHAPTER, cfg.name, cfg.scale, metrics, cfg.as_dict(), dataset=f"synthreid_{cfg.population}",
             seed=cfg.seed, wall_time_s=wall, history=history,
             extra={"key": cfg.key, "sha256": record["sha256"], "images": record["images"],
                    "identities": record["identities"], "population_seed": cfg.population_seed},
             root=results_root, device=device)
    shutil.rmtree(folder / "run", ignore_errors=True)
    print(f"Pre-trained {cfg.name} in {wall:.0f} s: {trunk}")
    return trunk


def trunk_file(cfg: PretrainConfig, root: str | os.PathLike | None = None,
               results_root: str | os.PathLike | None = None, device: str = "cpu") -> Path:
    """``trunk.pt`` of ``cfg``: the cached one when its key and hash match, else trained now (a corrupt
    cache is reported and rebuilt)."""
    problem = cache_problem(cfg, root)
    if problem is None:
        return cache_folder(cfg, root) / TRUNK_FILE
    if problem != "missing":
        print(f"Pre-trained trunk cache unusable: {problem}; training it again")
        for name in (TRUNK_FILE, RECORD_FILE):
            (cache_folder(cfg, root) / name).unlink(missing_ok=True)
    return pretrain(cfg, root, results_root, device)


def backbone_weights(scale: str, depth: int, base_width: int, pretrained: bool,
                     device: str = "cpu") -> bool | Path:
    """What :func:`~reidlib.models.backbone.build_backbone` gets as ``pretrained`` for a chapter's
    backbone: ImageNet (``True``) at width 64, the SynthReID trunk file of ``scale`` for a narrow ResNet,
    ``False`` when ``pretrained`` is false."""
    if not pretrained:
        return False
    if base_width == FULL_WIDTH:
        return True
    return trunk_file(trunk_config(scale, depth, base_width), device=device)


def trunk_key(scale: str, depth: int, base_width: int, pretrained: bool) -> str | None:
    """The key of the trunk a chapter config loads (``None``: ImageNet or random init): stored with its
    runs, so a run is reused only with the same trunk."""
    if not pretrained or base_width == FULL_WIDTH or scale not in SCALE_CONFIGS:
        return None
    return trunk_config(scale, depth, base_width).key
