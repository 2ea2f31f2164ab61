"""Recipe of seed 000 (CAMA): configs per scale, the runs behind every table and figure, the model and
loss of each run, its evaluation and the explanation scores stored with it.

One :class:`CamaConfig` describes one training run. :func:`config_for` gives the config of a scale
(``smoke`` / ``cpu`` / ``full``); :data:`RUNS` lists the runs of the chapter as overrides of it, shared
between tables where the paper's settings coincide (the 3-branch CAMA of Table 4 is also Fig. 6's
``N = 3`` point and Table 5's "all branches"). :func:`run_cama` trains one run (or reuses a finished
one), evaluates it and writes ``results/cama/<scale>/<run>.json``; run folders, seeding, reuse and
results files are the chapter contract's (:mod:`reidlib.recipes.chapter`).

The paper's training recipe (Sec. 4.2): ImageNet ResNet-50 without the last stride, 256x128 inputs,
random crop and flip, Adam, batch 32; first 10 epochs train only the classifiers ``W^i`` while the LR
rises from 3e-6 to 3e-4; then 50 epochs of the whole model at 3e-4, times 0.1 every 20 epochs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from reidlib.data.records import Record, one_per_identity
from reidlib.data.transforms import build_test_transform
from reidlib.engine.callbacks import FreezeParameters, PeriodicEvaluation
from reidlib.engine.config import OptimizerConfig, ScheduleConfig, TrainConfig
from reidlib.engine.extract import Features, extract_features
from reidlib.engine.trainer import Trainer
from reidlib.evaluation.distance import pairwise_distance
from reidlib.evaluation.rank import RankResult, evaluate
from reidlib.losses.oap import (
    OAP_MODES,
    CamaLoss,
    k_from_fraction,
    overlapped_activation_penalty,
    target_class_maps,
)
from reidlib.models.backbone import NARROW_DEPTHS, build_backbone
from reidlib.models.cama import CAMA, select_branches
from reidlib.recipes import chapter
from reidlib.recipes.chapter import ChapterConfig, ChapterData, ChapterRun, InputSizes, RunContext
from reidlib.results.store import RunRecord

CHAPTER = "cama"
#: k of Eq. 5 as a share of the map's cells: the issue's 13 of the paper's 16x8 = 128 cells.
PAPER_K_FRACTION = 13 / 128
#: OAP gradient variant used by the CAMA runs: at N = 3, ``ordered`` had the higher mAP with the ``cpu``
#: config as committed (8 epochs), ``symmetric`` in earlier executions with 10 epochs; every margin was within
#: the seed spread, so this is weak evidence either way. The chapter trains both (``cama_n3`` vs
#: ``cama_n3_<other>``) and its notebook shows the comparison from the committed results files.
DEFAULT_OAP_MODE = "ordered"
#: Fig. 5's sweep, as shares of the map's cells (0.40 is well past the paper's 20% cliff).
K_SWEEP_FRACTIONS: tuple[float, ...] = (0.03, PAPER_K_FRACTION, 0.20, 0.40)
#: Fig. 6's sweep over the number of branches (N = 1 is IDE+BN).
BRANCH_SWEEP: tuple[int, ...] = (1, 2, 3, 4)
#: Training seeds of every arm a claim compares, besides the config's own (0): a claim's verdict is the
#: interval of the paired difference over these three seeds (:mod:`reidlib.results.intervals`).
PAIRED_SEEDS: tuple[int, ...] = (1, 2)
#: The runs the claims of ``book/data/claims/cama.yaml`` compare (Table 5's test-branch runs follow
#: ``cama_n3``); each is trained with :data:`PAIRED_SEEDS` too. Sweep points no claim compares
#: (k = 3% and 20%, the other OAP variant) are trained with seed 0 only.
CLAIM_ARMS: tuple[str, ...] = ("ide_bn", "mltb_lid", "cama_n2", "cama_n3", "cama_n4", "cama_n2_kf40")


@dataclass
class CamaConfig(InputSizes, ChapterConfig):
    """Everything that defines one CAMA training run (stored with its results).

    The fields of :class:`~reidlib.recipes.chapter.ChapterConfig` (``scale``, ``dataset``,
    ``synth_preset``, ``seed``; SynthReID is drawn with ``seed`` at ``height`` x ``width``), and:

    Attributes:
        depth: ResNet depth of the backbone. pretrained: start from pre-trained weights: ImageNet (from
            disk; never downloaded) at ``base_width`` 64, the SynthReID trunk of the scale otherwise
            (:mod:`reidlib.recipes.pretrain`).
        base_width: channels of the first stage (64 = torchvision's ResNet; 16 = a quarter-width
            ResNet-18 for the CPU).
        last_stride: stride of stage 4 (1 as in PCB: 16x8 maps at 256x128).
        height, width: input size in pixels.
        num_branches: ``N`` (1 = IDE+BN).
        alpha: weight of L_oap in Eq. 8 (0 = "MltB + L_id").
        k_fraction: ``k`` of Eq. 5 as a share of the ``h*w`` cells (the paper: 13/128).
        oap_mode: ``"symmetric"`` or ``"ordered"`` gradients of Eq. 6 (see :mod:`reidlib.losses.oap`).
        test_branches: branches (0-based) of the test descriptor; ``None`` = all (Table 5 varies it).
        batch_size: images per batch (the paper: 32).
        warmup_epochs: first epochs that train only the classifiers, LR rising linearly.
        warmup_start_lr: LR at the first warm-up epoch (the paper: 3e-6).
        lr: base LR (the paper: 3e-4). epochs: total epochs, warm-up included (the paper: 10 + 50).
        lr_milestones: epochs (counted from 0, warm-up included) where the LR is multiplied by
            ``lr_gamma`` (the paper: 20 and 40 epochs after the warm-up).
        weight_decay: Adam's L2 penalty (not stated in the paper; 5e-4 is the common choice).
        pad: pixels of zero padding before the random crop ("standard random cropping").
        flip: random horizontal flips.
        eval_every: evaluate mAP/rank-1 every this many epochs for the history curves (0 = only at the end).
        explain_images: training (and query) images used for the CAM/RAM explanation scores.
    """

    depth: int = 18
    base_width: int = 64
    pretrained: bool = False
    last_stride: int = 1
    height: int = 128
    width: int = 64
    num_branches: int = 3
    alpha: float = 1.0
    k_fraction: float = PAPER_K_FRACTION
    oap_mode: str = DEFAULT_OAP_MODE
    test_branches: list[int] | None = None
    batch_size: int = 32
    warmup_epochs: int = 10
    warmup_start_lr: float = 3e-6
    lr: float = 3e-4
    epochs: int = 60
    lr_milestones: list[int] = field(default_factory=lambda: [30, 50])
    lr_gamma: float = 0.1
    weight_decay: float = 5e-4
    pad: int = 10
    flip: bool = True
    eval_every: int = 0
    explain_images: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_branches < 1:
            raise ValueError(f"num_branches must be >= 1, got {self.num_branches}")
        if self.oap_mode not in OAP_MODES:
            raise ValueError(f"oap_mode {self.oap_mode!r} unknown; expected one of {OAP_MODES}")
        if not 0 < self.k_fraction <= 1:
            raise ValueError(f"k_fraction must be in (0, 1], got {self.k_fraction}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}), got {self.warmup_epochs}")
        if self.base_width != 64 and self.depth not in NARROW_DEPTHS:
            raise ValueError(f"base_width={self.base_width} needs depth in {sorted(NARROW_DEPTHS)}")
        if self.height % 16 or self.width % 16:
            raise ValueError(f"height and width must be multiples of 16, got {self.height}x{self.width}")
        if self.test_branches is not None:
            bad = [b for b in self.test_branches if not 0 <= b < self.num_branches]
            if bad or not self.test_branches:
                raise ValueError(f"test_branches {self.test_branches} must index 0..{self.num_branches - 1}")


    @property
    def k(self) -> int:
        """``k`` of Eq. 5 in cells of this config's maps."""
        h, w = self.map_size
        return k_from_fraction(self.k_fraction, h * w)


