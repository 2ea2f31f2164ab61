"""Tables and figures of the hybrid-attention chapter (seed 003).

The tables read the results files (never a model in memory) and the paper's numbers
(``book/data/paper_numbers/hybrid_attention.csv``); each of our cells is an arm's seed mean, standard
deviation and number of seeds (:func:`reidlib.recipes.report.arm_cell`), in percent like the paper. Only
:func:`figure8`, the paper's qualitative figure with the attention maps, needs the trained models.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from reidlib.figures.runs import arms_figure, training_curves
from reidlib.figures.style import OKABE_ITO, use_book_style
from reidlib.recipes import report
from reidlib.recipes.chapter import ChapterData
from reidlib.recipes.hybrid_attention import (
    CHAPTER,
    DOMAIN_B_RUNS,
    MISALIGNMENTS,
    SCALE_CONFIGS,
    TABLE6_RUNS,
    TABLE7_RUNS,
    TABLE9_RUNS,
    TABLE10_RUNS,
    HybridAttentionConfig,
)
from reidlib.recipes.report import family_table as family_table  # the chapter reads it from here
from reidlib.results.store import RunRecord

MARKET, DUKE = "Market-1501", "DukeMTMC-reID"
METRICS = ("rank1", "mAP")


def chapter_records(scale: str, root: str | os.PathLike | None = None) -> dict[str, RunRecord]:
    """Every stored run of the chapter at ``scale``: ``{run name: record}`` (empty when none ran)."""
    return report.chapter_records(CHAPTER, scale, root)


def paper_metric(metric: str, setting: str, dataset: str = MARKET) -> float:
    """The paper's ``metric`` (percent) for ``setting`` (e.g. ``"Table 6: + MGO"``) on ``dataset``."""
    return report.paper_value(CHAPTER, setting, dataset, metric)


def ablation_table(records: Mapping[str, RunRecord], table: str, runs: Mapping[str, str],
                   datasets: Sequence[str]) -> pd.DataFrame:
    """One of the paper's ablation tables beside ours
    (:func:`reidlib.recipes.report.paper_tables_beside_ours`; the paper's rows are ``"<table>: <row>"``)."""
    return report.paper_tables_beside_ours(CHAPTER, records, runs, datasets, METRICS, prefix=f"{table}: ",
                                           index=table)


