"""Recipe of seed 002 (FMN, Ding et al. 2017): configs per scale, the runs behind every table, the two
training stages of Algorithm 1, the evaluation of each run and the explanation scores stored with it.

One :class:`FmnConfig` describes one stage-2 run (its stage 1 follows from the same config).
:func:`config_for` gives the config of a scale; :data:`RUNS` lists the stage-2 runs as overrides of it.
Stage 1 (the GRN alone, Eq. 4) is trained once per seed and stage-1 setting and stored as its own run
``grn`` (``grn_seed<k>``), which every stage-2 run of that seed starts from (:func:`grn_for`); Table 1's
GRN row is that run. Table 1's LAN row and Tables 2-4's re-ranked rows are evaluations of the trained
``fmn`` model (``fmn_lan``: the LAN's feature alone, ``fmn_krr``: Eq. 6 with k-reciprocal re-ranking),
stored as runs of their own so that the claims compare them seed by seed. Run folders, seeding, reuse
and results files are the chapter contract's (:mod:`reidlib.recipes.chapter`).

The paper's training recipe (Sec. 4.2): ImageNet ResNet-50, SGD with momentum 0.9, the GRN at LR 0.1
then 0.01 after 20 epochs, MN + LAN at 0.1 then 0.01 after 35 epochs, "until the network converges";
horizontal flips and crops. It gives neither the input size, the batch size, the weight decay nor the
margin ``m`` of Eq. 5; :data:`SCALE_CONFIGS` states what we chose.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from reidlib.data.records import Record, one_per_identity
from reidlib.data.transforms import build_test_transform
from reidlib.engine.config import OptimizerConfig, ScheduleConfig, TrainConfig
from reidlib.engine.extract import Features, extract_features
from reidlib.engine.trainer import Trainer
from reidlib.evaluation.features import evaluate_features
from reidlib.evaluation.rank import RankResult
from reidlib.losses.cross_entropy import IdentityLoss
from reidlib.losses.fmn_rank import DEFAULT_MARGIN, FMNStage2Loss
from reidlib.models.backbone import NARROW_DEPTHS, build_backbone
from reidlib.models.fmn import FMN, GRN, MASK_LAYERS, fmn_descriptor
from reidlib.models.output import ReIDOutput
from reidlib.recipes import chapter
from reidlib.recipes.chapter import ChapterConfig, ChapterData, ChapterRun, RunContext
from reidlib.results.store import RunRecord

CHAPTER = "fmn"
#: Table 5's layers, lowest first (the paper's main model masks Pool1).
MASK_LAYER_SWEEP: tuple[str, ...] = ("pool1", "res2", "res3", "res4")
#: Beyond the paper: alpha of Eq. 6 (1 = the GRN's feature alone, 0 = the LAN's).
ALPHA_SWEEP: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: The margin ``m`` of Eq. 5 swept a little around the default (the paper does not give it).
MARGIN_SWEEP: tuple[float, ...] = (0.0, DEFAULT_MARGIN, 0.2)
#: Training seeds of every arm a claim compares, besides the config's own (0).
PAIRED_SEEDS: tuple[int, ...] = (1, 2)
#: The stage-2 runs the claims of ``book/data/claims/fmn.yaml`` compare (their ``fmn_lan`` / ``fmn_krr``
#: evaluations and the GRN of each seed follow); trained with :data:`PAIRED_SEEDS` too. The other Table 5
#: layers, the margin sweep and the unmasked LAN are trained with seed 0 only.
CLAIM_ARMS: tuple[str, ...] = ("fmn", "fmn_res4", "fmn_no_rank")
#: Fields of :class:`FmnConfig` that stage 1 depends on: stage-2 runs that agree on them share a GRN.
STAGE1_FIELDS: tuple[str, ...] = (
    "scale", "dataset", "synth_preset", "seed", "data_seed", "depth", "base_width", "pretrained",
    "last_stride", "height", "width", "batch_size", "optimizer", "momentum", "weight_decay", "grn_lr",
    "grn_epochs", "grn_milestones", "lr_gamma", "pad", "flip", "label_smoothing",
)


@dataclass
class FmnConfig(ChapterConfig):
    """Everything that defines one FMN run, both stages (stored with its results).

    The fields of :class:`~reidlib.recipes.chapter.ChapterConfig` (``scale``, ``dataset``,
    ``synth_preset``, ``seed``, ``data_seed``), and:

    Attributes:
        depth, base_width, pretrained: the backbone (:func:`~reidlib.models.backbone.build_backbone`):
            ImageNet ResNet-50 in the paper; at ``base_width`` < 64 a narrow ResNet started from the
            SynthReID trunk of the scale (:mod:`reidlib.recipes.pretrain`). The GRN and the LAN both
            start from these weights (Algorithm 1: ``theta_o -> theta_g``, ``theta_o -> theta_l``).
        last_stride: stride of stage 4 (2: the plain ResNet the paper fine-tunes).
        height, width: input size in pixels.
        mask_layer: the GRN layer whose output the mask multiplies (Table 5: ``pool1``, ``res2``,
            ``res3``, ``res4``; :data:`reidlib.models.fmn.MASK_LAYERS`).
        use_mask: ``False`` trains the LAN on the unmasked feature (mask = 1; beyond the paper).
        alpha: weight of the GRN feature in the descriptor (Eq. 6; the paper: 0.5).
        margin: ``m`` of Eq. 5 on softmax probabilities (not given by the paper).
        rank_weight: weight of Eq. 5 beside Eq. 4 in stage 2 (the paper sums them: 1; 0 = no ranking loss).
        label_smoothing: of the cross-entropy (0: Eq. 4 as written).
        batch_size: images per batch (not given by the paper).
        optimizer: ``"sgd"`` (the paper, momentum 0.9) or ``"adam"``.
        momentum, weight_decay: SGD momentum; L2 penalty (not given by the paper: 5e-4, the common choice).
        grn_lr, grn_epochs, grn_milestones: stage 1 (the paper: 0.1, x0.1 after 20 epochs).
        lan_lr, lan_epochs, lan_milestones: stage 2 (the paper: 0.1, x0.1 after 35 epochs).
        lr_gamma: the LR factor at each milestone.
        pad, flip: training augmentation (random crop after ``pad`` pixels of padding, flips).
        explain_images: training images of the explanation scores (CAM energy on cues).
    """

    depth: int = 50
    base_width: int = 64
    pretrained: bool = True
    last_stride: int = 2
    height: int = 256
    width: int = 128
    mask_layer: str = "pool1"
    use_mask: bool = True
    alpha: float = 0.5
    margin: float = DEFAULT_MARGIN
    rank_weight: float = 1.0
    label_smoothing: float = 0.0
    batch_size: int = 32
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grn_lr: float = 0.1
    grn_epochs: int = 30
    grn_milestones: list[int] = field(default_factory=lambda: [20])
    lan_lr: float = 0.1
    lan_epochs: int = 45
    lan_milestones: list[int] = field(default_factory=lambda: [35])
    lr_gamma: float = 0.1
    pad: int = 10
    flip: bool = True
    explain_images: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mask_layer not in MASK_LAYERS:
            raise ValueError(f"mask_layer {self.mask_layer!r} unknown; expected one of {sorted(MASK_LAYERS)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.margin < 0 or self.rank_weight < 0:
            raise ValueError(f"margin and rank_weight must be >= 0, got {self.margin}, {self.rank_weight}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.grn_epochs < 1 or self.lan_epochs < 1:
            raise ValueError(f"grn_epochs and lan_epochs must be >= 1, got {self.grn_epochs}, "
                             f"{self.lan_epochs}")
        if self.base_width != 64 and self.depth not in NARROW_DEPTHS:
            raise ValueError(f"base_width={self.base_width} needs depth in {sorted(NARROW_DEPTHS)}")
        if self.height % 32 or self.width % 32:
            raise ValueError(f"height and width must be multiples of 32, got {self.height}x{self.width}")

    @property
    def render_size(self) -> tuple[int, int]:
        """SynthReID is rendered at the input size."""
        return self.height, self.width

    def stage1_key(self) -> dict[str, Any]:
        """The fields stage 1 depends on (:data:`STAGE1_FIELDS`): its stored config."""
        return {name: getattr(self, name) for name in STAGE1_FIELDS}


#: The configs of the three scales. ``full`` is the paper's recipe (the input size, batch, decay and the
#: epoch counts after the last LR step are ours: the paper trains "until convergence"). ``cpu`` starts
#: from the SynthReID trunk and fine-tunes each stage as the book's other chapters fine-tune IDE+BN
#: (Adam, 6 epochs, LR x0.1 after 4): SGD at 0.1 is the paper's choice for an ImageNet ResNet-50, not
#: for a quarter-width network on 1,680 images.
SCALE_CONFIGS: dict[str, FmnConfig] = {
    "smoke": FmnConfig(scale="smoke", synth_preset="tiny", depth=18, base_width=8, height=64, width=32,
                       batch_size=16, optimizer="adam", grn_lr=1e-3, grn_epochs=1, grn_milestones=[],
                       lan_lr=1e-3, lan_epochs=1, lan_milestones=[], pad=4, explain_images=8),
    "cpu": FmnConfig(scale="cpu", cpu_bf16=True, synth_preset="small", depth=18, base_width=16, height=128,
                     width=64,
                     batch_size=32, optimizer="adam", grn_lr=1e-3, grn_epochs=6, grn_milestones=[4],
                     lan_lr=1e-3, lan_epochs=6, lan_milestones=[4], pad=6, explain_images=48),
    "full": FmnConfig(scale="full", synth_preset="market", device_augment=True),
}


def config_for(scale: str | None = None, **overrides: Any) -> FmnConfig:
    """The config of ``scale`` (``$REIDLIB_SCALE`` wins) with ``overrides``
    (:func:`reidlib.recipes.chapter.config_for`)."""
    return chapter.config_for(SCALE_CONFIGS, scale, **overrides)


#: Down-sampling of each maskable stage's output relative to the input (a ResNet: the stem's conv and max
#: pool divide by 4, layer1 keeps that, layer2 and layer3 halve it again).
MASK_LAYER_STRIDE = {"pool1": 4, "res2": 4, "res3": 8, "res4": 16}


def mask_size(cfg: FmnConfig) -> tuple[int, int]:
    """``(h, w)`` of ``cfg``'s mask: the masked layer's map (Table 5: 56x56 ... 14x14 at 224x224)."""
    stride = MASK_LAYER_STRIDE[cfg.mask_layer]
    return cfg.height // stride, cfg.width // stride


def margin_run_name(margin: float) -> str:
    """Run name of the margin sweep's point ``margin`` (the default margin is the plain ``fmn``)."""
    return "fmn" if abs(margin - DEFAULT_MARGIN) < 1e-12 else f"fmn_m{round(100 * margin):02d}"