#: The configs of the three scales. ``cpu`` starts from the SynthReID trunk (no ImageNet weights can be
#: downloaded; :mod:`reidlib.recipes.pretrain`) and fine-tunes 6 epochs without a classifier-only phase:
#: in single-seed trials on IDE+BN, longer fine-tuning, a lower LR or a classifier warm-up did not raise
#: mAP (a longer pre-training of the trunk did: :data:`reidlib.recipes.pretrain.SCALE_CONFIGS`). A
#: quarter-width ResNet-18 at 128x64 trains at ~400 images/s on 2 cores (N = 1) to ~250 (N = 4) in
#: channels-last and float32; ``cpu_bf16`` (bf16 autocast) adds a third or more.
SCALE_CONFIGS: dict[str, CamaConfig] = {
    "smoke": CamaConfig(scale="smoke", synth_preset="tiny", base_width=8, pretrained=True, height=64,
                        width=32, batch_size=16, warmup_epochs=1, warmup_start_lr=3e-5, lr=1e-3, epochs=2,
                        lr_milestones=[], explain_images=8),
    "cpu": CamaConfig(scale="cpu", cpu_bf16=True, synth_preset="small", base_width=16, pretrained=True,
                      height=128, width=64,
                      batch_size=32, warmup_epochs=0, warmup_start_lr=3e-5, lr=1e-3, epochs=6,
                      lr_milestones=[4], explain_images=48),
    "full": CamaConfig(scale="full", synth_preset="market", depth=50, pretrained=True, height=256,
                       width=128, batch_size=32, warmup_epochs=10, warmup_start_lr=3e-6, lr=3e-4,
                       epochs=60, lr_milestones=[30, 50], eval_every=10, explain_images=256,
                       device_augment=True),
}


