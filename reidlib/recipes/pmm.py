"""Recipe of seed 004 (PMM, progressive multi-stage feature mix, on Batch DropBlock): configs per scale,
the runs behind its tables, training with the in-training Grad-CAM, and the evaluation of each run.

One :class:`PmmConfig` describes one run (BDB or PMM); :func:`config_for` gives a scale's config and
:data:`RUNS` lists the runs as overrides of it. The models are :mod:`reidlib.models.pmm`, the loss
:class:`reidlib.losses.per_stage.PerStageLoss`, the mixing :mod:`reidlib.layers.feature_mix`. Run
folders, seeding, reuse and results files are the chapter contract's (:mod:`reidlib.recipes.chapter`).

**Readings** (the paper is short; the public code fills in):

1. *Map and blocks.* The paper's 24x8 map (384x128, stage-4 stride 1) is cut into 3x2 blocks: 32 blocks of
   an eighth of the height and a quarter of the width. At ``cpu`` (128x64, an 8x4 map) a block is one
   cell, so there are 32 blocks of the same relative size and the paper's K = 3 / 6 / 8 mean the same
   share of the map.
2. *Table 3's image-level rows* (CutMix, attentive CutMix) mix the input images and their labels; their
   stages II-III then see unmixed features (``mix="none"``). Attentive CutMix's saliency is "a
   pretrained CNN's" (Walawalkar et al.): the frozen pre-trained backbone's stage-4 activation (channel
   sum) of the partner image, its top-``k`` cells of the same grid pasted. CutOut zeroes the same
   Grad-CAM blocks A-Hard-Mix replaces (feature level, no partner).
3. *Augmentation.* The public code uses flips and a 64x64 Cutout square with probability 0.5; we use
   flips and random erasing with probability 0.5 (the book's common image-level occluder), applied
   batch-wise on tensors at ``cpu`` (:mod:`reidlib.data.device_augment`: the PIL pipeline's operations,
   another random stream; PIL's image-by-image augmentation took a fifth of a run).
4. *The mixing stream.* Partners and random blocks are drawn from a generator seeded with the run's seed
   (paired runs share it); a resumed training restarts that stream at the resumed epoch's start.
5. *"Suppressing the salient blocks strengthens the others"* (Sec. 2.3: A-Hard-Mix "suppresses the strong
   parts and focus[es] on the relative weak region") is measured at test time: each test image's ``K``
   most active blocks of the backbone map (channel sum: test identities have no class for a Grad-CAM)
   are zeroed and the share of mAP the model keeps (``occluded.retained``) is compared with the same
   three stages trained without mixing (``pmm_no_mix``).
6. *Block size.* The paper fixes it (the value was lost in the text extraction; the code: 3x2 on 24x8);
   :data:`BLOCK_SWEEP` varies it at about the same mixed area.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from reidlib.data.records import Record
from reidlib.data.transforms import build_test_transform
from reidlib.engine.config import OptimizerConfig, ScheduleConfig, TrainConfig
from reidlib.engine.extract import Features, extract_features
from reidlib.engine.seeding import make_generator
from reidlib.engine.trainer import Trainer
from reidlib.evaluation.features import evaluate_features
from reidlib.layers.feature_mix import attentive_cutmix, cutmix_boxes, negative_partners, top_block_mask
from reidlib.losses.per_stage import PerStageLoss
from reidlib.models.backbone import NARROW_DEPTHS, build_backbone
from reidlib.models.output import ReIDOutput
from reidlib.models.pmm import GUIDANCES, MIXES, PARTNERS, BDBNet, PMMNet
from reidlib.recipes import chapter
from reidlib.recipes.chapter import ChapterConfig, ChapterData, ChapterRun, InputSizes, RunContext

CHAPTER = "pmm"
#: Training seeds of every arm a claim compares, besides the config's own (0).
PAIRED_SEEDS: tuple[int, ...] = (1, 2)
#: Image-level mixes of Table 3 (reading 2).
IMAGE_MIXES = ("none", "cutmix", "attentive_cutmix")
#: The K sweep, in blocks of the 32 (the paper's 3 / 6 / 8 for Market / Duke / CUHK03).
K_SWEEP: tuple[int, ...] = (3, 6, 8)
#: The block-size sweep (beyond the paper, whose block size is fixed): ``(rows, cols)`` in map cells and
#: the K that mixes about the scale's area (``cpu``: 3 one-cell blocks; 2x1 and 2x2 blocks mix 4 cells).
BLOCK_SWEEP: tuple[tuple[tuple[int, int], int], ...] = (((2, 1), 2), ((2, 2), 1))


@dataclass
class PmmConfig(InputSizes, ChapterConfig):
    """Everything that defines one BDB or PMM run (stored with its results).

    Attributes:
        model: ``"pmm"`` or ``"bdb"``.
        depth, base_width, pretrained, last_stride: the backbone (ImageNet ResNet-50 with stage-4 stride 1
            in the paper; a narrow ResNet from the SynthReID trunk at ``cpu``).
        height, width: input size (the map is ``height/16 x width/16``).
        stages: PMM's stages (1-3). dim: every stage's feature width (512). bdb_part_dim: BDB's part
            branch (1,024).
        mix, guidance, partner: :data:`reidlib.models.pmm.MIXES`, ``GUIDANCES``, ``PARTNERS``.
        image_mix: :data:`IMAGE_MIXES` (Table 3's image-level rows; reading 2).
        k, block: blocks mixed per image and a block's ``[rows, cols]`` in map cells (reading 1).
        cutmix_alpha: CutMix's Beta parameter (1).
        label_smoothing, triplet_margin: the loss (0.1; ``None`` = soft margin).
        batch_size, num_instances: ``P x K`` batches (64 = 16 x 4 in the paper).
        lr, weight_decay, epochs, warmup_epochs, lr_milestones, lr_gamma: Adam and its schedule (the public
            code: 1e-3, 5e-4, 400 epochs, a 50-epoch warm-up from 1e-4, x0.1 at 200 and 300).
        flip, pad, random_erasing: augmentation (reading 3).
        explain_images: training images of the explanation scores (:func:`map_scores`).
    """

    model: str = "pmm"
    depth: int = 50
    base_width: int = 64
    pretrained: bool = True
    last_stride: int = 1
    height: int = 384
    width: int = 128
    stages: int = 3
    dim: int = 512
    bdb_part_dim: int = 1024
    mix: str = "hard_mix"
    guidance: str = "gradcam"
    partner: str = "random"
    image_mix: str = "none"
    k: int = 3
    block: list[int] = field(default_factory=lambda: [3, 2])
    cutmix_alpha: float = 1.0
    label_smoothing: float = 0.1
    triplet_margin: float | None = None
    batch_size: int = 64
    num_instances: int = 4
    lr: float = 1e-3
    weight_decay: float = 5e-4
    epochs: int = 400
    warmup_epochs: float = 50
    lr_milestones: list[int] = field(default_factory=lambda: [200, 300])
    lr_gamma: float = 0.1
    flip: bool = True
    pad: int = 0
    random_erasing: float = 0.5
    explain_images: int = 48

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        for attr, allowed in (("model", ("pmm", "bdb")), ("mix", MIXES), ("guidance", GUIDANCES),
                              ("partner", PARTNERS), ("image_mix", IMAGE_MIXES)):
            if getattr(self, attr) not in allowed:
                raise ValueError(f"{name}.{attr} {getattr(self, attr)!r} unknown; expected one of {allowed}")
        if self.base_width != 64 and self.depth not in NARROW_DEPTHS:
            raise ValueError(f"{name}: base_width={self.base_width} needs depth in {sorted(NARROW_DEPTHS)}")
        if self.height % 16 or self.width % 16:
            raise ValueError(f"{name}: height and width must be multiples of 16, got "
                             f"{self.height}x{self.width}")
        h, w = self.map_size
        if len(self.block) != 2 or h % self.block[0] or w % self.block[1]:
            raise ValueError(f"{name}.block {self.block} must divide the {h}x{w} map (rows, cols)")
        blocks = (h // self.block[0]) * (w // self.block[1])
        if not 0 <= self.k <= blocks:
            raise ValueError(f"{name}.k = {self.k}, but the {h}x{w} map has {blocks} blocks of {self.block}")
        if self.batch_size % self.num_instances or self.batch_size // self.num_instances < 2:
            raise ValueError(f"{name}: batch_size {self.batch_size} must be P x num_instances "
                             f"({self.num_instances}) with P >= 2")
        if self.epochs < 1 or not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"{name}: need epochs >= 1 and 0 <= warmup_epochs < epochs")



#: The configs of the three scales. ``full`` is the public code's recipe at the paper's batch of 64.
#: ``cpu`` fine-tunes the quarter-width SynthReID trunk as the book's other chapters do (Adam 1e-3, four
#: epochs, x0.1 for the last) at 128x64, an 8x4 map of one-cell blocks (reading 1), augmenting batch-wise
#: (PIL's per-image augmentation took a fifth of a run); a run takes about 21 s on 2 cores, so the
#: chapter's 28 runs fit its 12-minute budget (five epochs do not).
SCALE_CONFIGS: dict[str, PmmConfig] = {
    "smoke": PmmConfig(scale="smoke", synth_preset="tiny", depth=18, base_width=8, height=64, width=32,
                       dim=32, bdb_part_dim=64, block=[1, 1], k=2, batch_size=16, epochs=1, warmup_epochs=0,
                       lr_milestones=[], explain_images=8),
    "cpu": PmmConfig(scale="cpu", cpu_bf16=True, synth_preset="small", depth=18, base_width=16, height=128,
                     width=64,
                     dim=128, bdb_part_dim=256, block=[1, 1], k=3, batch_size=64, epochs=4, warmup_epochs=0,
                     lr_milestones=[3], device_augment=True),
    "full": PmmConfig(scale="full", synth_preset="market", device_augment=True),
}


def config_for(scale: str | None = None, **overrides: Any) -> PmmConfig:
    """The config of ``scale`` (``$REIDLIB_SCALE`` wins) with ``overrides``."""
    return chapter.config_for(SCALE_CONFIGS, scale, **overrides)


def k_run_name(k: int, base: PmmConfig) -> str:
    """Run name of the K sweep's point ``k`` (the scale's own K is the plain ``pmm``)."""
    return "pmm" if k == base.k else f"pmm_k{k}"


def block_run_name(block: Sequence[int]) -> str:
    """Run name of the block-size sweep's point ``block`` (``(rows, cols)``)."""
    return f"pmm_block{block[0]}x{block[1]}"