def mask_run_name(layer: str) -> str:
    """Run name of Table 5's row ``layer`` (Pool1 is the plain ``fmn``)."""
    return "fmn" if layer == "pool1" else f"fmn_{layer}"


def _runs() -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {mask_run_name(m): {"mask_layer": m} for m in MASK_LAYER_SWEEP}
    runs["fmn"] = {}
    runs["fmn_no_rank"] = {"rank_weight": 0.0}
    for m in MARGIN_SWEEP:
        runs.setdefault(margin_run_name(m), {"margin": m})
    runs["lan_no_mask"] = {"use_mask": False}
    return runs | chapter.seed_replicas(runs, CLAIM_ARMS, PAIRED_SEEDS)


#: Every stage-2 run of the chapter: name -> overrides of the scale's config.
RUNS: dict[str, dict[str, Any]] = _runs()


def run_config(name: str, base: FmnConfig) -> FmnConfig:
    """The config of run ``name`` of :data:`RUNS` on top of ``base`` (a scale's config)."""
    return chapter.run_config(RUNS, name, base)


def seed_suffix(name: str) -> str:
    """``"_seed1"`` of ``"fmn_seed1"``; ``""`` for a seed-0 run."""
    stem, sep, seed = name.rpartition("_seed")
    return f"{sep}{seed}" if sep and seed.isdigit() else ""