def config_for(scale: str | None = None, **overrides: Any) -> CamaConfig:
    """The config of ``scale`` (``$REIDLIB_SCALE`` wins) with ``overrides``
    (:func:`reidlib.recipes.chapter.config_for`)."""
    return chapter.config_for(SCALE_CONFIGS, scale, **overrides)


def k_run_name(fraction: float) -> str:
    """Run name of Fig. 5's point at ``fraction`` (the default k is the plain ``cama_n2``)."""
    if abs(fraction - PAPER_K_FRACTION) < 1e-9:
        return "cama_n2"
    return f"cama_n2_kf{round(100 * fraction):02d}"


def other_mode(mode: str = DEFAULT_OAP_MODE) -> str:
    """The OAP variant that is not ``mode``."""
    return next(m for m in OAP_MODES if m != mode)


def _runs() -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {
        "ide_bn": {"num_branches": 1, "alpha": 0.0},
        "mltb_lid": {"num_branches": 3, "alpha": 0.0},
    }
    for n in BRANCH_SWEEP[1:]:
        runs[f"cama_n{n}"] = {"num_branches": n}
    for frac in K_SWEEP_FRACTIONS:
        runs.setdefault(k_run_name(frac), {"num_branches": 2, "k_fraction": frac})
    runs[f"cama_n3_{other_mode()}"] = {"num_branches": 3, "oap_mode": other_mode()}
    return runs | chapter.seed_replicas(runs, CLAIM_ARMS, PAIRED_SEEDS)


#: Every training run of the chapter: name -> overrides of the scale's config.
RUNS: dict[str, dict[str, Any]] = _runs()
#: Table 5's evaluation-only runs: name -> test branches of the trained ``cama_n3``.
TEST_BRANCH_RUNS: dict[str, list[int]] = {"cama_n3_test_1": [0], "cama_n3_test_12": [0, 1]}
#: Table 4's rows: paper setting -> our run.
TABLE4_RUNS = {"IDE+BN": "ide_bn", "MltB+Lid": "mltb_lid", "MltB+Lid+Loap": "cama_n3"}


def run_config(name: str, base: CamaConfig) -> CamaConfig:
    """The config of run ``name`` of :data:`RUNS` on top of ``base`` (a scale's config)."""
    return chapter.run_config(RUNS, name, base)


# ------------------------------------------------------------------------------- model and training


def build_model(cfg: CamaConfig, num_classes: int) -> CAMA:
    """The CAMA model of ``cfg`` (``num_branches = 1`` is IDE+BN) over :func:`build_backbone`."""
    backbone = build_backbone(cfg.depth, cfg.base_width, chapter.backbone_weights(cfg), cfg.last_stride)
    return CAMA(num_classes=num_classes, num_branches=cfg.num_branches, test_branches=cfg.test_branches,
                backbone=backbone)