#: The runs the claims compare; trained with :data:`PAIRED_SEEDS` too.
CLAIM_ARMS: tuple[str, ...] = ("bdb", "pmm", "cutout", "cutmix", "acutmix", "pmm_random_blocks", "pmm_no_mix")
#: The arms whose evaluation also scores the test images with their salient blocks zeroed (reading 5).
OCCLUSION_ARMS: tuple[str, ...] = ("bdb", "pmm", "pmm_no_mix")
#: The arms whose stages' Grad-CAMs are scored against SynthReID's masks (:func:`map_scores`).
MAP_SCORE_ARMS: tuple[str, ...] = ("bdb", "pmm")


def _runs() -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {
        "bdb": {"model": "bdb"},
        "pmm": {},
        "cutout": {"mix": "cutout"},
        "cutmix": {"mix": "none", "image_mix": "cutmix"},
        "acutmix": {"mix": "none", "image_mix": "attentive_cutmix"},
        "pmm_stages1": {"stages": 1},
        "pmm_stages2": {"stages": 2},
        "pmm_no_mix": {"mix": "none"},
        "pmm_random_blocks": {"guidance": "random"},
        "pmm_hardest": {"partner": "hardest"},
    }
    for k in K_SWEEP:
        runs.setdefault(f"pmm_k{k}", {"k": k})
    for (rows, cols), k in BLOCK_SWEEP:
        runs[block_run_name((rows, cols))] = {"block": [rows, cols], "k": k}
    return runs | chapter.seed_replicas(runs, CLAIM_ARMS, PAIRED_SEEDS)