# ------------------------------------------------------------------------------- model and training


def _backbone(cfg: FmnConfig) -> nn.Module:
    return build_backbone(cfg.depth, cfg.base_width, chapter.backbone_weights(cfg), cfg.last_stride)


def build_grn(cfg: FmnConfig, num_classes: int) -> GRN:
    """The GRN of ``cfg`` over a backbone with the scale's pre-trained weights."""
    return GRN(num_classes, _backbone(cfg))


def build_fmn(cfg: FmnConfig, grn: GRN, num_classes: int) -> FMN:
    """The FMN of ``cfg`` around a (trained) ``grn``; its LAN starts from the same pre-trained weights
    the GRN started from (Algorithm 1)."""
    return FMN(grn, _backbone(cfg), num_classes, mask_layer=cfg.mask_layer, use_mask=cfg.use_mask,
               alpha=cfg.alpha, input_size=(cfg.height, cfg.width))


def train_loader(cfg: FmnConfig, data: ChapterData, device: torch.device | str = "cpu") -> DataLoader:
    """Shuffled batches whose order depends on ``cfg.seed`` only: flips and crops (Sec. 4.2), with PIL or
    batch-wise on ``device`` (``cfg.device_augment``)."""
    return chapter.augmented_loader(data, cfg.height, cfg.width, cfg.batch_size, cfg.seed, flip=cfg.flip,
                                    pad=cfg.pad, batch_wise=cfg.device_augment, device=device)