def train_loader(cfg: CamaConfig, data: ChapterData, device: torch.device | str = "cpu") -> DataLoader:
    """Shuffled batches of ``cfg.batch_size`` whose order depends on ``cfg.seed`` only, augmented as the
    paper says (random crop after ``cfg.pad`` pixels of padding, flips), with PIL or batch-wise on
    ``device`` (``cfg.device_augment``)."""
    return chapter.augmented_loader(data, cfg.height, cfg.width, cfg.batch_size, cfg.seed, flip=cfg.flip,
                                    pad=cfg.pad, batch_wise=cfg.device_augment, device=device)


def test_loader(cfg: CamaConfig, data: ChapterData, records: Sequence[Record]) -> DataLoader:
    """``records`` in order through the test transform (resize, normalise)."""
    return chapter.test_loader(data, records, build_test_transform(cfg.height, cfg.width))


def is_classifier_parameter(name: str) -> bool:
    """True for the ``W^i`` of Fig. 2 (what the paper's first epochs train)."""
    return name.startswith("classifiers.")


def classifier_warmup(model: CAMA, epochs: int) -> FreezeParameters:
    """Trainer callback of the paper's first phase: only the classifiers ``W^i`` train for ``epochs``.

    BatchNorm layers stay in training mode, so the new per-branch BNs estimate their statistics
    during the phase (their affine parameters stay at 1 and 0).
    """
    return FreezeParameters(model, trainable=is_classifier_parameter, epochs=epochs, freeze_bn=False)


def train_config(cfg: CamaConfig) -> TrainConfig:
    """The engine's :class:`TrainConfig` of ``cfg``: Adam, linear warm-up, step decays."""
    schedule = ScheduleConfig(
        kind="multistep" if cfg.lr_milestones else "constant",
        milestones=list(cfg.lr_milestones),
        gamma=cfg.lr_gamma,
        warmup=cfg.warmup_epochs,
        warmup_start_factor=min(1.0, cfg.warmup_start_lr / cfg.lr),
    )
    return TrainConfig(epochs=cfg.epochs, optimizer=OptimizerConfig(name="adam", lr=cfg.lr,
                                                                    weight_decay=cfg.weight_decay),
                       schedule=schedule, seed=cfg.seed, progress="line", channels_last=True,
                       cpu_bf16=cfg.cpu_bf16)


def cama_loss(cfg: CamaConfig) -> CamaLoss:
    """Eq. 7-8 with ``cfg``'s ``alpha``, ``k`` and gradient variant."""
    return CamaLoss(k=cfg.k, alpha=cfg.alpha, mode=cfg.oap_mode)  # type: ignore[arg-type]


