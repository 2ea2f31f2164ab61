"""Tables and figures of the FMN chapter.

The tables read the results files (never a model in memory) and the paper's numbers
(``book/data/paper_numbers/fmn.csv``); each of our cells is an arm's seed mean, standard deviation and
number of seeds (:func:`reidlib.recipes.report.arm_cell`), in percent like the paper. Only
:func:`figure4`, the paper's qualitative figure, needs the trained model.
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

from reidlib.figures.runs import sweep_figure, training_curves
from reidlib.figures.style import OKABE_ITO, use_book_style
from reidlib.recipes import report
from reidlib.recipes.chapter import ChapterData
from reidlib.recipes.fmn import (
    ALPHA_SWEEP,
    CHAPTER,
    MARGIN_SWEEP,
    MASK_LAYER_SWEEP,
    SCALE_CONFIGS,
    FmnConfig,
    branch_features,
    descriptor,
    margin_run_name,
    mask_run_name,
    mask_size,
)
from reidlib.recipes.report import family_table as family_table  # the chapter reads it from here
from reidlib.results.store import RunRecord

RANKS = ("rank1", "rank5", "rank20", "mAP")
#: The paper's dataset of its ablation (Table 5) and of our side-by-side tables.
ABLATION_DATASET = "Market-1501"
#: Table 1's rows: paper setting -> our run (the LAN row is the FMN model ranked with ``l`` alone).
TABLE1_RUNS = {"GRN": "grn", "LAN": "fmn_lan", "FMN": "fmn"}
#: Our mask layers by the paper's names (Table 5).
PAPER_LAYER_NAMES = {"pool1": "Pool1", "res2": "Res2", "res3": "Res3", "res4": "Res4"}


def chapter_records(scale: str, root: str | os.PathLike | None = None) -> dict[str, RunRecord]:
    """Every stored run of the chapter at ``scale``: ``{run name: record}`` (empty when none ran)."""
    return report.chapter_records(CHAPTER, scale, root)


def paper_metric(metric: str, setting: str, dataset: str = ABLATION_DATASET) -> float:
    """The paper's ``metric`` (percent) for ``setting`` on ``dataset``."""
    return report.paper_value(CHAPTER, setting, dataset, metric)


def table1(records: Mapping[str, RunRecord], dataset: str = ABLATION_DATASET) -> pd.DataFrame:
    """Table 1: GRN vs LAN vs FMN, the paper's ``dataset`` beside ours (percent)."""
    return report.paper_beside_ours(CHAPTER, records, TABLE1_RUNS, RANKS, dataset).round(2)


def rerank_table(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Tables 2-4's rows about us: GRN, FMN and FMN + k-reciprocal re-ranking (and, beyond the paper, the
    GRN re-ranked), the paper's mAP / rank-1 on each of its datasets beside ours."""
    settings = {"Basel. (GRN)": ("grn", "mAP", "GRN"),
                "GRN+re-rank (not in the paper)": ("grn", "krr.mAP", None),
                "FMN": ("fmn", "mAP", "FMN"), "FMN+re-rank": ("fmn_krr", "mAP", "FMN+re-rank")}
    datasets = ("Market-1501", "DukeMTMC-reID", "CUHK03 (detected)", "CUHK03 (labeled)")
    rows = []
    for label, (run, ours_metric, paper_setting) in settings.items():
        row: dict[str, Any] = {"setting": label}
        for ds in datasets:
            row[f"paper mAP, {ds}"] = paper_metric("mAP", paper_setting, ds) if paper_setting else math.nan
        row["ours mAP"] = report.arm_cell(records, run, ours_metric)
        row["ours rank1"] = report.arm_cell(records, run, ours_metric.replace("mAP", "rank1"))
        rows.append(row)
    return pd.DataFrame(rows).set_index("setting").round(2)


def paper_vs_ours(records: Mapping[str, RunRecord], dataset: str) -> pd.DataFrame:
    """Tables 2-4: the paper's comparison with the state of the art on ``dataset`` (its FMN+re-rank row
    included), with our FMN and FMN + re-ranking appended."""
    source = {"Market-1501": "Table 2", "DukeMTMC-reID": "Table 3"}.get(dataset, "Table 4")
    return report.paper_table_with_ours(CHAPTER, records, dataset, (source,),
                                        {"FMN": "fmn", "FMN+re-rank": "fmn_krr"})