def table6(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Table 6: components added in turn (Market-1501 and DukeMTMC-reID beside ours)."""
    return ablation_table(records, "Table 6", TABLE6_RUNS, (MARKET, DUKE))


def table7(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Table 7: each component alone on the baseline, and MGO vs PCB with everything on (DukeMTMC-reID)."""
    return ablation_table(records, "Table 7", TABLE7_RUNS, (DUKE,))


def table9(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Table 9: the attention orders on BaselineBMM (Market-1501)."""
    runs = {("BaselineBMM" if order == "none" else f"BaselineBMM + {order}"): run
            for order, run in TABLE9_RUNS.items()}
    return ablation_table(records, "Table 9", runs, (MARKET,))


def table10(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Table 10: the fused stages (Market-1501 and DukeMTMC-reID beside ours)."""
    return ablation_table(records, "Table 10", TABLE10_RUNS, (MARKET, DUKE))


def table8(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Table 8, cross-domain: the paper's Duke -> Market and Market -> Duke beside ours, SynthReID a -> b
    (the domain-a baseline and full model tested on domain b) and b -> a (the two trained on domain b);
    the middle rows are not run across domains."""
    b_runs = {setting: run for setting, run in DOMAIN_B_RUNS.items()}
    rows = []
    for setting, run in TABLE6_RUNS.items():
        row: dict[str, Any] = {"Table 8": setting}
        for direction in ("Duke -> Market", "Market -> Duke"):
            row |= {f"paper {m}, {direction}": paper_metric(m, f"Table 8: {setting}", direction)
                    for m in METRICS}
        row |= {f"ours {m}, a -> b": report.arm_cell(records, run, f"cross.{m}") for m in METRICS}
        b_run = b_runs.get(setting)
        row |= {f"ours {m}, b -> a": report.arm_cell(records, b_run, f"cross.{m}") if b_run else "not run"
                for m in METRICS}
        rows.append(row)
    return pd.DataFrame(rows).set_index("Table 8")


def plot_table(records: Mapping[str, RunRecord], table: str, runs: Mapping[str, str], metric: str = "mAP",
               dataset: str = MARKET) -> Figure:
    """A table of :func:`ablation_table` drawn: our seeds as points, the paper's ``dataset`` values as
    diamonds on their own axis."""
    paper = {label: paper_metric(metric, f"{table}: {label}", dataset) for label in runs}
    return arms_figure(report.labelled_points(records, runs, metric), paper, metric, f"{table}: {metric}",
                       f"paper ({dataset})")


def table9_runs() -> dict[str, str]:
    """Table 9's rows by the paper's labels."""
    return {("BaselineBMM" if o == "none" else f"BaselineBMM + {o}"): r for o, r in TABLE9_RUNS.items()}


def misalignment_points(records: Mapping[str, RunRecord], runs: Mapping[str, str]) -> pd.DataFrame:
    """mAP (percent) at each test-time box jitter (0 = the aligned test set) of every seed of ``runs``
    (label -> run): columns ``label``, ``run``, ``seed``, ``jitter``, ``mAP``."""
    rows = []
    for label, run in runs.items():
        for rec in report.arm_records(records, run):
            rows.append({"label": label, "run": run, "seed": rec.seed, "jitter": 0.0,
                         "mAP": report.percent(rec, "mAP")})
            for jitter in MISALIGNMENTS:
                rows.append({"label": label, "run": run, "seed": rec.seed, "jitter": jitter,
                             "mAP": report.percent(rec, f"misaligned.j{round(100 * jitter):02d}.mAP")})
    return pd.DataFrame(rows, columns=["label", "run", "seed", "jitter", "mAP"])


def plot_misalignment(records: Mapping[str, RunRecord], runs: Mapping[str, str]) -> Figure:
    """mAP against the test-time box jitter for ``runs`` (label -> run): each seed a point, the line
    through the seed means; left in percent, right as the share of the aligned mAP kept."""
    import matplotlib.pyplot as plt

    use_book_style()
    points = misalignment_points(records, runs)
    aligned = points[points["jitter"] == 0].set_index(["run", "seed"])["mAP"]
    points["kept"] = [100 * v / aligned.get((r, s), math.nan)
                      for r, s, v in zip(points["run"], points["seed"], points["mAP"], strict=True)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, label in enumerate(runs):
        rows = points[points["label"] == label]
        for ax, col in ((axes[0], "mAP"), (axes[1], "kept")):
            means = rows.groupby("jitter")[col].mean()
            ax.plot(100 * means.index, means.values, marker="o", color=OKABE_ITO[i], label=label)
            ax.scatter(100 * rows["jitter"], rows[col], s=12, color=OKABE_ITO[i], alpha=0.45,
                       edgecolor="none")
    axes[0].set(xlabel="box jitter at test time (% of the box)", ylabel="mAP (%)",
                title="mAP under misaligned boxes")
    axes[1].set(xlabel="box jitter at test time (% of the box)", ylabel="share of the aligned mAP kept (%)",
                title="Robustness (each seed a point)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def ap_definitions_table(records: Mapping[str, RunRecord], runs: Sequence[str]) -> pd.DataFrame:
    """The standard (non-interpolated) mAP beside the public code's trapezoidal mAP for ``runs``."""
    rows = [{"run": r, "mAP, standard (%)": report.arm_cell(records, r),
             "mAP, trapezoidal (%)": report.arm_cell(records, r, "trapezoid_mAP"),
             "difference (points)": round(report.arm_mean(records, r, "trapezoid_mAP")
                                          - report.arm_mean(records, r), 2)} for r in runs]
    return pd.DataFrame(rows).set_index("run")


def map_scores_table(records: Mapping[str, RunRecord], runs: Sequence[str]) -> pd.DataFrame:
    """Where each stage's activation and spatial attention put their energy (percent, seed mean ± sd):
    on identity cues and on the person, beside the shares of a uniform map (the areas)."""
    rows = []
    for run in runs:
        recs = report.arm_records(records, run)
        maps = recs[0].metrics.get("maps", {}) if recs else {}
        for kind, label in (("activation", "activation"), ("spatial_attention", "spatial attention")):
            for stage in maps.get(kind, {}):
                rows.append({"run": run, "map": f"{label}, {stage}",
                             "on cues (%)": report.arm_cell(records, run, f"maps.{kind}.{stage}.cues"),
                             "on the person (%)": report.arm_cell(records, run, f"maps.{kind}.{stage}.body")})
        if maps:
            rows.append({"run": run, "map": "a uniform map (the areas)",
                         "on cues (%)": report.arm_cell(records, run, "maps.cue_area"),
                         "on the person (%)": report.arm_cell(records, run, "maps.body_area")})
    return pd.DataFrame(rows, columns=["run", "map", "on cues (%)", "on the person (%)"]).set_index(
        ["run", "map"])


def plot_histories(records: Mapping[str, RunRecord], runs: Sequence[str], title: str) -> Figure:
    """Loss per epoch of ``runs`` (Eq. 4; :func:`reidlib.figures.runs.training_curves`)."""
    return training_curves(records, runs, "training loss (Eq. 4)", title)


# ------------------------------------------------------------------------------------ Figure 8


def _stage_activation(model: torch.nn.Module, images: torch.Tensor, stage: int) -> torch.Tensor:
    """``(B, h, w)``: the channel sum of ``stage``'s part of the model's (attended) fused map."""
    out = model(images)
    fused = out.feature_maps[0].float()
    bounds = np.cumsum([0, *model.stage_channels])
    i = list(model.stages).index(stage)
    return fused[:, bounds[i]:bounds[i + 1]].sum(dim=1).cpu()


@torch.no_grad()
def figure8(model: torch.nn.Module, baseline: torch.nn.Module, cfg: HybridAttentionConfig, data: ChapterData,
            n: int = 6) -> Figure:
    """Fig. 8 of the paper, with the attention maps themselves: for ``n`` query images (one per identity),
    the image with its identity cues outlined (white), the baseline's stage-4 activation, the model's stage-4
    activation (its stage-4 channels of the attended fused map) and the model's spatial attention of each
    stage. Each map is scaled to its own range (the colour bar says so)."""
    import matplotlib.pyplot as plt

    from reidlib.data.records import one_per_identity
    from reidlib.data.transforms import build_test_transform
    from reidlib.explain.overlay import add_colorbar, show_image

    use_book_style()
    model, baseline = model.cpu().eval(), baseline.cpu().eval()
    records = one_per_identity(data.splits.query, n)
    tf = build_test_transform(cfg.height, cfg.width)
    pil = [data.image_source(r.path) for r in records]
    images = torch.stack([tf(im) for im in pil])
    spatial = model(images).extras.get("spatial_attention")
    columns = [("image", None), ("baseline, stage 4", _stage_activation(baseline, images, 4)),
               ("ours, stage 4", _stage_activation(model, images, 4))]
    if spatial is not None and spatial.shape[1] == len(model.stages):
        columns += [(f"SAM, stage {s}", spatial[:, j].float()) for j, s in enumerate(model.stages)]
    fig, axes = plt.subplots(len(records), len(columns), figsize=(1.25 * len(columns), 2.1 * len(records)),
                             squeeze=False)
    for r, rec in enumerate(records):
        image = np.asarray(pil[r])
        cues = data.synth.render(rec.path).cues > 0 if data.synth is not None else None
        for c, (title, maps) in enumerate(columns):
            show_image(axes[r, c], image, None if maps is None else maps[r], title=title if r == 0 else None,
                       contour=cues if c == 0 else None)
    add_colorbar(fig, axes[:, 1:].ravel().tolist(), "each map scaled to its own min-max")
    fig.suptitle("Fig. 8: activation maps (baseline vs ours, stage 4) and our spatial attention per stage; "
                 "outlined: identity cues", fontsize=9)
    return fig


# ------------------------------------------------------------------------------------ parameters


def config_table(configs: Mapping[str, HybridAttentionConfig]) -> list[dict[str, Any]]:
    """Rows describing configs side by side (for the chapter's parameter table)."""
    rows = []
    for label, c in configs.items():
        h, w = c.map_size
        opt = (f"SGD, momentum {c.momentum:g}" + (" (Nesterov)" if c.nesterov else "")
               if c.optimizer == "sgd" else "Adam")
        rows.append({
            "setting": label,
            "dataset": report.dataset_cell(c),
            "backbone": report.backbone_cell(c),
            "input (fused map)": f"{c.height}x{c.width} ({h}x{w})",
            "MGO": f"{c.num_stripes} stripes, {c.granularity}",
            "MPFE widths": f"{c.reduce_dim} -> {c.feat_dim}",
            "attention": f"{c.attention}, SAM {c.sam_kernel}x{c.sam_kernel}, r = {c.reduction}",
            "batch": f"{c.batch_size} = {c.batch_size // c.num_instances} ids x {c.num_instances}",
            "optimizer": f"{opt}, LR {c.lr:g}, wd {c.weight_decay:g}",
            "schedule": f"{c.epochs} epochs, warm-up {c.warmup_epochs:g}, x{c.lr_gamma:g} at "
                        f"{c.lr_milestones or 'never'}",
            "tricks": f"random erasing {c.random_erasing:g}, label smoothing {c.label_smoothing:g}",
            "triplet margin": f"{c.triplet_margin:g} ({c.triplet_on})",
        })
    return rows


def chapter_settings(base: HybridAttentionConfig) -> dict[str, HybridAttentionConfig]:
    """The paper's setting, the ``cpu`` and ``full`` configs and, when it is neither, ``base``."""
    paper = dataclasses.replace(SCALE_CONFIGS["full"], dataset="market1501")
    settings = {"paper (Sec. 4.1, Market-1501)": paper, "cpu": SCALE_CONFIGS["cpu"],
                "full": SCALE_CONFIGS["full"]}
    if base not in settings.values():
        settings[f"this run ({base.scale})"] = base
    return settings