def test_loader(cfg: FmnConfig, data: ChapterData, records: Sequence[Record]) -> DataLoader:
    """``records`` in order through the test transform."""
    return chapter.test_loader(data, records, build_test_transform(cfg.height, cfg.width))


def _train_config(cfg: FmnConfig, lr: float, epochs: int, milestones: Sequence[int]) -> TrainConfig:
    optimizer = OptimizerConfig(name=cfg.optimizer, lr=lr, weight_decay=cfg.weight_decay,
                                momentum=cfg.momentum)
    schedule = ScheduleConfig(kind="multistep" if milestones else "constant", milestones=list(milestones),
                              gamma=cfg.lr_gamma)
    return TrainConfig(epochs=epochs, optimizer=optimizer, schedule=schedule, seed=cfg.seed,
                       progress="line", channels_last=True,
                       cpu_bf16=cfg.cpu_bf16)


def train_grn(model: GRN, cfg: FmnConfig, data: ChapterData, out_dir: str | Path, device: str = "cpu"
              ) -> list[dict[str, Any]]:
    """Stage 1 of Algorithm 1: the GRN trained for identity classification (Eq. 4) with the engine's
    :class:`Trainer` in ``out_dir``; returns the per-epoch history."""
    trainer = Trainer(model, IdentityLoss(cfg.label_smoothing), train_loader(cfg, data, device),
                      _train_config(cfg, cfg.grn_lr, cfg.grn_epochs, cfg.grn_milestones), out_dir,
                      device=device, record={"fmn_stage1": cfg.stage1_key()})
    return trainer.fit_or_resume().to_list()


def stage2_loss(cfg: FmnConfig) -> FMNStage2Loss:
    """Stage 2's loss: Eq. 4 + ``rank_weight`` x Eq. 5."""
    return FMNStage2Loss(cfg.margin, rank_weight=cfg.rank_weight, label_smoothing=cfg.label_smoothing)


def train_fmn(model: FMN, cfg: FmnConfig, data: ChapterData, out_dir: str | Path, device: str = "cpu"
              ) -> list[dict[str, Any]]:
    """Stage 2 of Algorithm 1: the GRN frozen, MN + LAN trained with Eq. 4 + ``rank_weight`` x Eq. 5.
    Only the MN's and the LAN's parameters are given to the optimizer."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    loss = stage2_loss(cfg)
    train_cfg = _train_config(cfg, cfg.lan_lr, cfg.lan_epochs, cfg.lan_milestones)
    trainer = Trainer(model, loss, train_loader(cfg, data, device), train_cfg, out_dir, device=device,
                      param_groups=[{"params": trainable}], record={"fmn_stage2": dataclasses.asdict(cfg)})
    return trainer.fit_or_resume().to_list()


# --------------------------------------------------------------------------------------- evaluation


class _Parts(nn.Module):
    """``model``'s branch features ``[g, l]`` side by side, unnormalised, as the embedding: extracted
    once, they give every descriptor of Eq. 6 (any ``alpha``) without another pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> ReIDOutput:
        out = self.model(x)
        return dataclasses.replace(out, embedding=torch.cat(out.features, dim=1))