#: Every training run of the chapter: name -> overrides of the scale's config. The K sweep's runs whose
#: K is the scale's own duplicate ``pmm``; :func:`runs_for` drops them.
RUNS: dict[str, dict[str, Any]] = _runs()


def runs_for(base: PmmConfig) -> list[str]:
    """The run names to train at ``base``'s scale: :data:`RUNS` without sweep points that are ``pmm``
    itself or that the map cannot hold."""
    h, w = base.map_size
    out = []
    for name, overrides in RUNS.items():
        k, block = overrides.get("k"), overrides.get("block", base.block)
        if h % block[0] or w % block[1]:
            continue
        if k is not None and (k > (h // block[0]) * (w // block[1])
                              or (k == base.k and list(block) == list(base.block))):
            continue
        out.append(name)
    return out


def run_config(name: str, base: PmmConfig) -> PmmConfig:
    """The config of run ``name`` of :data:`RUNS` on top of ``base``."""
    return chapter.run_config(RUNS, name, base)


# ------------------------------------------------------------------------------- model and training


def _backbone(cfg: PmmConfig) -> nn.Module:
    return build_backbone(cfg.depth, cfg.base_width, chapter.backbone_weights(cfg), cfg.last_stride)


def build_model(cfg: PmmConfig, num_classes: int) -> BDBNet | PMMNet:
    """BDB or PMM of ``cfg`` over a stride-1 ResNet with the scale's pre-trained weights."""
    if cfg.model == "bdb":
        return BDBNet(num_classes, _backbone(cfg), global_dim=cfg.dim, part_dim=cfg.bdb_part_dim)
    return PMMNet(num_classes, _backbone(cfg), stages=cfg.stages, dim=cfg.dim, k=cfg.k, block=cfg.block,
                  mix=cfg.mix, guidance=cfg.guidance, partner=cfg.partner)


def train_loader(cfg: PmmConfig, data: ChapterData, device: torch.device | str = "cpu") -> DataLoader:
    """``P x K`` batches with flips and random erasing (reading 3), PIL or batch-wise on ``device``
    (``cfg.device_augment``)."""
    return chapter.augmented_loader(data, cfg.height, cfg.width, cfg.batch_size, cfg.seed, flip=cfg.flip,
                                    pad=cfg.pad, random_erasing=cfg.random_erasing,
                                    num_instances=cfg.num_instances, batch_wise=cfg.device_augment,
                                    device=device)


def train_config(cfg: PmmConfig) -> TrainConfig:
    """Adam with a linear warm-up (the public code's 1e-4 -> 1e-3 over ``warmup_epochs``) and steps."""
    schedule = ScheduleConfig(kind="multistep" if cfg.lr_milestones else "constant",
                              milestones=list(cfg.lr_milestones), gamma=cfg.lr_gamma,
                              warmup=cfg.warmup_epochs, warmup_start_factor=0.1)
    return TrainConfig(epochs=cfg.epochs, optimizer=OptimizerConfig(name="adam", lr=cfg.lr,
                                                                    weight_decay=cfg.weight_decay),
                       schedule=schedule, seed=cfg.seed, progress="line", channels_last=True,
                       cpu_bf16=cfg.cpu_bf16)


class TrainingForward:
    """The Trainer's ``forward_fn`` of a run: PMM gets the batch's pids (its stages mix under Grad-CAM
    guidance) and the run's mixing generator; the image-level mixes of Table 3 mix the images first and
    put the partner's identity and the kept share in ``extras`` for the loss (reading 2)."""

    def __init__(self, cfg: PmmConfig, saliency: nn.Module | None = None) -> None:
        self.cfg = cfg
        self.generator = make_generator(cfg.seed)
        self.saliency = saliency

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> ReIDOutput:
        images, pids = batch["image"], batch["pid"]
        mix = None
        if self.cfg.image_mix == "cutmix":
            images, partners, keep = cutmix_boxes(images, self.generator, self.cfg.cutmix_alpha)
            mix = (pids[partners.to(pids.device)], keep)
        elif self.cfg.image_mix == "attentive_cutmix":
            partners = negative_partners(pids, self.generator)
            images, keep = attentive_cutmix(images, self.saliency_maps(images), partners, self.grid,
                                            self.cfg.k)
            mix = (pids[partners.to(pids.device)], keep)
        pmm_model = isinstance(getattr(model, "module", model), PMMNet)  # the model, or its DDP wrapper
        out = model(images, pids, generator=self.generator) if pmm_model else model(images)
        if mix is not None:
            out.extras["mix_pids"], out.extras["mix_keep"] = mix[0], mix[1].to(images.device)
        return out

    @property
    def grid(self) -> tuple[int, int]:
        """The attentive CutMix grid over the image: the map's blocks (reading 1)."""
        h, w = self.cfg.map_size
        return h // self.cfg.block[0], w // self.cfg.block[1]

    @torch.no_grad()
    def saliency_maps(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen pre-trained backbone's stage-4 activation (channel sum) ``(B, h, w)``."""
        if self.saliency is None:
            raise ValueError("attentive CutMix needs the pre-trained backbone as its saliency network")
        self.saliency.eval()
        return self.saliency(images).sum(dim=1).float()


def loss_for(cfg: PmmConfig) -> PerStageLoss:
    """Every stage's label-smoothed cross-entropy + batch-hard triplet (soft margin), summed."""
    return PerStageLoss(label_smoothing=cfg.label_smoothing, margin=cfg.triplet_margin)


def train_model(model: BDBNet | PMMNet, cfg: PmmConfig, data: ChapterData, out_dir: str | Path,
                device: str = "cpu") -> list[dict[str, Any]]:
    """Train ``model`` with Eq. 1-2 in the loop (PMM), the per-stage loss and the engine's
    :class:`Trainer` in ``out_dir``; returns the per-epoch history."""
    saliency = _backbone(cfg).to(device) if cfg.image_mix == "attentive_cutmix" else None
    if saliency is not None:
        saliency.requires_grad_(False)
    trainer = Trainer(model, loss_for(cfg), train_loader(cfg, data, device), train_config(cfg), out_dir,
                      device=device, forward_fn=TrainingForward(cfg, saliency),
                      record={"pmm_config": dataclasses.asdict(cfg)})
    return trainer.fit_or_resume().to_list()


# --------------------------------------------------------------------------------------- evaluation


def test_loader(cfg: PmmConfig, data: ChapterData, records: Sequence[Record]) -> DataLoader:
    """``records`` in order through the test transform."""
    return chapter.test_loader(data, records, build_test_transform(cfg.height, cfg.width))


@contextmanager
def salient_blocks_zeroed(model: nn.Module, block: Sequence[int], k: int) -> Iterator[None]:
    """Within the block, ``model.backbone``'s output ``(B, C, h, w)`` has its ``k`` most active blocks of
    ``block`` cells zeroed (activation: the channel sum, Eq. 1's ranking on it; the test images have no
    class for a Grad-CAM). The hook is removed on exit."""
    def hook(_module: nn.Module, _inputs: Any, maps: torch.Tensor) -> torch.Tensor:
        mask = top_block_mask(maps.detach().sum(dim=1), (block[0], block[1]), k)
        return maps * mask.unsqueeze(1).to(maps.dtype)

    handle = model.backbone.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def features(model: nn.Module, cfg: PmmConfig, data: ChapterData, device: str = "cpu",
             occlude: bool = False) -> tuple[Features, Features]:
    """L2-normalised test descriptors (the stages' features side by side, nothing mixed); with
    ``occlude`` each image's ``cfg.k`` most active blocks of the backbone map zeroed first
    (:func:`salient_blocks_zeroed`)."""
    tf = build_test_transform(cfg.height, cfg.width)
    out = []
    with salient_blocks_zeroed(model, cfg.block, cfg.k) if occlude else nullcontext():
        for records, desc in ((data.splits.query, "query"), (data.splits.gallery, "gallery")):
            batches = chapter.cached_test_batches(data, records, tf, (desc, cfg.height, cfg.width),
                                                  (cfg.height, cfg.width))
            out.append(extract_features(model, batches, device, desc=desc))
    return out[0], out[1]


def evaluate_model(model: nn.Module, cfg: PmmConfig, data: ChapterData, device: str = "cpu",
                   occlusion: bool = True) -> dict[str, Any]:
    """mAP/CMC (Euclidean), ``truncated50_mAP`` (BDB's and PMM's code: AP truncated at rank 50),
    ``family`` (SynthReID look-alikes) and, with ``occlusion``, ``occluded``: mAP and rank-1 with each
    test image's ``cfg.k``
    most active blocks zeroed (:func:`salient_blocks_zeroed`) and ``retained``, that mAP over the plain
    one -- how well the model does without what it finds most salient (the paper's "suppress the strong
    parts and focus on the relative weak region")."""
    def rank(q: Features, g: Features, ap_mode: str = "full"):
        return evaluate_features(q.feats, g.feats, q.pids, g.pids, q.camids, g.camids, metric="euclidean",
                                 ap_mode=ap_mode)

    q, g = features(model, cfg, data, device)
    result = rank(q, g)
    metrics = result.metrics()
    metrics["truncated50_mAP"] = rank(q, g, "truncated50").mAP
    family = chapter.within_family(data, torch.cdist(q.feats, g.feats), q, g)
    if family is not None:
        metrics["family"] = {"mAP": family.mAP, "rank1": family.rank1}
    if not occlusion:
        return metrics
    occluded = rank(*features(model, cfg, data, device, occlude=True))
    metrics["occluded"] = {"mAP": occluded.mAP, "rank1": occluded.rank1,
                           "retained": occluded.mAP / result.mAP if result.mAP > 0 else float("nan")}
    return metrics


def stage_gradcams(model: BDBNet | PMMNet, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of every branch or stage's ``classes`` logit on the backbone's stage-4 map, nothing mixed
    (Fig. 4; BDB: the global and the part branch): ``(B, S, h, w)``, each map scaled to ``[0, 1]``. The
    model is in eval mode during the call and left in the mode it had."""
    from reidlib.layers.gradcam import batch_gradcam

    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            maps = model.backbone(images).detach().requires_grad_(True)
            if isinstance(model, BDBNet):
                logits = [model.global_head(maps)[1], model.part_head(model.bottleneck(maps))[1]]
            else:
                logits = [model.stage1(maps)[1]]
                logits += [head(model.bottleneck(maps))[1] for head in model.later]
            return torch.stack([batch_gradcam(maps, s, classes) for s in logits], dim=1)
    finally:
        model.train(was_training)


def map_scores(model: BDBNet | PMMNet, cfg: PmmConfig, data: ChapterData, device: str = "cpu"
               ) -> dict[str, Any]:
    """Explanation scores of the stages' Grad-CAMs (:func:`stage_gradcams`, each for the image's own
    training class) on ``cfg.explain_images`` training images: per stage the share of the map's energy
    on SynthReID's identity cues, on the person and on the background (``stage<i>.cues`` / ``.body`` /
    ``.background``) and its ``area`` (the share of cells above half the map's maximum: Fig. 1's
    "activation area"); ``overlap``, the mean IoU of the stages' top-10% regions
    (:func:`reidlib.explain.scores.branch_overlap`); ``cue_area`` and ``body_area``, a uniform map's
    shares. Empty for real data."""
    if data.synth is None:
        return {}
    import numpy as np

    from reidlib.explain.overlay import upsample_map
    from reidlib.explain.scores import body_label_values, branch_overlap, energy_in_mask

    model = model.to(device)
    records, items, images = chapter.explanation_batch(data, cfg.explain_images, cfg.height, cfg.width,
                                                       device)
    cams = stage_gradcams(model, images, torch.tensor([r.pid for r in records], device=device)).cpu()
    body_labels = body_label_values()
    masks = {"cues": [item.cues > 0 for item in items],
             "body": [np.isin(item.parts, body_labels) | (item.cues > 0) for item in items]}
    masks["background"] = [~b for b in masks["body"]]
    out: dict[str, Any] = {"cue_area": float(np.mean([m.mean() for m in masks["cues"]])),
                           "body_area": float(np.mean([m.mean() for m in masks["body"]]))}
    for s in range(cams.shape[1]):
        up = [upsample_map(m, item.cues.shape) for m, item in zip(cams[:, s], items, strict=True)]
        stage = {region: float(np.nanmean([energy_in_mask(u, m) for u, m in zip(up, ms, strict=True)]))
                 for region, ms in masks.items()}
        stage["area"] = float((cams[:, s] > 0.5).float().mean())
        out[f"stage{s + 1}"] = stage
    if cams.shape[1] > 1:
        out["overlap"] = float(np.mean(branch_overlap(cams, top_k=0.1)))
    return out


# ----------------------------------------------------------------------------------------- runs


def context(data: ChapterData, device: str = "cpu", reuse: bool = False, **kwargs: Any) -> RunContext:
    """The chapter's :class:`~reidlib.recipes.chapter.RunContext`."""
    return RunContext(CHAPTER, data, device=device, reuse=reuse, **kwargs)


def run_model(name: str, cfg: PmmConfig, ctx: RunContext) -> ChapterRun[PmmConfig, nn.Module]:
    """Train, evaluate and store run ``name`` (or, with ``ctx.reuse``, load it): the metrics of
    :func:`evaluate_model` (``occluded`` for :data:`OCCLUSION_ARMS`) and ``maps`` (:func:`map_scores`,
    SynthReID only, for :data:`MAP_SCORE_ARMS`)."""
    data, device = ctx.data, ctx.device

    def evaluate_fn(model: nn.Module) -> tuple[dict[str, Any], None]:
        metrics = evaluate_model(model, cfg, data, device, occlusion=chapter.arm_of(name) in OCCLUSION_ARMS)
        if data.synth is not None and chapter.arm_of(name) in MAP_SCORE_ARMS:
            metrics["maps"] = map_scores(model, cfg, data, device)
        return metrics, None

    return chapter.train_run(ctx, name, cfg, build=lambda: build_model(cfg, data.num_classes),
                             train=lambda model, folder: train_model(model, cfg, data, folder, device),
                             evaluate=evaluate_fn)


def run_all(base: PmmConfig, ctx: RunContext, names: Sequence[str] | None = None
            ) -> dict[str, ChapterRun[PmmConfig, nn.Module]]:
    """Every run of :func:`runs_for` (or ``names``) in order, one log line each."""
    return chapter.run_all(names if names is not None else runs_for(base),
                           lambda name: run_model(name, run_config(name, base), ctx))
