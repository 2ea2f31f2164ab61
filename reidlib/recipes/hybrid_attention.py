"""Recipe of seed 003 (hybrid attention with multiple resolution features): configs per scale, the runs
behind Tables 6-10, training with Eq. 4, the evaluation of each run and the scores stored with it.

One :class:`HybridAttentionConfig` describes one run; :func:`config_for` gives a scale's config and
:data:`RUNS` lists the runs as overrides of it. A run that serves several tables is trained once: the
full model ``hybrid`` is Table 6's last row, Table 7's "all components", Table 9's ``S+(c)+C`` and
Table 10's "all stages"; ``bmm`` (BaselineBMM: tricks + MPFE + MGO on stage 4) is Table 6's "+ MGO" row
and Table 9's first; ``tricks`` is Table 6's and Table 7's "+ Bag of Tricks". Run folders, seeding, reuse
and results files are the chapter contract's (:mod:`reidlib.recipes.chapter`).

**Readings** (the paper is silent or ambiguous; each is stated in the chapter):

1. *Every row trains with Eq. 4* (identity + triplet loss): Sec. 4.4 says all ablations "follow the same
   training settings". The bag of tricks (Sec. 4.4) is random erasing, label smoothing and the warm-up of
   Eq. 5; the baseline has none of them. Every row uses the stride-1 ResNet of Sec. 4.1.
2. *Which stages* (Table 6 and 9): BaselineBMM and Table 9's ``S`` and ``C`` rows use stage 4 only (the
   paper: "using the feature map of Stage 4 only"); Table 6's "+ SAM" fuses all stages with spatial
   attention before the concatenation (``S+(c)``: its numbers are not Table 9's ``S`` row), "+ CAM" adds
   channel attention after it (``S+(c)+C``, the paper's model). Table 7's single components act on stage 4
   only (SAM alone is ``S``, channel attention alone ``C``).
3. *Eq. 5 as printed* ramps the LR to 3e-4 over 10 epochs and then jumps to 0.01; we read it as the usual
   linear warm-up to the base LR (from 3e-4 / 0.01 of it), then halvings at epochs 60, 90 and 120.
4. *Test descriptor*: the parts' BN vectors concatenated and L2-normalised, Euclidean distance (the public
   code adds flipped images; we do not).

The cross-domain runs (Table 8) train on SynthReID's second rendering domain (``synth_domain="b"``) and
are tested on domain ``"a"``; the domain-``a`` baseline and full model are tested on ``"b"`` too
(``cross`` in their metrics): Table 8's first and last rows, both directions. Beyond the paper, the runs
of :data:`MISALIGNMENT_RUNS` are also tested with misaligned boxes (:data:`MISALIGNMENTS`;
:class:`reidlib.data.transforms.MisalignedBox`).
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

from reidlib.data.records import Record
from reidlib.data.synthetic import DOMAINS
from reidlib.data.transforms import build_test_transform
from reidlib.engine.config import OptimizerConfig, ScheduleConfig, TrainConfig
from reidlib.engine.extract import Features, extract_features
from reidlib.engine.trainer import Trainer
from reidlib.evaluation.features import evaluate_features
from reidlib.evaluation.rank import RankResult
from reidlib.losses.multi_part import TRIPLET_GROUPINGS, MultiPartLoss
from reidlib.models.backbone import NARROW_DEPTHS, build_backbone
from reidlib.models.hybrid_attention import (
    ATTENTION_ORDERS,
    GRANULARITIES,
    LOCAL_MODES,
    HybridAttentionNet,
    build_attention_plan,
)
from reidlib.recipes import chapter
from reidlib.recipes.chapter import ChapterConfig, ChapterData, ChapterRun, InputSizes, RunContext

CHAPTER = "hybrid_attention"
#: Training seeds of every arm a claim compares, besides the config's own (0).
PAIRED_SEEDS: tuple[int, ...] = (1, 2)
#: Beyond the paper: the test-time box jitter (:class:`reidlib.data.transforms.MisalignedBox`, a share
#: of the box size) at which the runs of :data:`MISALIGNMENT_RUNS` are tested again.
MISALIGNMENTS: tuple[float, ...] = (0.1, 0.2)


@dataclass
class HybridAttentionConfig(InputSizes, ChapterConfig):
    """Everything that defines one run of seed 003's network (stored with its results).

    The fields of :class:`~reidlib.recipes.chapter.ChapterConfig`, and:

    Attributes:
        synth_domain: SynthReID rendering domain trained and tested on (``"a"``; ``"b"`` for Table 8's
            other direction; :data:`reidlib.data.synthetic.DOMAINS`).
        depth, base_width, pretrained: the backbone (ImageNet ResNet-50 in the paper; at ``base_width`` <
            64 a narrow ResNet from the SynthReID trunk of the scale, :mod:`reidlib.recipes.pretrain`).
        last_stride: stride of stage 4 (1, Sec. 4.1: a 24x8 map at 384x128).
        height, width: input size in pixels (the fused map is ``height/16 x width/16``).
        stages: the stages MFF fuses (Table 10), increasing.
        attention: the attention order (Table 9, :data:`reidlib.models.hybrid_attention.ATTENTION_ORDERS`).
        local: ``"mgo"``, ``"pcb"`` or ``"global"`` (the baseline's single part).
        mpfe: MPFE heads (Sec. 3.4) instead of global average pooling and a classifier.
        num_stripes, granularity: MGO's stripes (6) and its reading (``"contiguous"``: 21 parts).
        sam_kernel, reduction: the spatial attention's kernel (7) and the channel attention's ``r`` (16),
            neither given by the paper.
        reduce_dim, feat_dim: MPFE's 1x1-conv and FC widths (256 and 512 in the paper).
        tricks: the bag of tricks (random erasing, label smoothing, warm-up; reading 1).
        label_smoothing, random_erasing, warmup_epochs: the tricks' settings (used when ``tricks``).
        triplet_margin: Eq. 4's triplet margin (1.0). triplet_on: its groups
            (:data:`reidlib.losses.multi_part.TRIPLET_GROUPINGS`; ``"levels"``: one per MGO level).
        batch_size, num_instances: ``P x K`` batches (64 = 16 x 4 in the paper and its code).
        optimizer, lr, momentum, nesterov, weight_decay: SGD 0.01, 0.9, 5e-4 in the paper.
        epochs, lr_milestones, lr_gamma: 150 epochs, halved at 60, 90, 120 (Eq. 5).
        pad, flip: random crop after ``pad`` pixels of padding, horizontal flips.
        explain_images: training images of the explanation scores.
    """

    synth_domain: str = "a"
    depth: int = 50
    base_width: int = 64
    pretrained: bool = True
    last_stride: int = 1
    height: int = 384
    width: int = 128
    stages: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    attention: str = "S+(c)+C"
    local: str = "mgo"
    mpfe: bool = True
    num_stripes: int = 6
    granularity: str = "contiguous"
    sam_kernel: int = 7
    reduction: int = 16
    reduce_dim: int = 256
    feat_dim: int = 512
    tricks: bool = True
    label_smoothing: float = 0.1
    random_erasing: float = 0.5
    warmup_epochs: float = 10
    triplet_margin: float = 1.0
    triplet_on: str = "levels"
    batch_size: int = 64
    num_instances: int = 4
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    epochs: int = 150
    lr_milestones: list[int] = field(default_factory=lambda: [60, 90, 120])
    lr_gamma: float = 0.5
    pad: int = 10
    flip: bool = True
    explain_images: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if self.synth_domain not in DOMAINS:
            raise ValueError(f"{name}.synth_domain {self.synth_domain!r} unknown; expected one of {DOMAINS}")
        if self.local not in LOCAL_MODES:
            raise ValueError(f"{name}.local {self.local!r} unknown; expected one of {LOCAL_MODES}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"{name}.granularity {self.granularity!r} unknown; expected one of "
                             f"{GRANULARITIES}")
        if self.triplet_on not in TRIPLET_GROUPINGS:
            raise ValueError(f"{name}.triplet_on {self.triplet_on!r} unknown; expected one of "
                             f"{TRIPLET_GROUPINGS}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"{name}.optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        build_attention_plan(self.attention, len(self.stages))  # raises with the paper's orders listed
        if self.base_width != 64 and self.depth not in NARROW_DEPTHS:
            raise ValueError(f"{name}: base_width={self.base_width} needs depth in {sorted(NARROW_DEPTHS)}")
        if self.height % 16 or self.width % 16:
            raise ValueError(f"{name}: height and width must be multiples of 16, got "
                             f"{self.height}x{self.width}")
        if self.local != "global" and self.map_size[0] < self.num_stripes:
            raise ValueError(f"{name}: a {self.height}x{self.width} input gives a fused map of "
                             f"{self.map_size[0]} rows, fewer than num_stripes={self.num_stripes}")
        if self.batch_size % self.num_instances or self.batch_size // self.num_instances < 2:
            raise ValueError(f"{name}: batch_size {self.batch_size} must be P x num_instances "
                             f"({self.num_instances}) with P >= 2")
        if self.epochs < 1 or not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"{name}: need epochs >= 1 and 0 <= warmup_epochs < epochs, got {self.epochs}, "
                             f"{self.warmup_epochs}")
        if not 0.0 <= self.random_erasing <= 1.0 or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"{name}: random_erasing must be in [0, 1] and label_smoothing in [0, 1), got "
                             f"{self.random_erasing}, {self.label_smoothing}")



#: The configs of the three scales. ``full`` is Sec. 4.1's recipe. ``cpu`` fine-tunes the quarter-width
#: SynthReID trunk (as the book's other chapters do) with Adam at 1e-3 for four epochs, the warm-up one
#: epoch and the LR x0.1 for the last; MPFE's widths are quartered with the backbone (3,840 -> 240 fused
#: channels; 256 -> 64, 512 -> 128). The input is 96x48, the smallest whose fused map (6x3) still has a
#: row per stripe, so every MGO part falls on whole rows as at 384x128 (24x8, four rows per stripe);
#: 128x64 would cut 8 rows into stripes of one or two. At 96x48 and four epochs the chapter's 37 runs are
#: planned for the book's 12-minute CPU budget; at 128x64 they took about twice as long, and five epochs
#: at 96x48 took 15 minutes.
SCALE_CONFIGS: dict[str, HybridAttentionConfig] = {
    "smoke": HybridAttentionConfig(
        scale="smoke", synth_preset="tiny", depth=18, base_width=8, height=96, width=32, reduce_dim=16,
        feat_dim=32, batch_size=16, optimizer="adam", lr=1e-3, epochs=1, warmup_epochs=0, lr_milestones=[],
        pad=4, explain_images=8),
    "cpu": HybridAttentionConfig(
        scale="cpu", cpu_bf16=True, synth_preset="small", depth=18, base_width=16, height=96, width=48,
        reduce_dim=64,
        feat_dim=128, batch_size=64, optimizer="adam", lr=1e-3, epochs=4, warmup_epochs=1,
        lr_milestones=[3], lr_gamma=0.1, pad=6, explain_images=48),
    "full": HybridAttentionConfig(scale="full", synth_preset="market", device_augment=True),
}


def config_for(scale: str | None = None, **overrides: Any) -> HybridAttentionConfig:
    """The config of ``scale`` (``$REIDLIB_SCALE`` wins) with ``overrides``
    (:func:`reidlib.recipes.chapter.config_for`)."""
    return chapter.config_for(SCALE_CONFIGS, scale, **overrides)


# ------------------------------------------------------------------------------------------ runs

_BASELINE = {"stages": [4], "attention": "none", "local": "global", "mpfe": False, "tricks": False}
_BMM = {"stages": [4], "attention": "none", "local": "mgo", "mpfe": True, "tricks": True}

#: Table 6: components added in turn (reading 2), paper row -> run.
TABLE6_RUNS = {"Baseline": "baseline", "+ Bag of Tricks": "tricks", "+ MPFE": "tricks_mpfe", "+ MGO": "bmm",
               "+ SAM": "bmm_sam", "+ CAM": "hybrid"}
#: Table 7: each component alone on the baseline, then everything with MGO vs with PCB.
TABLE7_RUNS = {"Baseline": "baseline", "Baseline + Tricks": "tricks", "Baseline + MGO": "baseline_mgo",
               "Baseline + MPFE": "baseline_mpfe", "Baseline + SAM": "baseline_sam",
               "Baseline + CAM": "baseline_ca", "All components, MGO": "hybrid",
               "All components, PCB instead of MGO": "hybrid_pcb"}
#: Table 10's stage sets.
STAGE_SETS: tuple[tuple[int, ...], ...] = ((1,), (2,), (3,), (4,), (1, 2), (1, 2, 3), (2, 3, 4), (1, 2, 3, 4))
#: Table 8: trained on domain ``b``, tested on ``a`` (the other direction is ``cross`` of the domain-``a``
#: baseline and full model).
DOMAIN_B_RUNS = {"Baseline": "baseline_b", "+ CAM": "hybrid_b"}
#: Runs also tested with misaligned boxes (beyond the paper): the baseline, PCB and MGO.
MISALIGNMENT_RUNS = ("baseline", "hybrid_pcb", "hybrid")
#: Runs whose maps are scored against SynthReID's cue and body masks (Fig. 8, the SAM maps).
EXPLAIN_RUNS = ("baseline", "hybrid")
#: The runs the claims of ``book/data/claims/hybrid_attention.yaml`` compare; trained with
#: :data:`PAIRED_SEEDS` too. Every other row is trained with seed 0 only (shown, not judged).
CLAIM_ARMS: tuple[str, ...] = ("baseline", "hybrid", "hybrid_pcb", "stages_3", "stages_4")


def order_run_name(order: str) -> str:
    """Run name of Table 9's row ``order``: ``bmm`` (no attention), ``hybrid`` (``S+(c)+C``), otherwise
    ``order_`` and the operations in order (``"C+(c)+S"`` -> ``order_ca_cat_sam``)."""
    if order == "none":
        return "bmm"
    if order == "S+(c)+C":
        return "hybrid"
    words = {"S": "sam", "C": "ca", "(c)": "cat"}
    return "order_" + "_".join(words[t] for t in order.split("+"))


def stages_run_name(stages: Sequence[int]) -> str:
    """Run name of Table 10's row ``stages``: ``hybrid`` for all four, ``stages_<digits>`` otherwise."""
    return "hybrid" if tuple(stages) == (1, 2, 3, 4) else "stages_" + "".join(str(s) for s in stages)


def _runs() -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {
        "baseline": dict(_BASELINE),
        "tricks": _BASELINE | {"tricks": True},
        "tricks_mpfe": _BASELINE | {"tricks": True, "mpfe": True},
        "bmm": dict(_BMM),
        "bmm_sam": _BMM | {"stages": [1, 2, 3, 4], "attention": "S+(c)"},
        "hybrid": {},
        "baseline_mgo": _BASELINE | {"local": "mgo"},
        "baseline_mpfe": _BASELINE | {"mpfe": True},
        "baseline_sam": _BASELINE | {"attention": "S"},
        "baseline_ca": _BASELINE | {"attention": "C"},
        "hybrid_pcb": {"local": "pcb"},
    }
    for order in ATTENTION_ORDERS:
        stages = [4] if "(c)" not in order and order != "none" else [1, 2, 3, 4]
        if order != "none":
            runs.setdefault(order_run_name(order), {"stages": stages, "attention": order})
    for stages in STAGE_SETS:
        runs.setdefault(stages_run_name(stages), {"stages": list(stages)})
    runs["baseline_b"] = _BASELINE | {"synth_domain": "b"}
    runs["hybrid_b"] = {"synth_domain": "b"}
    return runs | chapter.seed_replicas(runs, CLAIM_ARMS, PAIRED_SEEDS)


#: Every training run of the chapter: name -> overrides of the scale's config.
RUNS: dict[str, dict[str, Any]] = _runs()
#: Table 9's rows: paper order -> run.
TABLE9_RUNS = {order: order_run_name(order) for order in ATTENTION_ORDERS}
#: Table 10's rows: paper row -> run.
TABLE10_RUNS = {("All stage" if s == (1, 2, 3, 4) else
                 f"stage {s[0]}" if len(s) == 1 else f"stage {s[0]}-{s[-1]}"): stages_run_name(s)
                for s in STAGE_SETS}


def run_config(name: str, base: HybridAttentionConfig) -> HybridAttentionConfig:
    """The config of run ``name`` of :data:`RUNS` on top of ``base`` (a scale's config)."""
    return chapter.run_config(RUNS, name, base)


def stem(name: str) -> str:
    """The arm of a run: ``"hybrid"`` of ``"hybrid_seed1"`` (:func:`reidlib.recipes.chapter.arm_of`)."""
    return chapter.arm_of(name)


# ------------------------------------------------------------------------------- model and training


def build_model(cfg: HybridAttentionConfig, num_classes: int) -> HybridAttentionNet:
    """The network of ``cfg`` over a stride-1 ResNet with the scale's pre-trained weights."""
    backbone = build_backbone(cfg.depth, cfg.base_width, chapter.backbone_weights(cfg), cfg.last_stride)
    return HybridAttentionNet(num_classes, backbone, stages=cfg.stages, attention=cfg.attention,
                              local=cfg.local, mpfe=cfg.mpfe, num_stripes=cfg.num_stripes,
                              granularity=cfg.granularity, sam_kernel=cfg.sam_kernel, reduction=cfg.reduction,
                              reduce_dim=cfg.reduce_dim, feat_dim=cfg.feat_dim)


def train_loader(cfg: HybridAttentionConfig, data: ChapterData, device: torch.device | str = "cpu"
                 ) -> DataLoader:
    """``P x K`` batches (Eq. 4's triplet term needs positives in the batch): flips, crops and, with the
    tricks, random erasing (Sec. 4.1), with PIL or batch-wise on ``device`` (``cfg.device_augment``)."""
    return chapter.augmented_loader(data, cfg.height, cfg.width, cfg.batch_size, cfg.seed, flip=cfg.flip,
                                    pad=cfg.pad, random_erasing=cfg.random_erasing if cfg.tricks else 0.0,
                                    num_instances=cfg.num_instances, batch_wise=cfg.device_augment,
                                    device=device)


def test_loader(cfg: HybridAttentionConfig, data: ChapterData, records: Sequence[Record],
                misalignment: float = 0.0) -> DataLoader:
    """``records`` in order through the test transform, optionally with misaligned boxes (beyond the
    paper; the same boxes for every model, ``seed=0``)."""
    return chapter.test_loader(data, records, build_test_transform(cfg.height, cfg.width,
                                                                   misalignment=misalignment, seed=0))


def train_config(cfg: HybridAttentionConfig) -> TrainConfig:
    """The engine's :class:`TrainConfig` of ``cfg``: the optimizer, Eq. 5's warm-up (with the tricks;
    reading 3) and step decays."""
    warmup = cfg.warmup_epochs if cfg.tricks else 0
    schedule = ScheduleConfig(kind="multistep" if cfg.lr_milestones else "constant",
                              milestones=list(cfg.lr_milestones), gamma=cfg.lr_gamma, warmup=warmup,
                              warmup_start_factor=min(1.0, 3e-4 / 0.01))
    optimizer = OptimizerConfig(name=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.optimizer == "sgd")
    return TrainConfig(epochs=cfg.epochs, optimizer=optimizer, schedule=schedule, seed=cfg.seed,
                       progress="line", channels_last=True,
                       cpu_bf16=cfg.cpu_bf16)


def loss_for(cfg: HybridAttentionConfig) -> MultiPartLoss:
    """Eq. 4: the mean label-smoothed (with the tricks) cross-entropy over the parts plus the mean
    batch-hard triplet loss over the groups of ``cfg.triplet_on``."""
    return MultiPartLoss(label_smoothing=cfg.label_smoothing if cfg.tricks else 0.0,
                         margin=cfg.triplet_margin, triplet_on=cfg.triplet_on)


def train_model(model: HybridAttentionNet, cfg: HybridAttentionConfig, data: ChapterData, out_dir: str | Path,
                device: str = "cpu") -> list[dict[str, Any]]:
    """Train ``model`` as ``cfg`` says with the engine's :class:`Trainer` in ``out_dir`` (resuming from its
    ``latest.pt`` after a crash); returns the per-epoch history."""
    trainer = Trainer(model, loss_for(cfg), train_loader(cfg, data, device), train_config(cfg), out_dir,
                      device=device, record={"hybrid_attention_config": dataclasses.asdict(cfg)})
    return trainer.fit_or_resume().to_list()


# --------------------------------------------------------------------------------------- evaluation


def features(model: HybridAttentionNet, cfg: HybridAttentionConfig, data: ChapterData, device: str = "cpu",
             misalignment: float = 0.0) -> tuple[Features, Features]:
    """L2-normalised test descriptors (reading 4) of ``data``'s query and gallery, in loader order (the
    transformed test images are kept for the chapter's next model, :func:`chapter.cached_test_batches`)."""
    tf = build_test_transform(cfg.height, cfg.width, misalignment=misalignment, seed=0)
    out = []
    for records, desc in ((data.splits.query, "query"), (data.splits.gallery, "gallery")):
        batches = chapter.cached_test_batches(data, records, tf, (desc, cfg.height, cfg.width, misalignment),
                                              (cfg.height, cfg.width))
        out.append(extract_features(model, batches, device, desc=desc))
    return out[0], out[1]


def rank(query: Features, gallery: Features, ap_mode: str = "full") -> RankResult:
    """mAP/CMC by Euclidean distance; ``ap_mode="trapezoid"`` is the public code's AP."""
    return evaluate_features(query.feats, gallery.feats, query.pids, gallery.pids, query.camids,
                             gallery.camids, metric="euclidean", ap_mode=ap_mode)


def _short(result: RankResult) -> dict[str, float]:
    return {"mAP": result.mAP, "rank1": result.rank1}


def evaluate_model(model: HybridAttentionNet, cfg: HybridAttentionConfig, data: ChapterData,
                   device: str = "cpu", cross: ChapterData | None = None, misalign: bool = False
                   ) -> dict[str, Any]:
    """Metrics of a trained model on ``data``'s test split: mAP/CMC, ``trapezoid_mAP`` (the public
    code's AP), ``family`` (SynthReID look-alikes); ``cross`` (mAP/rank-1 on ``cross``'s test split, the
    other domain) and ``misaligned`` (``{"j10": {mAP, rank1, retained}, ...}``, ``retained`` = the share
    of the aligned mAP kept) when asked."""
    query, gallery = features(model, cfg, data, device)
    result = rank(query, gallery)
    metrics = result.metrics()
    metrics["trapezoid_mAP"] = rank(query, gallery, "trapezoid").mAP
    family = chapter.within_family(data, torch.cdist(query.feats, gallery.feats), query, gallery)
    if family is not None:
        metrics["family"] = _short(family)
    if cross is not None:
        metrics["cross"] = _short(rank(*features(model, cfg, cross, device)))
    if misalign:
        metrics["misaligned"] = {}
        for jitter in MISALIGNMENTS:
            shifted = rank(*features(model, cfg, data, device, misalignment=jitter))
            metrics["misaligned"][f"j{round(100 * jitter):02d}"] = _short(shifted) | {
                "retained": shifted.mAP / result.mAP if result.mAP > 0 else float("nan")}
    return metrics


@torch.no_grad()
def map_scores(model: HybridAttentionNet, cfg: HybridAttentionConfig, data: ChapterData, device: str = "cpu"
               ) -> dict[str, Any]:
    """Where the maps put their energy, on ``cfg.explain_images`` training images (one per identity): for
    each fused stage, the share of its activation (its channels of the attended fused map, summed) and of
    its spatial attention map (when it has one) on SynthReID's identity-cue pixels (``cues``) and on the
    person (``body``: parts and cues; the rest is background), with ``cue_area`` and ``body_area``, the
    shares a uniform map would get. Empty for real data."""
    if data.synth is None:
        return {}
    from reidlib.explain.overlay import upsample_map
    from reidlib.explain.scores import body_label_values, energy_in_mask

    model = model.to(device).eval()
    _, items, images = chapter.explanation_batch(data, cfg.explain_images, cfg.height, cfg.width, device)
    out = model(images)
    fused = out.feature_maps[0].float().cpu()
    bounds = np.cumsum([0, *model.stage_channels])
    body_labels = body_label_values()
    cue_masks = [item.cues > 0 for item in items]
    body_masks = [np.isin(item.parts, body_labels) | (item.cues > 0) for item in items]

    def shares(maps: torch.Tensor) -> dict[str, float]:
        up = [upsample_map(m, item.cues.shape) for m, item in zip(maps, items, strict=True)]
        return {region: float(np.nanmean([energy_in_mask(u, m) for u, m in zip(up, masks, strict=True)]))
                for region, masks in (("cues", cue_masks), ("body", body_masks))}

    scores: dict[str, Any] = {"cue_area": float(np.mean([m.mean() for m in cue_masks])),
                              "body_area": float(np.mean([m.mean() for m in body_masks])), "activation": {},
                              "spatial_attention": {}}
    for i, s in enumerate(model.stages):
        scores["activation"][f"stage{s}"] = shares(fused[:, bounds[i]:bounds[i + 1]].sum(dim=1))
    spatial = out.extras.get("spatial_attention")
    if spatial is not None:
        names = [f"stage{s}" for s in model.stages] if spatial.shape[1] == len(model.stages) else ["fused"]
        for j, name in enumerate(names):
            scores["spatial_attention"][name] = shares(spatial[:, j].float().cpu())
    else:
        del scores["spatial_attention"]
    return scores


# ----------------------------------------------------------------------------------------- runs


def context(data: ChapterData, device: str = "cpu", reuse: bool = False, **kwargs: Any) -> RunContext:
    """The chapter's :class:`~reidlib.recipes.chapter.RunContext` (for the domain-``b`` runs, one on the
    domain-``b`` data)."""
    return RunContext(CHAPTER, data, device=device, reuse=reuse, **kwargs)


def run_model(name: str, cfg: HybridAttentionConfig, ctx: RunContext, cross: ChapterData | None = None
              ) -> ChapterRun[HybridAttentionConfig, HybridAttentionNet]:
    """Train, evaluate and store run ``name`` (or, with ``ctx.reuse``, load it): metrics of
    :func:`evaluate_model` (``cross`` on the other domain when given, ``misaligned`` for
    :data:`MISALIGNMENT_RUNS`, ``maps`` (:func:`map_scores`) for :data:`EXPLAIN_RUNS`)."""
    data, device = ctx.data, ctx.device
    if data.synth is not None and data.name != chapter.data_name(cfg):
        raise ValueError(f"run {name!r} trains on {chapter.data_name(cfg)!r}, but the context's data is "
                         f"{data.name!r} (domain-b runs need the domain-b context)")

    def evaluate_fn(model: HybridAttentionNet) -> tuple[dict[str, Any], dict[str, Any] | None]:
        metrics = evaluate_model(model, cfg, data, device, cross=cross,
                                 misalign=stem(name) in MISALIGNMENT_RUNS)
        if stem(name) in EXPLAIN_RUNS and data.synth is not None:
            metrics["maps"] = map_scores(model, cfg, data, device)
        return metrics, None if cross is None else {"cross_domain": cross.name}

    return chapter.train_run(ctx, name, cfg, build=lambda: build_model(cfg, data.num_classes),
                             train=lambda model, folder: train_model(model, cfg, data, folder, device),
                             evaluate=evaluate_fn)


def load_domain_b(base: HybridAttentionConfig) -> ChapterData:
    """SynthReID's domain ``b`` at ``base``'s preset and size (Table 8's other domain)."""
    return chapter.load_data(dataclasses.replace(base, synth_domain="b"))


def run_all(base: HybridAttentionConfig, ctx: RunContext, ctx_b: RunContext | None = None,
            names: Sequence[str] | None = None
            ) -> dict[str, ChapterRun[HybridAttentionConfig, HybridAttentionNet]]:
    """Every run of :data:`RUNS` (or ``names``) in order, one log line each. The baseline and the full
    model (every seed) are also tested on ``ctx_b``'s data, and the domain-``b`` runs (trained in
    ``ctx_b``) on ``ctx``'s: Table 8 in both directions; without ``ctx_b`` the domain-``b`` runs are
    skipped."""
    cross_runs = {"baseline", "hybrid"}
    chosen = [n for n in (names if names is not None else RUNS)
              if ctx_b is not None or run_config(n, base).synth_domain == "a"]

    def one(name: str) -> ChapterRun[HybridAttentionConfig, HybridAttentionNet]:
        cfg = run_config(name, base)
        if cfg.synth_domain == "b":
            assert ctx_b is not None
            return run_model(name, cfg, ctx_b, cross=ctx.data)
        cross = ctx_b.data if ctx_b is not None and stem(name) in cross_runs else None
        return run_model(name, cfg, ctx, cross=cross)

    return chapter.run_all(chosen, one)