def train_model(model: CAMA, cfg: CamaConfig, data: ChapterData, out_dir: str | Path, device: str = "cpu",
                callbacks: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Train ``model`` as ``cfg`` says with the engine's :class:`Trainer` in ``out_dir`` (resuming from its
    ``latest.pt`` after a crash); returns the per-epoch history."""
    all_callbacks: list[Any] = [classifier_warmup(model, cfg.warmup_epochs)] if cfg.warmup_epochs else []
    if cfg.eval_every:
        evaluate_now = lambda t: _quick_metrics(t.model, cfg, data, device)  # noqa: E731
        all_callbacks.append(PeriodicEvaluation(evaluate_now, cfg.eval_every))
    all_callbacks.extend(callbacks)
    trainer = Trainer(model, cama_loss(cfg), train_loader(cfg, data, device), train_config(cfg), out_dir,
                      device=device, callbacks=all_callbacks,
                      record={"cama_config": dataclasses.asdict(cfg)})
    return trainer.fit_or_resume().to_list()


# --------------------------------------------------------------------------------------- evaluation


def extract(model: CAMA, loader: DataLoader, device: str = "cpu", desc: str = "extract") -> Features:
    """All-branch descriptors ``(N_images, N*d)``: each branch block L2-normalised (Sec. 3.3)."""
    test_branches = model.test_branches
    model.set_test_branches(range(model.num_branches))
    try:
        return extract_features(model, loader, device, flip=False, normalize=False, desc=desc)
    finally:
        model.set_test_branches(test_branches)


def rank(query: Features, gallery: Features, num_branches: int, branches: Sequence[int] | None = None,
         data: ChapterData | None = None) -> RankResult | None:
    """mAP/CMC with the descriptor of ``branches`` (default all); with ``data``, each query ranked only
    against its own look-alike family (:func:`reidlib.recipes.chapter.within_family`; ``None`` for real
    data)."""
    q, g = query.feats, gallery.feats
    if branches is not None:
        q, g = select_branches(q, num_branches, branches), select_branches(g, num_branches, branches)
    dist = pairwise_distance(q, g, "euclidean")
    if data is not None:
        return chapter.within_family(data, dist, query, gallery)
    return evaluate(dist, query.pids, gallery.pids, query.camids, gallery.camids)


def _features(model: CAMA, cfg: CamaConfig, data: ChapterData, device: str) -> tuple[Features, Features]:
    q = extract(model, test_loader(cfg, data, data.splits.query), device, "query")
    g = extract(model, test_loader(cfg, data, data.splits.gallery), device, "gallery")
    return q, g


def _quick_metrics(model: CAMA, cfg: CamaConfig, data: ChapterData, device: str) -> dict[str, float]:
    q, g = _features(model, cfg, data, device)
    result = rank(q, g, model.num_branches)
    return {"mAP": result.mAP, "rank1": result.rank1}


def evaluate_cama(model: CAMA, cfg: CamaConfig, data: ChapterData, device: str = "cpu"
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Retrieval metrics of a trained model: ``(metrics, extra)``.

    ``metrics`` holds the test descriptor's mAP/CMC (``model.test_branches``) and ``family`` (queries
    ranked only against their own look-alike family, SynthReID). ``extra`` holds per-branch and
    branch-subset metrics (Table 5) computed from the same features.
    """
    q, g = _features(model, cfg, data, device)
    n = model.num_branches
    metrics = rank(q, g, n, model.test_branches).metrics()
    family = rank(q, g, n, model.test_branches, data)
    if family is not None:
        metrics["family"] = {"mAP": family.mAP, "rank1": family.rank1}
    extra: dict[str, Any] = {"per_branch": {}, "prefix": {}}
    for b in range(n):
        r = rank(q, g, n, [b])
        extra["per_branch"][str(b + 1)] = {"mAP": r.mAP, "rank1": r.rank1}
        r = rank(q, g, n, list(range(b + 1)))
        extra["prefix"]["+".join(str(i + 1) for i in range(b + 1))] = {"mAP": r.mAP, "rank1": r.rank1}
    return metrics, extra


# ------------------------------------------------------------------------------ explanation scores


@torch.no_grad()
def explanation_metrics(model: CAMA, cfg: CamaConfig, data: ChapterData, device: str = "cpu"
                        ) -> dict[str, Any]:
    """CAM/RAM scores of a trained model, stored with its run.

    On ``cfg.explain_images`` training images (CAM of the true class, what L_oap sees) and as many
    query images (each image's own RAM, Eq. 10):

    * ``overlap``: ``cam_iou`` / ``ram_iou``, the mean pairwise IoU of the branches' top-k cells
      (k of ``cfg``), and ``oap``, the mean L_oap (Eq. 6) of the CAMs (multi-branch models only);
    * ``cues`` (SynthReID): ``cam_energy`` / ``ram_energy``, the share of the positive energy of the
      whole model's map (sum of branch CAMs; RAM of the full descriptor) on identity-cue pixels, and
      ``cue_area``, the cue pixels' share of the image (the energy share of a uniform map).
    """
    from reidlib.explain.maps import explanation_maps
    from reidlib.explain.scores import branch_overlap, cue_coverage, explanation_scores

    model = model.to(device).eval()
    tf = build_test_transform(cfg.height, cfg.width)
    train_recs = one_per_identity(data.splits.train, cfg.explain_images)
    query_recs = one_per_identity(data.splits.query, cfg.explain_images)
    images = torch.stack([tf(data.image_source(r.path)) for r in train_recs]).to(device)
    labels = torch.tensor([r.pid for r in train_recs], device=device)
    out = model(images)
    out_metrics: dict[str, Any] = {}
    maps = target_class_maps(out.feature_maps, torch.stack(out.class_weights), labels)
    if model.num_branches > 1:
        q_images = torch.stack([tf(data.image_source(r.path)) for r in query_recs]).to(device)
        ram = explanation_maps(model, q_images, "ram")
        ram_maps = torch.stack([ram[f"branch {i + 1}"] for i in range(model.num_branches)], dim=1)
        out_metrics["overlap"] = {
            "cam_iou": float(np.mean(branch_overlap(maps.cpu(), cfg.k))),
            "ram_iou": float(np.mean(branch_overlap(ram_maps.cpu(), cfg.k))),
            "oap": float(overlapped_activation_penalty(maps, cfg.k)),
        }
    if data.synth is not None:
        train_items = [data.synth.render(r.path) for r in train_recs]
        query_items = [data.synth.render(r.path) for r in query_recs]
        cam = explanation_scores(model, train_items, "cam", classes=[r.pid for r in train_recs],
                                 top_k=cfg.k, progress=False)
        ram_scores = explanation_scores(model, query_items, "ram", top_k=cfg.k, progress=False)
        cam_all, ram_all = cam[cam["map"] == "all"], ram_scores[ram_scores["map"] == "all"]
        out_metrics["cues"] = {
            "cam_energy": float(cam_all["energy_cues"].mean()),
            "ram_energy": float(ram_all["energy_cues"].mean()),
            "cue_area": float(cam_all["area_cues"].mean()),
            "cam_coverage": cue_coverage(maps.cpu(), [item.cues for item in train_items], cfg.k),
        }
    return out_metrics