def branch_features(model: nn.Module, cfg: FmnConfig, data: ChapterData, device: str = "cpu"
                    ) -> tuple[Features, Features]:
    """Query and gallery features ``[g, l]`` (GRN: ``[g]``), unnormalised, in loader order."""
    parts = _Parts(model)
    return tuple(extract_features(parts, test_loader(cfg, data, records), device, normalize=False, desc=desc)
                 for records, desc in ((data.splits.query, "query"), (data.splits.gallery, "gallery")))


def descriptor(feats: Tensor, g_dim: int, alpha: float) -> Tensor:
    """Eq. 6 from side-by-side ``[g, l]`` features ``(N, Dg + Dl)``; a GRN's ``[g]`` alone (``g_dim`` =
    all columns) is just L2-normalised."""
    if g_dim >= feats.shape[1]:
        return torch.nn.functional.normalize(feats, dim=1)
    return fmn_descriptor(feats[:, :g_dim], feats[:, g_dim:], alpha)


def rank(query: Features, gallery: Features, g_dim: int, alpha: float, rerank: bool = False) -> RankResult:
    """mAP/CMC of Eq. 6's descriptor at ``alpha`` (Euclidean nearest neighbours, Sec. 3.4), optionally
    k-reciprocal re-ranked (Sec. 3.5, :func:`reidlib.evaluation.rerank.rerank_features`)."""
    return evaluate_features(descriptor(query.feats, g_dim, alpha), descriptor(gallery.feats, g_dim, alpha),
                             query.pids, gallery.pids, query.camids, gallery.camids, metric="euclidean",
                             rerank=rerank)


def _family(data: ChapterData, query: Features, gallery: Features, g_dim: int, alpha: float
            ) -> dict[str, float] | None:
    q, g = descriptor(query.feats, g_dim, alpha), descriptor(gallery.feats, g_dim, alpha)
    result = chapter.within_family(data, torch.cdist(q, g), query, gallery)
    return None if result is None else {"mAP": result.mAP, "rank1": result.rank1}


def _short(result: RankResult) -> dict[str, Any]:
    return {k: v for k, v in result.metrics().items() if k != "cmc"}


def evaluate_at(query: Features, gallery: Features, g_dim: int, alpha: float, data: ChapterData
                ) -> dict[str, Any]:
    """Metrics of one descriptor: mAP/CMC, ``krr`` (re-ranked) and ``family`` (SynthReID look-alikes)."""
    metrics = rank(query, gallery, g_dim, alpha).metrics()
    metrics["krr"] = _short(rank(query, gallery, g_dim, alpha, rerank=True))
    family = _family(data, query, gallery, g_dim, alpha)
    if family is not None:
        metrics["family"] = family
    return metrics


@torch.no_grad()
def cue_energy(model: nn.Module, cfg: FmnConfig, data: ChapterData, device: str = "cpu") -> dict[str, Any]:
    """Explanation scores on ``cfg.explain_images`` training images (one per identity), each CAM for its
    own class: ``cam_energy`` per branch (``"branch 1"`` = GRN, ``"branch 2"`` = LAN), the share of the
    CAM's positive energy on SynthReID's identity-cue pixels, and ``cue_area``, the cue pixels' share of
    the image (the energy share of a uniform map); for an FMN also ``mask_energy``, the same share for
    the learned mask's excess over 1 (``m - 1``: where it amplifies, since ``exp(ReLU(.)) >= 1``).
    Empty for real data."""
    if data.synth is None:
        return {}
    import numpy as np

    from reidlib.explain.scores import explanation_scores

    model = model.to(device).eval()
    records = one_per_identity(data.splits.train, cfg.explain_images)
    items = [data.synth.render(r.path) for r in records]
    scores = explanation_scores(model, items, "cam", classes=[r.pid for r in records], progress=False)
    out: dict[str, Any] = {"cue_area": float(scores["area_cues"].mean())}
    cue_types = [c.removeprefix("energy_cue_") for c in scores.columns if c.startswith("energy_cue_")]
    out["cue_type_area"] = {c: float(scores[f"area_cue_{c}"].mean()) for c in cue_types
                            if scores[f"area_cue_{c}"].notna().any()}
    for name, rows in scores.groupby("map"):
        out[f"cam_energy.{name}"] = float(rows["energy_cues"].mean())
        energies = {c: float(rows[f"energy_cue_{c}"].mean()) for c in out["cue_type_area"]}
        out[f"cue_type_energy.{name}"] = {c: e for c, e in energies.items() if np.isfinite(e)}
    if isinstance(model, FMN) and model.mixing is not None:
        mask = mask_scores(model, cfg, data, device)
        if "mask_energy" in mask:
            out["mask_energy"] = mask["mask_energy"]
    return out