def table5(records: Mapping[str, RunRecord], base: FmnConfig) -> pd.DataFrame:
    """Table 5: the masked layer, the paper's mask size (224x224 input) and ours, mAP / rank-1."""
    rows = []
    for layer in MASK_LAYER_SWEEP:
        setting, run = f"mask at {PAPER_LAYER_NAMES[layer]}", mask_run_name(layer)
        h, w = mask_size(dataclasses.replace(base, mask_layer=layer))
        paper_size = _paper_note(setting).removeprefix("mask ")
        rows.append({"layer": PAPER_LAYER_NAMES[layer], "paper mask": paper_size,
                     "paper rank1": paper_metric("rank1", setting), "paper mAP": paper_metric("mAP", setting),
                     "our mask": f"{h}x{w}", "our run": run,
                     "ours rank1": report.arm_cell(records, run, "rank1"),
                     "ours mAP": report.arm_cell(records, run)})
    return pd.DataFrame(rows).set_index("layer")


def _paper_note(setting: str) -> str:
    from reidlib.results.paper_numbers import load_paper_numbers

    table = load_paper_numbers(CHAPTER)
    hit = table[table["setting"] == setting]["note"]
    return str(hit.iloc[0]) if len(hit) else ""


def table5_points(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Table 5 as a sweep: one row per run and seed, ``layer`` 1 (Pool1) .. 4 (Res4)."""
    return report.sweep_points(records, {i + 1: mask_run_name(m) for i, m in enumerate(MASK_LAYER_SWEEP)},
                               "layer")


def paper_table5() -> pd.DataFrame:
    """The paper's Table 5 as a sweep: ``layer`` 1 (Pool1) .. 4 (Res4), ``mAP``, ``rank1``."""
    rows = [{"layer": i + 1, "mAP": paper_metric("mAP", f"mask at {PAPER_LAYER_NAMES[m]}"),
             "rank1": paper_metric("rank1", f"mask at {PAPER_LAYER_NAMES[m]}")}
            for i, m in enumerate(MASK_LAYER_SWEEP)]
    return pd.DataFrame(rows)


def plot_table5(records: Mapping[str, RunRecord]) -> Figure:
    """Table 5 drawn: mAP and rank-1 per masked layer, the paper's beside ours (every seed a point)."""
    fig = sweep_figure(table5_points(records), paper_table5(), "layer", "masked layer", "Table 5",
                       f"paper ({ABLATION_DATASET})")
    for ax in fig.axes:
        ax.set_xticks(range(1, len(MASK_LAYER_SWEEP) + 1),
                      [PAPER_LAYER_NAMES[m] for m in MASK_LAYER_SWEEP])
    return fig


def ranking_loss_table(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Stage 2 without the ranking loss and with each margin of :data:`MARGIN_SWEEP` (the paper gives no
    table): mAP, rank-1 and the LAN's own mAP."""
    runs = {"no ranking loss (Eq. 4 only)": "fmn_no_rank"}
    runs |= {f"Eq. 4 + Eq. 5, m = {m:g}": margin_run_name(m) for m in MARGIN_SWEEP}
    rows = [{"stage 2": label, "run": run, "mAP": report.arm_cell(records, run),
             "rank1": report.arm_cell(records, run, "rank1")} for label, run in runs.items()]
    return pd.DataFrame(rows).set_index("stage 2")


def alpha_points(records: Mapping[str, RunRecord], run: str = "fmn") -> pd.DataFrame:
    """Eq. 6's ``alpha`` swept on the trained ``run`` (every seed): ``alpha``, ``seed``, ``mAP``,
    ``rank1`` (percent)."""
    rows = []
    for rec in report.arm_records(records, run):
        sweep = rec.metrics.get("alpha", {})  # keyed "0", "0.25" ...: not reachable by a dotted metric name
        for a in ALPHA_SWEEP:
            point = sweep.get(f"{a:g}", {})
            rows.append({"alpha": a, "run": rec.run, "seed": rec.seed,
                         "mAP": 100 * point.get("mAP", math.nan),
                         "rank1": 100 * point.get("rank1", math.nan)})
    return pd.DataFrame(rows, columns=["alpha", "run", "seed", "mAP", "rank1"])


def plot_alpha(records: Mapping[str, RunRecord], run: str = "fmn") -> Figure:
    """mAP and rank-1 against Eq. 6's ``alpha`` (0: the LAN's feature alone, 1: the GRN's), each seed a
    point, the line through the seed means; the paper's fixed ``alpha = 0.5`` marked."""
    import matplotlib.pyplot as plt

    use_book_style()
    points = alpha_points(records, run)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for metric, name, color in (("mAP", "mAP", OKABE_ITO[0]), ("rank1", "rank-1", OKABE_ITO[1])):
        means = points.groupby("alpha")[metric].mean()
        ax.plot(means.index, means.values, marker="o", color=color, label=name)
        ax.scatter(points["alpha"], points[metric], s=14, color=color, alpha=0.45, edgecolor="none",
                   label=f"{name}, each seed")
    ax.axvline(0.5, color="0.5", lw=0.8, ls="--", label="the paper's alpha")
    ax.set(xlabel="alpha (weight of the GRN feature in Eq. 6)", ylabel="%",
           title=f"Eq. 6's alpha on {run} (SynthReID)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def explanation_table(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Share of CAM energy on identity cues: GRN (``grn``), LAN (``fmn_lan``) and the learned mask's
    excess over 1 (``fmn``), beside the cue pixels' share of the image (a uniform map's share)."""
    rows = [
        {"map": "GRN's CAM", "run": "grn",
         "energy on cues (%)": report.arm_cell(records, "grn", "cues.cam_energy")},
        {"map": "LAN's CAM", "run": "fmn_lan",
         "energy on cues (%)": report.arm_cell(records, "fmn_lan", "cues.cam_energy")},
        {"map": "the mask (m - 1)", "run": "fmn",
         "energy on cues (%)": report.arm_cell(records, "fmn", "cues.mask_energy")},
        {"map": "a uniform map (cue area)", "run": "grn",
         "energy on cues (%)": report.arm_cell(records, "grn", "cues.cue_area")},
    ]
    return pd.DataFrame(rows).set_index("map")


def cue_type_table(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Share of energy per cue type (shoes, bag, logo ...; percent, seed mean ± sd): the GRN's and the
    LAN's CAMs, the learned mask's excess over 1 (``fmn_mask``), and the cue type's share of the image (a
    uniform map's), over the training images that have that cue."""
    grn = report.arm_records(records, "grn")
    types = sorted(grn[0].metrics.get("cues", {}).get("cue_type_area", {})) if grn else []
    rows = [{"cue": c,
             "GRN's CAM (%)": report.arm_cell(records, "grn", f"cues.cue_type_energy.{c}"),
             "LAN's CAM (%)": report.arm_cell(records, "fmn_lan", f"cues.cue_type_energy.{c}"),
             "the mask, m - 1 (%)": report.arm_cell(records, "fmn_mask", f"cues.mask_cue_type_energy.{c}"),
             "area (%)": report.arm_cell(records, "grn", f"cues.cue_type_area.{c}")} for c in types]
    columns = ["cue", "GRN's CAM (%)", "LAN's CAM (%)", "the mask, m - 1 (%)", "area (%)"]
    return pd.DataFrame(rows, columns=columns).set_index("cue")


def plot_histories(records: Mapping[str, RunRecord], runs: Sequence[str], title: str) -> Figure:
    """Loss per epoch of ``runs`` (:func:`reidlib.figures.runs.training_curves`)."""
    return training_curves(records, runs, "training loss", title)


# ------------------------------------------------------------------------------------ Figure 4


@torch.no_grad()
def figure4_queries(model: torch.nn.Module, cfg: FmnConfig, data: ChapterData, n: int = 3,
                    device: str = "cpu") -> list[tuple[int, int, int]]:
    """``(query, GRN's rank-1, FMN's rank-1)`` indices of up to ``n`` queries whose rank-1 under the GRN
    (``alpha = 1``) is another identity and under the FMN descriptor (``cfg.alpha``) a true match of
    another camera, most confident GRN mistakes first."""
    q, g = branch_features(model, cfg, data, device)
    g_dim = q.feats.shape[1] // 2
    picks = []
    dists = {a: torch.cdist(descriptor(q.feats, g_dim, a), descriptor(g.feats, g_dim, a))
             for a in (1.0, cfg.alpha)}
    for i in range(len(q)):
        same = (g.pids == q.pids[i]) & (g.camids == q.camids[i])  # ignored, as in the evaluation
        order = {a: [int(j) for j in torch.argsort(d[i]) if not same[int(j)]][:1] for a, d in dists.items()}
        grn_top, fmn_top = order[1.0][0], order[cfg.alpha][0]
        if g.pids[grn_top] != q.pids[i] and g.pids[fmn_top] == q.pids[i] and q.pids[i] > 0:
            margin = float(dists[1.0][i, grn_top])
            picks.append((margin, i, grn_top, fmn_top))
    return [(i, a, b) for _, i, a, b in sorted(picks)[:n]]


def figure4(model: torch.nn.Module, cfg: FmnConfig, data: ChapterData, n: int = 3, device: str = "cpu"
            ) -> Figure:
    """Fig. 4 of the paper: for queries the GRN gets wrong and the FMN right, the query, the GRN's
    rank-1 mismatch and the FMN's rank-1 match (top row, borders red / green), then for each of the
    three images the GRN's CAM, the LAN's CAM (each for the class it predicts: test identities are not
    training classes) and the learned mask over the image. Maps are each scaled to their own range."""
    import matplotlib.pyplot as plt

    from reidlib.data.transforms import build_test_transform
    from reidlib.explain.maps import explanation_maps
    from reidlib.explain.overlay import add_colorbar, show_image

    use_book_style()
    picks = figure4_queries(model, cfg, data, n, device)
    if not picks:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no query: the GRN's rank-1 mistakes are all mistakes of the FMN too", ha="center")
        return fig
    tf = build_test_transform(cfg.height, cfg.width)
    model = model.to(device).eval()
    fig, axes = plt.subplots(4, 3 * len(picks), figsize=(1.3 * 3 * len(picks), 7.2), squeeze=False)
    labels = ("image", "GRN CAM", "LAN CAM", "mask")
    for p, (qi, grn_top, fmn_top) in enumerate(picks):
        recs = [data.splits.query[qi], data.splits.gallery[grn_top], data.splits.gallery[fmn_top]]
        images = [data.image_source(r.path) for r in recs]
        batch = torch.stack([tf(im) for im in images]).to(device)
        with torch.enable_grad():
            maps = explanation_maps(model, batch, "cam")
        masks = model(batch).extras["mask"].float().cpu()
        titles = ("query", "GRN rank-1", "FMN rank-1")
        borders = (None, "#D55E00", "#009E73")
        for c in range(3):
            col = 3 * p + c
            show_image(axes[0, col], np.asarray(images[c]), title=titles[c], border=borders[c])
            show_image(axes[1, col], np.asarray(images[c]), maps["branch 1"][c].cpu())
            show_image(axes[2, col], np.asarray(images[c]), maps["branch 2"][c].cpu())
            show_image(axes[3, col], np.asarray(images[c]), masks[c])
    for r, label in enumerate(labels):
        axes[r, 0].set_ylabel(label, fontsize=9)
    add_colorbar(fig, axes.ravel().tolist(), "each map scaled to its own min-max")
    fig.suptitle("Fig. 4: queries the GRN gets wrong and the FMN right (red: mismatch, green: match)",
                 fontsize=10)
    return fig


# ------------------------------------------------------------------------------------ parameters


def config_table(configs: Mapping[str, FmnConfig]) -> list[dict[str, Any]]:
    """Rows describing configs side by side (for the chapter's parameter table)."""
    rows = []
    for label, c in configs.items():
        h, w = mask_size(c)
        opt = f"SGD, momentum {c.momentum:g}" if c.optimizer == "sgd" else "Adam"
        rows.append({
            "setting": label,
            "dataset": f"{c.dataset}" + (f" ({c.synth_preset})" if c.dataset == "synthreid" else ""),
            "backbone": f"ResNet-{c.depth}" + ("" if c.base_width == 64 else f" at width {c.base_width}/64")
                        + f" {report.initialisation(c.pretrained, c.base_width)}",
            "input": f"{c.height}x{c.width}",
            "masked layer (mask)": f"{PAPER_LAYER_NAMES[c.mask_layer]} ({h}x{w})",
            "batch": c.batch_size,
            "optimizer": f"{opt}, wd {c.weight_decay:g}",
            "stage 1 (GRN)": f"{c.grn_epochs} epochs, LR {c.grn_lr:g}, x{c.lr_gamma:g} at "
                             f"{c.grn_milestones or 'never'}",
            "stage 2 (MN + LAN)": f"{c.lan_epochs} epochs, LR {c.lan_lr:g}, x{c.lr_gamma:g} at "
                                  f"{c.lan_milestones or 'never'}",
            "Eq. 5 margin m": f"{c.margin:g}",
            "alpha (Eq. 6)": f"{c.alpha:g}",
        })
    return rows


def chapter_settings(base: FmnConfig) -> dict[str, FmnConfig]:
    """The paper's setting, the ``cpu`` and ``full`` configs and, when it is neither, ``base``."""
    paper = dataclasses.replace(SCALE_CONFIGS["full"], dataset="market1501", height=224, width=224)
    settings = {"paper (Sec. 4.2, Market-1501)": paper, "cpu": SCALE_CONFIGS["cpu"],
                "full": SCALE_CONFIGS["full"]}
    if base not in settings.values():
        settings[f"this run ({base.scale})"] = base
    return settings
