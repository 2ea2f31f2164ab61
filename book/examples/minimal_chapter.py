"""The smallest complete chapter recipe: IDE+BN on SynthReID, written on the chapter contract.

A paper's recipe (``reidlib/recipes/<paper>.py``) has exactly these parts: its config (a dataclass that
inherits :class:`reidlib.recipes.chapter.ChapterConfig`) with one instance per scale, its run table, how a
run's model is built, trained and evaluated, and the two functions that hand those to the contract. Run
folders, seeding, weights, reuse, resuming and results files are the contract's. ``tests/book`` runs this
file at the ``smoke`` scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reidlib.data.transforms import build_test_transform, build_train_transform
from reidlib.engine.config import OptimizerConfig, TrainConfig
from reidlib.engine.extract import extract_features
from reidlib.engine.trainer import Trainer
from reidlib.evaluation.features import evaluate_features
from reidlib.losses import IdentityLoss
from reidlib.models.backbone import build_backbone
from reidlib.models.baseline import IDEBN
from reidlib.recipes import chapter

CHAPTER = "minimal"


@dataclass
class MinimalConfig(chapter.ChapterConfig):
    """One run: the contract's fields (scale, dataset, synth_preset, seed) and the paper's own."""

    width: int = 16  # backbone width: 64 is torchvision's ResNet-18, less a narrow one
    height: int = 64
    image_width: int = 32
    epochs: int = 2
    lr: float = 1e-3

    @property
    def render_size(self) -> tuple[int, int]:
        return self.height, self.image_width


SCALE_CONFIGS = {
    "smoke": MinimalConfig(scale="smoke", synth_preset="tiny", width=8, epochs=1),
    "cpu": MinimalConfig(scale="cpu", synth_preset="small", epochs=8),
}
#: The run table: name -> overrides of the scale's config.
RUNS: dict[str, dict[str, Any]] = {"ide_bn": {}}
#: ... and each run a claim compares again with other training seeds (``ide_bn_seed1``): a claim's verdict
#: pairs its arms seed by seed (a real chapter uses three seeds or more).
RUNS |= chapter.seed_replicas(RUNS, ["ide_bn"], (1,))


def build(cfg: MinimalConfig, data: chapter.ChapterData) -> IDEBN:
    return IDEBN(data.num_classes, backbone=build_backbone(18, cfg.width, last_stride=1))


def train(model: IDEBN, cfg: MinimalConfig, data: chapter.ChapterData, folder: Path) -> list[dict]:
    loader = chapter.train_loader(data, build_train_transform(cfg.height, cfg.image_width), 32, cfg.seed)
    train_cfg = TrainConfig(epochs=cfg.epochs, optimizer=OptimizerConfig(name="adam", lr=cfg.lr),
                            seed=cfg.seed, progress="line")
    trainer = Trainer(model, IdentityLoss(), loader, train_cfg, folder, record={"config": vars(cfg)})
    return trainer.fit_or_resume().to_list()


def evaluate(model: IDEBN, cfg: MinimalConfig, data: chapter.ChapterData) -> tuple[dict, dict]:
    tf = build_test_transform(cfg.height, cfg.image_width)
    q, g = (extract_features(model, chapter.test_loader(data, records, tf))
            for records in (data.splits.query, data.splits.gallery))
    result = evaluate_features(q.feats, g.feats, q.pids, g.pids, q.camids, g.camids)
    return result.metrics(), {}


def run(name: str, cfg: MinimalConfig, ctx: chapter.RunContext) -> chapter.ChapterRun:
    return chapter.train_run(ctx, name, cfg, build=lambda: build(cfg, ctx.data),
                             train=lambda model, folder: train(model, cfg, ctx.data, folder),
                             evaluate=lambda model: evaluate(model, cfg, ctx.data))


def run_all(base: MinimalConfig, ctx: chapter.RunContext) -> dict[str, chapter.ChapterRun]:
    return chapter.run_all(RUNS, lambda name: run(name, chapter.run_config(RUNS, name, base), ctx))
