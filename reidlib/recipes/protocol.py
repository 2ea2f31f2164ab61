"""The recipe of the book's *Protocol and data* page: SynthReID's presets, the real datasets' layouts, and
one BNNeck baseline whose ranking is scored with the three AP definitions of
:data:`reidlib.evaluation.rank.AP_MODES`.

The run is stored as ``results/protocol/<scale>/baseline.json``: its ``metrics`` are the ``full``
definition's :meth:`~reidlib.evaluation.rank.RankResult.as_dict` plus ``ap_modes`` (definition -> mAP),
its ``extra["per_query_ap"]`` holds every query's AP per definition. All stored values are fractions in
[0, 1]; the tables here show percent.

    cfg = protocol_config("cpu")
    record = run_protocol(cfg, "cpu")
    ap_definitions_table(record)
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from reidlib.data.records import Record
from reidlib.data.synthetic import PRESETS, SynthReID
from reidlib.engine.checkpoint import load_checkpoint, model_state_from
from reidlib.engine.device import resolve_device
from reidlib.engine.extract import Features, extract_features, rank_features
from reidlib.evaluation.rank import AP_MODES, TRUNCATION_RANK
from reidlib.recipes.baseline import (
    SYNTHREID,
    BaselineConfig,
    build_data,
    build_model,
    load_baseline_config,
    run_baseline,
)
from reidlib.results.paths import repo_root, runs_root
from reidlib.results.store import RunOutcome, RunRecord, run_or_reuse

CHAPTER = "protocol"
RUN = "baseline"
#: The AP definition the others are compared with.
REFERENCE_MODE = "full"
#: Modules documenting the real datasets' layouts, in the order the page shows them.
REAL_DATASET_MODULES = ("market1501", "dukemtmc", "cuhk03", "msmt17")


# ---------------------------------------------------------------------------------------------- data
def presets_table() -> pd.DataFrame:
    """SynthReID's presets (:data:`reidlib.data.synthetic.PRESETS`), one row each (index ``preset``).

    Returns:
        Integer columns ``train ids, train images, test ids, query images, gallery images`` (test gallery
        plus distractors), ``distractors, cameras, family size``.
    """
    return pd.DataFrame(
        [{"preset": name, "train ids": c.num_train_ids, "train images": c.num_train_images,
          "test ids": c.num_test_ids, "query images": c.num_query,
          "gallery images": c.num_gallery_test + c.num_distractors, "distractors": c.num_distractors,
          "cameras": c.num_cameras, "family size": c.family_size}
         for name, c in PRESETS.items()]
    ).set_index("preset")


def query_with_cues(synth: SynthReID) -> Record:
    """The first query image of ``synth`` whose cue map marks at least one identity cue.

    Raises:
        ValueError: no query image shows a cue.
    """
    for record in synth.splits.query:
        if synth.render(record.path).cues.any():
            return record
    raise ValueError(f"no query image of {synth.splits.name} shows an identity cue")


@dataclass(frozen=True)
class DatasetLayout:
    """How a real dataset's folder must look, from its loader's module docstring.

    Attributes:
        title: the docstring's first line without its final period (dataset and paper).
        module: the loader's module name (``reidlib.data.market1501``).
        layout: the rest of the docstring (folder tree and file-name fields), reStructuredText.
    """

    title: str
    module: str
    layout: str


def real_dataset_layouts() -> list[DatasetLayout]:
    """The layouts of Market-1501, DukeMTMC-reID, CUHK03-NP and MSMT17 (:data:`REAL_DATASET_MODULES`)."""
    import importlib

    out = []
    for name in REAL_DATASET_MODULES:
        module = importlib.import_module(f"reidlib.data.{name}")
        title, _, body = (inspect.getdoc(module) or "").partition("\n")
        out.append(DatasetLayout(title.rstrip("."), module.__name__, body.strip()))
    return out


# ---------------------------------------------------------------------------------------------- config
def config_path(scale: str) -> Path:
    """``<repo>/book/configs/protocol_<scale>.yaml``."""
    return repo_root() / "book" / "configs" / f"protocol_{scale}.yaml"


def protocol_config(scale: str, dataset: str | None = None, data_root: str | None = None,
                    device: str = "auto", seed: int = 0) -> BaselineConfig:
    """The page's baseline config at ``scale``, with the page's parameters applied.

    Args:
        scale: ``smoke``, ``cpu`` or ``full`` (picks :func:`config_path`).
        dataset, data_root: replace ``data.name`` / ``data.root`` when given (full scale, real data).
        device: the run's device (``auto``, ``cpu``, ``cuda``).
        seed: the training seed (``train.seed``).

    Raises:
        FileNotFoundError: no config file for ``scale``.
    """
    path = config_path(scale)
    if not path.is_file():
        raise FileNotFoundError(f"no protocol config for scale {scale!r} at {path}")
    cfg = load_baseline_config(path)
    data_fields = {k: v for k, v in {"name": dataset, "root": data_root}.items() if v}
    data = dataclasses.replace(cfg.data, **data_fields)
    return dataclasses.replace(cfg, data=data, device=device, train=dataclasses.replace(cfg.train, seed=seed))


def dataset_label(cfg: BaselineConfig) -> str:
    """The dataset name stored with the run: ``synthreid-<preset>`` or the real dataset's name."""
    return f"{SYNTHREID}-{cfg.data.preset}" if cfg.data.name == SYNTHREID else cfg.data.name