@torch.no_grad()
def mask_scores(model: FMN, cfg: FmnConfig, data: ChapterData, device: str = "cpu") -> dict[str, Any]:
    """The learned mask scored against SynthReID's cue masks on the images of :func:`cue_energy`: the
    share of its excess over 1 (``m - 1``, upsampled to the image) on all cue pixels (``mask_energy``) and
    on each cue type's pixels (``mask_cue_type_energy``, over the images that have that cue). A mask of
    ones (no mask, or a ReLU that never fires) has no excess: the keys are then missing. Empty for real
    data."""
    if data.synth is None or model.mixing is None:
        return {}
    import numpy as np

    from reidlib.explain.overlay import upsample_map
    from reidlib.explain.scores import cue_label_names, energy_in_mask

    model = model.to(device).eval()
    _, items, images = chapter.explanation_batch(data, cfg.explain_images, cfg.height, cfg.width, device)
    excess = [upsample_map(m, item.cues.shape) for m, item in
              zip(model(images).extras["mask"].float().cpu() - 1.0, items, strict=True)]

    def share(label: int | None) -> float:
        values = [energy_in_mask(e, item.cues > 0 if label is None else item.cues == label)
                  for e, item in zip(excess, items, strict=True)
                  if label is None or (item.cues == label).any()]
        values = [v for v in values if np.isfinite(v)]
        return float(np.mean(values)) if values else float("nan")

    out: dict[str, Any] = {}
    total = share(None)
    if np.isfinite(total):
        out["mask_energy"] = total
        per_type = {name: share(label) for label, name in cue_label_names().items()}
        out["mask_cue_type_energy"] = {k: v for k, v in per_type.items() if np.isfinite(v)}
    return out


# ----------------------------------------------------------------------------------------- runs


def context(data: ChapterData, device: str = "cpu", reuse: bool = False, **kwargs: Any) -> RunContext:
    """The chapter's :class:`~reidlib.recipes.chapter.RunContext`."""
    return RunContext(CHAPTER, data, device=device, reuse=reuse, **kwargs)


def grn_run_name(cfg: FmnConfig) -> str:
    """Name of the stage-1 run of ``cfg``'s seed: ``grn``, ``grn_seed1`` ..."""
    return "grn" if cfg.seed == 0 else f"grn_seed{cfg.seed}"


def grn_for(cfg: FmnConfig, ctx: RunContext) -> GRN:
    """Stage 1 of ``cfg``: trained once per seed and stage-1 setting (:meth:`FmnConfig.stage1_key`),
    stored as run ``grn`` / ``grn_seed<k>`` with the GRN's retrieval metrics and explanation scores."""
    key = f"grn {sorted(cfg.stage1_key().items())!r}"
    if key not in ctx.models:
        data, device = ctx.data, ctx.device

        def evaluate_fn(model: GRN) -> tuple[dict[str, Any], dict[str, Any] | None]:
            q, g = branch_features(model, cfg, data, device)
            metrics = evaluate_at(q, g, q.feats.shape[1], 1.0, data)
            metrics["cues"] = _cues(cue_energy(model, cfg, data, device), "branch 1")
            return metrics, None

        ctx.models[key] = chapter.train_run(
            ctx, grn_run_name(cfg), cfg, build=lambda: build_grn(cfg, data.num_classes),
            train=lambda model, folder: train_grn(model, cfg, data, folder, device),
            evaluate=evaluate_fn, stored_config=cfg.stage1_key()).model
    return ctx.models[key]  # type: ignore[return-value]


def _cues(scores: dict[str, Any], branch: str) -> dict[str, float]:
    """The ``cues`` metrics of one branch from :func:`cue_energy`'s scores (empty for real data)."""
    if not scores:
        return {}
    out = {"cam_energy": scores[f"cam_energy.{branch}"], "cue_area": scores["cue_area"],
           "cue_type_energy": scores[f"cue_type_energy.{branch}"], "cue_type_area": scores["cue_type_area"]}
    if "mask_energy" in scores:
        out["mask_energy"] = scores["mask_energy"]
    return out