# ----------------------------------------------------------------------------------------- runs


def context(data: ChapterData, device: str = "cpu", reuse: bool = False, **kwargs: Any) -> RunContext:
    """The chapter's :class:`~reidlib.recipes.chapter.RunContext` (``results_root``, ``runs_dir`` in
    ``kwargs``)."""
    return RunContext(CHAPTER, data, device=device, reuse=reuse, **kwargs)


def run_cama(name: str, cfg: CamaConfig, ctx: RunContext) -> ChapterRun[CamaConfig, CAMA]:
    """Train, evaluate and store run ``name`` with config ``cfg`` -- or, with ``ctx.reuse``, load the
    finished run with the same config (:func:`reidlib.recipes.chapter.train_run`).

    Writes ``results/cama/<scale>/<name>.json`` (metrics with the explanation scores, config, history,
    per-branch extras).
    """
    data, device = ctx.data, ctx.device

    def evaluate_fn(model: CAMA) -> tuple[dict[str, Any], dict[str, Any]]:
        metrics, extra = evaluate_cama(model, cfg, data, device)
        metrics.update(explanation_metrics(model, cfg, data, device))
        return metrics, extra

    return chapter.train_run(ctx, name, cfg, build=lambda: build_model(cfg, data.num_classes),
                             train=lambda model, folder: train_model(model, cfg, data, folder, device),
                             evaluate=evaluate_fn)


def run_test_branches(base: ChapterRun[CamaConfig, CAMA], name: str, branches: Sequence[int],
                      ctx: RunContext) -> RunRecord:
    """Table 5: evaluate the trained ``base`` model with the descriptor of ``branches`` only and store it
    as run ``name`` (its config is the base config with ``test_branches``; no training)."""
    cfg = dataclasses.replace(base.config, test_branches=list(branches))
    model = base.model

    def eval_fn() -> tuple[dict[str, Any], dict[str, Any]]:
        previous = model.test_branches
        model.set_test_branches(branches)
        try:
            return evaluate_cama(model, cfg, ctx.data, ctx.device)
        finally:
            model.set_test_branches(previous)

    return chapter.evaluation_run(ctx, name, cfg, eval_fn, evaluated_from=base.name)


def run_all(base: CamaConfig, ctx: RunContext, names: Sequence[str] | None = None
            ) -> dict[str, ChapterRun[CamaConfig, CAMA]]:
    """Every run of :data:`RUNS` (or ``names``) in order, one log line each, then Table 5's
    evaluation-only runs of each seed of ``cama_n3`` (``cama_n3_test_1_seed1`` ...)."""
    runs = chapter.run_all(names if names is not None else RUNS,
                           lambda name: run_cama(name, run_config(name, base), ctx))
    for trained in [n for n in runs if n == "cama_n3" or n.startswith("cama_n3_seed")]:
        suffix = trained.removeprefix("cama_n3")
        for name, branches in TEST_BRANCH_RUNS.items():
            run_test_branches(runs[trained], f"{name}{suffix}", branches, ctx)
    return runs
