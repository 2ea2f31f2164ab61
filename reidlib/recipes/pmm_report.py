"""Tables and figures of the PMM chapter (seed 004).

The tables read the results files (never a model in memory) and the paper's numbers
(``book/data/paper_numbers/pmm.csv``: Table 3; the paper's Table 2 did not survive the text extraction);
each of our cells is an arm's seed mean, standard deviation and number of seeds. Only :func:`figure4` and
:func:`mixed_maps_figure` need the trained models.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from reidlib.figures.runs import arms_figure, training_curves
from reidlib.figures.style import use_book_style
from reidlib.recipes import report
from reidlib.recipes.chapter import ChapterData
from reidlib.recipes.pmm import (
    BLOCK_SWEEP,
    CHAPTER,
    K_SWEEP,
    SCALE_CONFIGS,
    PmmConfig,
    block_run_name,
    k_run_name,
    stage_gradcams,
)
from reidlib.recipes.report import family_table as family_table  # the chapter reads it from here
from reidlib.results.store import RunRecord

METRICS = ("rank1", "mAP")
#: Table 3's rows: paper method -> our run.
TABLE3_RUNS = {"CutOut": "cutout", "CutMix": "cutmix", "A-CutMix": "acutmix", "A-Hard-Mix": "pmm"}
TABLE3_DATASETS = ("Market-1501", "DukeMTMC-reID", "CUHK03 (detected)")
#: BDB's own reported numbers (its paper; PMM's Table 2 did not survive the text extraction).
REPORTED_RUNS = {"BDB": "bdb", "PMM": "pmm"}
REPORTED_DATASETS = ("Market-1501", "DukeMTMC-reID", "CUHK03 (labeled)", "CUHK03 (detected)")
#: The stage sweep: stages -> run.
STAGE_RUNS = {"1 stage": "pmm_stages1", "2 stages": "pmm_stages2", "3 stages (PMM)": "pmm"}
#: Beyond the paper: what makes the mix work.
BEYOND_RUNS = {"PMM (Grad-CAM blocks, random negative)": "pmm", "three stages, no mixing": "pmm_no_mix",
               "random blocks instead of Grad-CAM's": "pmm_random_blocks",
               "the hardest negative as partner": "pmm_hardest"}


def chapter_records(scale: str, root: str | os.PathLike | None = None) -> dict[str, RunRecord]:
    """Every stored run of the chapter at ``scale``."""
    return report.chapter_records(CHAPTER, scale, root)


def main_table(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """BDB vs PMM, ours (seed mean ± sd): mAP, rank-1, rank-5 and the public code's truncated AP."""
    rows = [{"model": label, "our run": run} | {m: report.arm_cell(records, run, m)
                                               for m in ("mAP", "rank1", "rank5", "truncated50_mAP")}
            for label, run in (("BDB (global + dropped part branch)", "bdb"),
                               ("PMM (three stages, A-Hard-Mix)", "pmm"))]
    return pd.DataFrame(rows).set_index("model")