def protocol_out_dir(scale: str, root: str | os.PathLike | None = None) -> Path:
    """Where the run's weights go: ``<runs root>/protocol/<scale>``
    (:func:`reidlib.results.paths.runs_root`)."""
    return runs_root(root) / CHAPTER / scale


def config_table(cfg: BaselineConfig) -> pd.DataFrame:
    """The run's settings as one ``setting`` column (mixed strings and ints), index ``dataset, input
    (pixels), model, epochs, batch, optimizer, seed``."""
    return pd.DataFrame(
        {"setting": [dataset_label(cfg), f"{cfg.data.height}x{cfg.data.width}",
                     f"{cfg.model.arch}, ResNet-{cfg.model.depth}", cfg.train.epochs, cfg.data.batch_size,
                     f"{cfg.train.optimizer.name}, lr {cfg.train.optimizer.lr:g}", cfg.train.seed]},
        index=["dataset", "input (pixels)", "model", "epochs", "batch", "optimizer", "seed"],
    )


# ---------------------------------------------------------------------------------------------- run
def ranking_features(cfg: BaselineConfig, checkpoint: str | os.PathLike) -> tuple[Features, Features]:
    """Query and gallery features (L2-normalised, loader order) of the model saved in ``checkpoint``."""
    dev = resolve_device(cfg.device)
    data = build_data(cfg.data, seed=cfg.train.seed, progress=False)
    model = build_model(cfg.model, data.splits.num_train_pids)
    model.load_state_dict(model_state_from(load_checkpoint(checkpoint), checkpoint))
    model.to(dev)
    return (extract_features(model, data.query_loader, dev, progress=False),
            extract_features(model, data.gallery_loader, dev, progress=False))


def score_ranking(query: Features, gallery: Features, metric: str = "euclidean") -> RunOutcome:
    """One ranking scored with every AP definition of :data:`~reidlib.evaluation.rank.AP_MODES`.

    Returns:
        A :class:`~reidlib.results.store.RunOutcome` whose ``metrics`` are the ``full`` definition's
        ``RankResult.as_dict()`` plus ``ap_modes`` (definition -> mAP) and whose ``extra`` is
        ``{"per_query_ap": {definition: [AP of each valid query]}}`` (fractions); no history.
    """
    results = {mode: rank_features(query, gallery, metric=metric, ap_mode=mode) for mode in AP_MODES}
    metrics = {**results[REFERENCE_MODE].as_dict(), "ap_modes": {mode: r.mAP for mode, r in results.items()}}
    per_query = {mode: r.ap.tolist() for mode, r in results.items()}
    return RunOutcome(metrics=metrics, extra={"per_query_ap": per_query})