def run_fmn(name: str, cfg: FmnConfig, ctx: RunContext) -> ChapterRun[FmnConfig, FMN]:
    """Stage 1 if needed (:func:`grn_for`), then stage 2 of run ``name``: trained, evaluated and stored
    (or, with ``ctx.reuse``, loaded with the same config).

    ``metrics``: Eq. 6 at ``cfg.alpha`` (mAP/CMC, ``krr``, ``family``), ``alpha`` (mAP and rank-1 at each
    alpha of :data:`ALPHA_SWEEP`), ``cues`` (the LAN's CAM energy on cues and the mask's); ``extra``: the
    LAN's feature alone (``lan``) and the scores of both branches (``cue_scores``).
    """
    data, device = ctx.data, ctx.device
    grn = grn_for(cfg, ctx)

    def build() -> FMN:
        return build_fmn(cfg, copy.deepcopy(grn), data.num_classes)  # stage 2 never touches stage 1

    def evaluate_fn(model: FMN) -> tuple[dict[str, Any], dict[str, Any]]:
        q, g = branch_features(model, cfg, data, device)
        g_dim = q.feats.shape[1] // 2  # [g, l]: the GRN and the LAN end in the same stage 4
        metrics = evaluate_at(q, g, g_dim, cfg.alpha, data)
        metrics["alpha"] = {f"{a:g}": {"mAP": r.mAP, "rank1": r.rank1}
                            for a in ALPHA_SWEEP for r in [rank(q, g, g_dim, a)]}
        scores = cue_energy(model, cfg, data, device)
        metrics["cues"] = _cues(scores, "branch 2")
        lan = evaluate_at(q, g, g_dim, 0.0, data)
        return metrics, {"lan": lan, "cue_scores": scores}

    return chapter.train_run(ctx, name, cfg, build=build,
                             train=lambda model, folder: train_fmn(model, cfg, data, folder, device),
                             evaluate=evaluate_fn)


def run_derived(trained: ChapterRun[FmnConfig, FMN], ctx: RunContext) -> list[RunRecord]:
    """The evaluations of a trained FMN stored as runs of their own, seed suffix kept: ``fmn_lan`` (the
    LAN's feature alone: Table 1's LAN row; its ``cues`` are the LAN's CAM scores) and ``fmn_krr`` (Eq. 6
    re-ranked: Tables 2-4), both from its stored results (no new pass), and ``fmn_mask``, the learned
    mask scored against the cue masks per cue type (:func:`mask_scores`, from the model)."""
    record, suffix = trained.record, seed_suffix(trained.name)
    stem = trained.name.removesuffix(suffix)
    lan = dict(record.extra["lan"])
    lan["cues"] = record.metrics.get("cues", {})
    krr = dict(record.metrics["krr"])
    config = dataclasses.asdict(trained.config)
    model = trained.model

    def mask_fn() -> tuple[dict[str, Any], None]:
        return {"cues": mask_scores(model, trained.config, ctx.data, ctx.device)}, None

    derived = [] if model.mixing is None or ctx.data.synth is None else [
        chapter.evaluation_run(ctx, f"{stem}_mask{suffix}", config | {"descriptor": "mask scores"}, mask_fn,
                               evaluated_from=trained.name)]
    return derived + [
        chapter.evaluation_run(ctx, f"{stem}_lan{suffix}", config | {"descriptor": "lan"},
                               lambda: (lan, None), evaluated_from=trained.name),
        chapter.evaluation_run(ctx, f"{stem}_krr{suffix}", config | {"descriptor": "fmn+krr"},
                               lambda: (krr, None), evaluated_from=trained.name),
    ]


def run_all(base: FmnConfig, ctx: RunContext, names: Sequence[str] | None = None
            ) -> dict[str, ChapterRun[FmnConfig, FMN]]:
    """Every run of :data:`RUNS` (or ``names``) in order, one log line each (the GRN of each seed is
    trained before that seed's first stage-2 run); then the derived ``fmn_lan`` / ``fmn_krr`` runs of
    each seed of ``fmn``."""
    runs = chapter.run_all(names if names is not None else RUNS,
                           lambda name: run_fmn(name, run_config(name, base), ctx))
    for name in [n for n in runs if n == "fmn" or n.startswith("fmn_seed")]:
        run_derived(runs[name], ctx)
    return runs