def reported_table(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """BDB's reported numbers on the four benchmarks beside our BDB and PMM (PMM's own numbers were in its
    Table 2, lost in the text extraction: its paper cells are empty)."""
    return report.paper_tables_beside_ours(CHAPTER, records, REPORTED_RUNS, REPORTED_DATASETS, METRICS,
                                           index="model")


def table3(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Table 3: the four mixing methods, the paper's three datasets beside ours."""
    return report.paper_tables_beside_ours(CHAPTER, records, TABLE3_RUNS, TABLE3_DATASETS, METRICS,
                                           index="Table 3")


def plot_arms(records: Mapping[str, RunRecord], runs: Mapping[str, str], title: str, metric: str = "mAP",
              paper: Mapping[str, float] | None = None, paper_label: str = "paper") -> Figure:
    """``runs`` side by side, each seed a point (:func:`reidlib.figures.runs.arms_figure`)."""
    return arms_figure(report.labelled_points(records, runs, metric), paper, metric, title, paper_label)


def k_runs(base: PmmConfig) -> dict[str, str]:
    """The K sweep's runs by label."""
    return {f"K = {k}": k_run_name(k, base) for k in K_SWEEP}


def block_runs(base: PmmConfig) -> dict[str, str]:
    """The block-size sweep's runs by label, the scale's own block first."""
    h, w = base.map_size

    def label(block: Sequence[int], k: int) -> str:
        return f"{block[0]}x{block[1]} cells, K = {k} ({k * block[0] * block[1]} of {h * w} cells)"

    runs = {label(base.block, base.k): "pmm"}
    runs |= {label(block, k): block_run_name(block) for block, k in BLOCK_SWEEP}
    return runs


def occlusion_table(records: Mapping[str, RunRecord], runs: Mapping[str, str]) -> pd.DataFrame:
    """mAP with and without each test image's K most active backbone blocks zeroed, and the share kept
    (percent, seed mean ± sd)."""
    rows = [{"model": label, "our run": run, "mAP": report.arm_cell(records, run, "mAP"),
             "mAP, salient blocks zeroed": report.arm_cell(records, run, "occluded.mAP"),
             "mAP kept (%)": report.arm_cell(records, run, "occluded.retained")}
            for label, run in runs.items()]
    return pd.DataFrame(rows).set_index("model")


def sweep_table(records: Mapping[str, RunRecord], runs: Mapping[str, str], index: str) -> pd.DataFrame:
    """mAP and rank-1 of ``runs`` (label -> run), seed mean ± sd."""
    rows = [{index: label, "our run": run} | {m: report.arm_cell(records, run, m) for m in ("mAP", "rank1")}
            for label, run in runs.items()]
    return pd.DataFrame(rows).set_index(index)


def map_scores_table(records: Mapping[str, RunRecord], runs: Mapping[str, str]) -> pd.DataFrame:
    """Where each stage's (BDB: branch's) Grad-CAM puts its energy, its activation area and the overlap
    between stages (percent, seed mean ± sd), beside the shares of a uniform map."""
    rows = []
    for label, run in runs.items():
        recs = report.arm_records(records, run)
        maps = recs[0].metrics.get("maps", {}) if recs else {}
        for stage in sorted(k for k in maps if k.startswith("stage")):
            rows.append({"model": label, "map": stage,
                         "on cues (%)": report.arm_cell(records, run, f"maps.{stage}.cues"),
                         "on the person (%)": report.arm_cell(records, run, f"maps.{stage}.body"),
                         "off the person (%)": report.arm_cell(records, run, f"maps.{stage}.background"),
                         "activation area (%)": report.arm_cell(records, run, f"maps.{stage}.area")})
        if maps:
            rows.append({"model": label, "map": "overlap of the stages' top-10% regions (IoU, %)",
                         "on cues (%)": report.arm_cell(records, run, "maps.overlap")})
            rows.append({"model": label, "map": "a uniform map (the areas)",
                         "on cues (%)": report.arm_cell(records, run, "maps.cue_area"),
                         "on the person (%)": report.arm_cell(records, run, "maps.body_area")})
    columns = ["model", "map", "on cues (%)", "on the person (%)", "off the person (%)",
               "activation area (%)"]
    return pd.DataFrame(rows, columns=columns).set_index(["model", "map"]).fillna("")


def plot_histories(records: Mapping[str, RunRecord], runs: Sequence[str], title: str) -> Figure:
    """Loss per epoch of ``runs`` (the per-stage loss summed over stages)."""
    return training_curves(records, runs, "training loss (summed over stages)", title)


# ------------------------------------------------------------------------------------ figures


def _images(cfg: PmmConfig, data: ChapterData, n: int) -> tuple[list[Any], list[Any], torch.Tensor]:
    from reidlib.data.records import one_per_identity
    from reidlib.data.transforms import build_test_transform

    records = one_per_identity(data.splits.train, n)
    tf = build_test_transform(cfg.height, cfg.width)
    pil = [data.image_source(r.path) for r in records]
    return records, pil, torch.stack([tf(im) for im in pil])


def figure4(pmm_model: torch.nn.Module, bdb_model: torch.nn.Module, cfg: PmmConfig, data: ChapterData,
            n: int = 6) -> Figure:
    """Fig. 4 (and Fig. 1): the Grad-CAM of BDB's two branches and of PMM's three stages on the same
    training images, each for the image's own class, each map on its own ``[0, 1]`` scale; the image's
    identity cues outlined."""
    import matplotlib.pyplot as plt

    from reidlib.explain.overlay import add_colorbar, show_image

    use_book_style()
    records, pil, images = _images(cfg, data, n)
    classes = torch.tensor([r.pid for r in records])
    maps = {"BDB": stage_gradcams(bdb_model.cpu(), images, classes),
            "PMM": stage_gradcams(pmm_model.cpu(), images, classes)}
    columns = [("image", None)]
    columns += [(f"BDB {name}", maps["BDB"][:, i]) for i, name in enumerate(("global", "part"))]
    columns += [(f"PMM stage {'I' * (i + 1) if i < 3 else i + 1}", maps["PMM"][:, i])
                for i in range(maps["PMM"].shape[1])]
    fig, axes = plt.subplots(len(records), len(columns), figsize=(1.25 * len(columns), 2.1 * len(records)),
                             squeeze=False)
    for r, rec in enumerate(records):
        cues = data.synth.render(rec.path).cues > 0 if data.synth is not None else None
        for c, (title, m) in enumerate(columns):
            show_image(axes[r, c], np.asarray(pil[r]), None if m is None else m[r],
                       title=title if r == 0 else None, contour=cues if c == 0 else None)
    add_colorbar(fig, axes[:, 1:].ravel().tolist(), "Grad-CAM, each map scaled to its maximum")
    fig.suptitle("Fig. 4: Grad-CAM of BDB's branches and PMM's stages (outlined: identity cues)", fontsize=9)
    return fig


def mixed_maps_figure(pmm_model: torch.nn.Module, cfg: PmmConfig, data: ChapterData, n: int = 4) -> Figure:
    """One training batch's mixing: for ``n`` images (P x K pairs, so negatives exist) the backbone map
    (channel sum), stage I's Grad-CAM, the Eq. 1 mask for stage II and stage II's mixed input, then the
    same for stage III. Runs a copy of the model in training mode, so the trained model's BatchNorm
    statistics are untouched."""
    import matplotlib.pyplot as plt

    from reidlib.explain.overlay import show_image

    use_book_style()
    model = copy.deepcopy(pmm_model).cpu().train()
    records, pil, images = _images(cfg, data, n)
    pids = torch.tensor([r.pid for r in records])
    out = model(images, pids, generator=torch.Generator().manual_seed(0))
    base_map = out.feature_maps[0].detach().sum(dim=1)
    columns = [("image", None), ("F (channel sum)", base_map)]
    for s in range(out.extras["masks"].shape[1]):
        label = "II" if s == 0 else "III"
        columns += [(f"guide for {label}", out.extras["cams"][:, s]),
                    (f"mask for {label}", out.extras["masks"][:, s]),
                    (f"input of {label}", out.feature_maps[s + 1].detach().sum(dim=1))]
    fig, axes = plt.subplots(len(records), len(columns), figsize=(1.2 * len(columns), 2.1 * len(records)),
                             squeeze=False)
    for r in range(len(records)):
        for c, (title, m) in enumerate(columns):
            show_image(axes[r, c], np.asarray(pil[r]), None if m is None else m[r],
                       title=title if r == 0 else None)
    fig.suptitle("A-Hard-Mix on one batch: the guiding Grad-CAM, Eq. 1's mask (dark: replaced) and the "
                 "mixed input of each stage", fontsize=9)
    return fig


# ------------------------------------------------------------------------------------ parameters


def config_table(configs: Mapping[str, PmmConfig]) -> list[dict[str, Any]]:
    """Rows describing configs side by side (for the chapter's parameter table)."""
    rows = []
    for label, c in configs.items():
        h, w = c.map_size
        rows.append({
            "setting": label,
            "dataset": report.dataset_cell(c),
            "backbone": report.backbone_cell(c),
            "input (map)": f"{c.height}x{c.width} ({h}x{w})",
            "blocks (K)": f"{c.block[0]}x{c.block[1]} cells, {(h // c.block[0]) * (w // c.block[1])} blocks "
                          f"(K = {c.k})",
            "stage width": f"{c.dim} (BDB part branch {c.bdb_part_dim})",
            "batch": f"{c.batch_size} = {c.batch_size // c.num_instances} ids x {c.num_instances}",
            "optimizer": f"Adam, LR {c.lr:g}, wd {c.weight_decay:g}",
            "schedule": f"{c.epochs} epochs, warm-up {c.warmup_epochs:g}, x{c.lr_gamma:g} at "
                        f"{c.lr_milestones or 'never'}",
            "loss": f"per stage: CE (eps {c.label_smoothing:g}) + triplet "
                    f"({'soft margin' if c.triplet_margin is None else c.triplet_margin})",
            "augmentation": f"flip, random erasing {c.random_erasing:g}",
        })
    return rows


def chapter_settings(base: PmmConfig) -> dict[str, PmmConfig]:
    """The paper's setting (the public code's, batch 64), the ``cpu`` and ``full`` configs and, when it is
    neither, ``base``."""
    paper = dataclasses.replace(SCALE_CONFIGS["full"], dataset="market1501")
    settings = {"paper (public code, batch 64, Market-1501)": paper, "cpu": SCALE_CONFIGS["cpu"],
                "full": SCALE_CONFIGS["full"]}
    if base not in settings.values():
        settings[f"this run ({base.scale})"] = base
    return settings