def run_protocol(
    cfg: BaselineConfig,
    scale: str,
    reuse: bool = False,
    out_dir: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
) -> RunRecord:
    """Train the baseline of ``cfg`` (:func:`~reidlib.recipes.baseline.run_baseline`, from scratch), score
    its ranking with the three AP definitions (:func:`score_ranking`) and store the run as
    ``<results root>/protocol/<scale>/baseline.json``.

    Args:
        cfg: from :func:`protocol_config`; it is the stored config that ``reuse`` compares.
        scale: the results file's scale.
        reuse: load a stored run with the same config instead of training
            (:func:`reidlib.results.store.run_or_reuse`).
        out_dir: where the weights go (default :func:`protocol_out_dir`).
        root: results root (default :func:`reidlib.results.paths.results_root`).

    Returns:
        The stored run: ``metrics`` and ``extra`` as in :func:`score_ranking` (fractions), ``history`` the
        training's per-epoch logs.
    """
    out = Path(out_dir) if out_dir is not None else protocol_out_dir(scale)

    def train_and_score() -> RunOutcome:
        summary = run_baseline(cfg, out_dir=out, resume=False, progress=False)
        query, gallery = ranking_features(cfg, out / "latest.pt")
        outcome = score_ranking(query, gallery, metric=cfg.eval.metric)
        return dataclasses.replace(outcome, history=summary["history"])

    return run_or_reuse(CHAPTER, RUN, scale, cfg, train_and_score, reuse=reuse, dataset=dataset_label(cfg),
                        seed=cfg.train.seed, root=root, device=str(resolve_device(cfg.device)))


# ---------------------------------------------------------------------------------------------- report
def ap_definitions_table(record: RunRecord) -> pd.DataFrame:
    """mAP of the run under each AP definition.

    Returns:
        Index ``AP definition`` (:data:`~reidlib.evaluation.rank.AP_MODES` order); columns ``mAP (%)`` and
        ``difference to full (points)`` (percentage points, negative = below the full definition), both
        rounded to 0.01.
    """
    modes = record.metrics["ap_modes"]
    return pd.DataFrame(
        {"mAP (%)": [100 * modes[m] for m in AP_MODES],
         "difference to full (points)": [100 * (modes[m] - modes[REFERENCE_MODE]) for m in AP_MODES]},
        index=pd.Index(AP_MODES, name="AP definition"),
    ).round(2)


def per_query_ap(record: RunRecord) -> dict[str, np.ndarray]:
    """AP definition -> every valid query's AP (float array, fractions, the same query order for all)."""
    return {mode: np.asarray(values, dtype=float) for mode, values in record.extra["per_query_ap"].items()}


@dataclass(frozen=True)
class ApComparison:
    """The numbers the page's prose quotes about one protocol run.

    Attributes:
        map_percent: AP definition -> mAP in percent (unrounded).
        rank1_percent: CMC rank-1 in percent.
        num_queries: valid queries scored.
        lost_to_truncation: queries whose truncated AP is below their full AP (some true match ranks below
            :attr:`truncation_rank`).
        truncation_rank: the rank the truncated definition stops at.
        dataset: the run's dataset.
    """

    map_percent: dict[str, float]
    rank1_percent: float
    num_queries: int
    lost_to_truncation: int
    truncation_rank: int
    dataset: str


def ap_comparison(record: RunRecord) -> ApComparison:
    """What the three AP definitions did to ``record``'s ranking (see :class:`ApComparison`)."""
    per_query = per_query_ap(record)
    full = per_query[REFERENCE_MODE]
    lost = int((per_query["truncated50"] < full - 1e-12).sum())
    return ApComparison(
        map_percent={m: 100 * float(v) for m, v in record.metrics["ap_modes"].items()},
        rank1_percent=100 * float(record.metrics["rank1"]),
        num_queries=len(full),
        lost_to_truncation=lost,
        truncation_rank=TRUNCATION_RANK,
        dataset=record.dataset,
    )
