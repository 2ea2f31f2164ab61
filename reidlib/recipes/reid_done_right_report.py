"""Tables and figures of the "Re-ID done right" chapter (seed 001), read from the results files.

Tables take the chapter's :class:`~reidlib.results.store.RunRecord` s (``{run name: record}``, from
:func:`chapter_records`) and the paper's numbers (``book/data/paper_numbers/reid_done_right.csv``), so the
notebook shows what a run wrote beside what the paper printed. Our metrics are stored as fractions; every
table here shows percent, like the paper. The qualitative figures (ranked lists, matching regions,
implicit attention) need a trained model and the data, and are built with :mod:`reidlib.explain`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from reidlib.figures.style import OKABE_ITO, use_book_style
from reidlib.recipes import pretrain, report
from reidlib.recipes.chapter import ChapterData
from reidlib.recipes.reid_done_right import (
    CHAPTER,
    SCALE_CONFIGS,
    TABLE1_RUNS,
    TABLE2_RUNS,
    TABLE3_RUNS,
    RdrConfig,
    RdrRun,
    classification_run_name,
    extract,
    test_transform,
    uses_trunk,
)
from reidlib.results.store import RunRecord, load_run

PAPER_DATASETS = ("Market-1501", "DukeMTMC-reID")


def chapter_records(scale: str, root: str | os.PathLike | None = None) -> dict[str, RunRecord]:
    """Every stored run of the chapter at ``scale``."""
    return report.chapter_records(CHAPTER, scale, root)


def _metric(rec: RunRecord | None, name: str, factor: float = 100.0) -> float:
    return report.metric(rec, name, factor)


def paper_value(setting: str, dataset: str, metric: str = "mAP") -> float:
    """A number of the paper (percent) from ``book/data/paper_numbers/reid_done_right.csv``; NaN if absent."""
    return report.paper_value(CHAPTER, setting, dataset, metric)


def ablation_table(records: Mapping[str, RunRecord], rows: Mapping[str, str],
                   paper_settings: Mapping[str, str]) -> pd.DataFrame:
    """Rows ``label -> our run`` with the paper's mAP on Market-1501 and Duke (``paper_settings`` maps
    a label to the paper's setting name) and ours (percent): the seed mean and standard deviation of
    mAP over the run's arm (:func:`reidlib.recipes.report.arm_stats`), its number of seeds, the mean
    rank-1."""
    out = []
    for label, run in rows.items():
        setting = paper_settings[label]
        mean, sd, n = report.arm_stats(records, run)
        out.append({
            "setting": label,
            **{f"paper mAP ({d})": paper_value(setting, d) for d in PAPER_DATASETS},
            "our run": run,
            "ours mAP": mean,
            "ours mAP sd": sd,
            "seeds": n,
            "ours rank-1": report.arm_mean(records, run, "rank1"),
        })
    return pd.DataFrame(out).set_index("setting")


def table1(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Table 1: flip / crop / cut-out."""
    return ablation_table(records, TABLE1_RUNS, {k: f"augmentation: {k}" for k in TABLE1_RUNS})


def table2(records: Mapping[str, RunRecord], cfg: RdrConfig) -> pd.DataFrame:
    """Table 2: the largest image side (the paper's 256 / 416 / 640 beside our sizes), each also as a
    multiple of the native height (Market's 256x128 in the ``full`` setting, ``cfg.render_height`` here)."""
    paper = SCALE_CONFIGS["full"]
    paper_sizes = paper.size_sweep
    rows = {f"{p} px = {p / paper.render_height:.3g}x (ours {o} px = {o / cfg.render_height:.3g}x)": run
            for p, o, run in zip(paper_sizes, cfg.size_sweep, TABLE2_RUNS.values(), strict=True)}
    settings = {label: f"largest side {p}" for label, p in zip(rows, paper_sizes, strict=True)}
    return ablation_table(records, rows, settings)


def table3(records: Mapping[str, RunRecord], cfg: RdrConfig) -> pd.DataFrame:
    """Table 3: (a) pooling, (b) backbone depth, (c) classification pre-training."""
    paper_depths = (50, 101, 152)
    names = {"(a) pooling: average": "pooling: average", "(a) pooling: max": "pooling: max",
             "(c) classification pre-training: no": "classification pre-training: no",
             "(c) classification pre-training: yes": "classification pre-training: yes"}
    rows: dict[str, str] = {}
    settings: dict[str, str] = {}
    for label, run in TABLE3_RUNS.items():
        if label.startswith("(b)"):
            i = ("shallow", "middle", "deep").index(label.split(": ")[1])
            new = f"(b) ResNet-{paper_depths[i]} (ours ResNet-{cfg.depth_sweep[i]}, narrow)"
            rows[new], settings[new] = run, f"backbone: ResNet-{paper_depths[i]}"
        else:
            rows[label], settings[label] = run, names[label]
    return ablation_table(records, rows, settings)


def table4(records: Mapping[str, RunRecord], base: str = "rdr") -> pd.DataFrame:
    """Table 4's rows of the paper's method (Market-1501) beside ours, without and with re-ranking."""
    rows = [("Ours", base, "plain"), ("Ours (re-rank)", f"{base}_qe", "query expansion (the paper's)"),
            (None, f"{base}_krr", "k-reciprocal (Zhong et al.)")]
    out = []
    for setting, run, kind in rows:
        row: dict[str, Any] = {"re-ranking": kind}
        for m, name in (("mAP", "mAP"), ("rank1", "rank-1"), ("rank5", "rank-5")):
            row[f"paper {name}"] = paper_value(setting, "Market-1501", m) if setting else math.nan
        for m, name in (("mAP", "mAP"), ("rank1", "rank-1"), ("rank5", "rank-5")):
            row[f"ours {name}"] = report.arm_mean(records, run, m)
        mean, sd, n = report.arm_stats(records, run)
        row["ours mAP sd"], row["seeds"] = sd, n
        out.append(row)
    return pd.DataFrame(out).set_index("re-ranking")


def comparison_table(records: Mapping[str, RunRecord], rows: Mapping[str, str],
                     metrics: Sequence[str] = ("mAP", "rank1", "family.mAP")) -> pd.DataFrame:
    """Our runs side by side (percent): ``label -> run``; each metric is the seed mean over the run's arm,
    with the standard deviation of mAP and the number of seeds."""
    names = {"mAP": "mAP", "rank1": "rank-1", "family.mAP": "mAP within the family", "qe.mAP": "mAP + QE"}
    out = []
    for label, run in rows.items():
        mean, sd, n = report.arm_stats(records, run)
        out.append({"setting": label, "run": run,
                    **{names.get(m, m): report.arm_mean(records, run, m) for m in metrics},
                    "mAP sd": sd, "seeds": n})
    return pd.DataFrame(out).set_index("setting")


def seed_spread(records: Mapping[str, RunRecord], metric: str = "mAP", run: str = "rdr"
                ) -> dict[str, float]:
    """``run``'s ``metric`` (percent) over its training seeds (default: the main run)."""
    names = [name for name, rec in records.items() if any(rec is r for r in report.arm_records(records, run))]
    return report.seed_spread(records, names, metric)


def stage1_records(records: Mapping[str, RunRecord], cfg: RdrConfig,
                   root: str | os.PathLike | None = None) -> dict[str, RunRecord]:
    """The classification pre-training ``cfg``'s stage 2 starts from, by label: the chapter's stage-1 run
    (``cls_pretrain``) or the results file of the SynthReID trunk (:mod:`reidlib.recipes.pretrain`);
    empty when it is not stored (random init, or ImageNet)."""
    if cfg.cls_pretrain:
        name = classification_run_name(cfg)
        return {name: records[name]} if name in records else {}
    if not uses_trunk(cfg):
        return {}
    trunk = pretrain.trunk_config(cfg.scale, cfg.depth, cfg.base_width)
    try:
        record = load_run(pretrain.CHAPTER, trunk.name, cfg.scale, root)
    except FileNotFoundError:
        return {}
    return {f"SynthReID trunk {trunk.name}": record}


def plot_training(records: Mapping[str, RunRecord], classification: Sequence[str], ranking: Sequence[str],
                  smooth: int = 4) -> Figure:
    """Left: stage-1 loss and accuracy per epoch. Right: stage-2 triplet loss per update (moving
    average over ``smooth`` updates) with the pool's hardest-triplet loss at each refresh."""
    import matplotlib.pyplot as plt

    use_book_style()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    ax = axes[0]
    for i, run in enumerate(classification):
        hist = (records[run].history or []) if run in records else []
        if hist:
            ax.plot([h["epoch"] for h in hist], [h["loss"] for h in hist], marker="o", ms=3,
                    color=OKABE_ITO[i], label=f"{run} loss")
            ax.plot([h["epoch"] for h in hist], [100 * h["acc"] for h in hist], ls="--",
                    color=OKABE_ITO[i], label=f"{run} train accuracy (%)")
    ax.set(xlabel="epoch", ylabel="cross-entropy / accuracy (%)", title="Stage 1: identity classification")
    if ax.lines:
        ax.legend(fontsize=7)
    ax = axes[1]
    for i, run in enumerate(ranking):
        hist = (records[run].history or []) if run in records else []
        if not hist:
            continue
        loss = np.array([h["loss"] for h in hist])
        k = max(1, min(smooth, len(loss)))
        avg = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(k, len(loss) + 1), avg, color=OKABE_ITO[i % len(OKABE_ITO)], label=run)
        pool = [(h["iteration"], h["pool_hard_loss"]) for h in hist if "pool_hard_loss" in h]
        if pool:
            ax.scatter(*zip(*pool, strict=True), color=OKABE_ITO[i % len(OKABE_ITO)], marker="x", s=25)
    ax.set(xlabel="update", ylabel="triplet loss (Eq. 1)",
           title=f"Stage 2: batch loss ({smooth}-update mean); x = pool's 25-hardest loss")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_paper_vs_ours(table: pd.DataFrame, title: str, seed_range: tuple[float, float] | None = None
                       ) -> Figure:
    """Dot plot of an :func:`ablation_table`: the paper's mAP (Market-1501, DukeMTMC-reID) and ours, one
    panel each with its own x range (levels differ by dataset; read each panel for its ordering; dots, not
    bars, because the axes do not start at zero). ``seed_range`` (percent): the main run's mAP over its
    training seeds, shaded in our panel (differences inside it are noise)."""
    import matplotlib.pyplot as plt

    use_book_style()
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(table) + 1.6), sharey=True)
    y = np.arange(len(table))
    for j, d in enumerate(PAPER_DATASETS):
        axes[0].plot(table[f"paper mAP ({d})"], y, "o", ms=7, color=OKABE_ITO[j], label=d)
    axes[0].set(xlabel="mAP (%)", title=f"{title}: paper")
    sd = table["ours mAP sd"] if "ours mAP sd" in table else None
    axes[1].errorbar(table["ours mAP"], y, xerr=sd, fmt="D", ms=7, color=OKABE_ITO[2], capsize=3,
                     label="ours (SynthReID): seed mean ± sd")
    axes[1].set(xlabel="mAP (%)", title=f"{title}: ours")
    if seed_range is not None and not any(math.isnan(v) for v in seed_range):
        axes[1].axvspan(*seed_range, color=OKABE_ITO[2], alpha=0.15, label="main run over seeds")
    for ax in axes:
        ax.legend(fontsize=8, loc="best")
        ax.grid(True, axis="both", alpha=0.4)
    axes[0].set_yticks(y, table.index)
    axes[0].invert_yaxis()
    for ax, cols in ((axes[0], [f"paper mAP ({d})" for d in PAPER_DATASETS]), (axes[1], ["ours mAP"])):
        values = table[cols].to_numpy(dtype=float)
        values = values[~np.isnan(values)]
        if values.size:
            span = max(values.max() - values.min(), 1.0)
            ax.set_xlim(values.min() - 0.3 * span, values.max() + 0.3 * span)
    fig.tight_layout()
    return fig


def distractor_table(records: Mapping[str, RunRecord], runs: Mapping[str, str]) -> pd.DataFrame:
    """Fig. 7's numbers: mAP and rank-1 (percent) per number of added distractors, one column pair per
    model (``label -> base run``; read from ``distractors_<run>``)."""
    frames = []
    for label, run in runs.items():
        rec = records.get(f"distractors_{run}")
        if rec is None:
            continue
        curve = rec.metrics["curve"]
        frames.append(pd.DataFrame({
            "distractors": [int(n) for n in curve],
            "gallery size": [v["gallery"] for v in curve.values()],
            f"{label} mAP": [100 * v["mAP"] for v in curve.values()],
            f"{label} rank-1": [100 * v["rank1"] for v in curve.values()],
        }).set_index(["distractors", "gallery size"]))
    return pd.concat(frames, axis=1) if frames else pd.DataFrame()


def plot_distractors(table: pd.DataFrame, labels: Sequence[str]) -> Figure:
    """Fig. 7: mAP against the number of distractors added to the gallery (log-spaced x after 0)."""
    import matplotlib.pyplot as plt

    use_book_style()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    counts = np.array([n for n, _ in table.index])
    gallery = int(table.index[0][1])
    for i, label in enumerate(labels):
        if f"{label} mAP" in table:
            ax.plot(counts / gallery, table[f"{label} mAP"], marker="o", color=OKABE_ITO[i],
                    label=f"{label} mAP")
            ax.plot(counts / gallery, table[f"{label} rank-1"], marker="s", ls="--", color=OKABE_ITO[i],
                    label=f"{label} rank-1")
    ax.set(xlabel=f"distractors added, in multiples of the gallery ({gallery} images)", ylabel="%",
           title="Fig. 7: retrieval with distractors in the gallery")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def attention_table(records: Mapping[str, RunRecord], runs: Sequence[str]) -> pd.DataFrame:
    """Shares (percent) of the implicit attention's Grad-CAM energy on identity cues, on the body and on
    the background, beside the areas (what a uniform map gets) and the lift over a uniform map."""
    rows = []
    for run in runs:
        rec = records.get(run)
        if rec is None:
            continue
        _, sd, n = report.arm_stats(records, run, "energy_cues")
        rows.append({"map": run, "energy on cues (%)": report.arm_mean(records, run, "energy_cues"),
                     "sd": sd, "seeds": n,
                     "cue area (%)": report.arm_mean(records, run, "area_cues"),
                     "energy on body (%)": report.arm_mean(records, run, "energy_body"),
                     "energy on background (%)": report.arm_mean(records, run, "energy_background"),
                     "lift over uniform (x)": report.arm_mean(records, run, "cue_lift", 1.0)})
    return pd.DataFrame(rows).set_index("map")


# -------------------------------------------------------------------------- qualitative figures


def _images(data: ChapterData, records: Sequence[Any]) -> list[np.ndarray]:
    return [np.asarray(data.image_source(r.path)) for r in records]


def ranked_list_figure(run: RdrRun, data: ChapterData, n_good: int = 2, n_bad: int = 2, k: int = 10
                       ) -> Figure:
    """Fig. 4: the top-``k`` gallery images of the best and the worst queries (by AP) of ``run``."""
    from reidlib.explain.ranked_list import RankedRow, plot_ranked_lists, rank_query

    tf = test_transform(run.config)
    q = extract(run.model, data, data.splits.query, tf, desc="query")
    g = extract(run.model, data, data.splits.gallery, tf, desc="gallery")
    dist = torch.cdist(q.feats, g.feats)
    lists = [rank_query(dist[i], int(q.pids[i]), int(q.camids[i]), g.pids, g.camids, k=k)
             for i in range(len(q))]
    valid = [i for i, r in enumerate(lists) if not math.isnan(r.ap)]
    order = sorted(valid, key=lambda i: -lists[i].ap)
    chosen = order[:n_good] + order[len(order) - n_bad:]
    rows = []
    for i in chosen:
        r = lists[i]
        gallery = [data.splits.gallery[int(j)] for j in r.gallery_indices]
        rows.append(RankedRow(query_image=_images(data, [data.splits.query[i]])[0],
                              gallery_images=_images(data, gallery), matches=list(r.matches), ap=r.ap,
                              num_relevant=r.num_relevant,
                              label="good" if i in order[:n_good] else "failed"))
    return plot_ranked_lists(rows, title=f"Fig. 4: ranked lists of {run.name}")


def matching_pair(run: RdrRun, data: ChapterData) -> tuple[int, int]:
    """(query index, gallery index) of the best-matching true pair of another camera (a pair the model
    gets right, as in the paper's Fig. 5)."""
    tf = test_transform(run.config)
    q = extract(run.model, data, data.splits.query, tf, desc="query")
    g = extract(run.model, data, data.splits.gallery, tf, desc="gallery")
    sims = q.feats @ g.feats.T
    ok = torch.as_tensor((q.pids[:, None] == g.pids[None, :]) & (q.camids[:, None] != g.camids[None, :]))
    sims[~ok] = -math.inf
    flat = int(torch.argmax(sims))
    return flat // sims.shape[1], flat % sims.shape[1]


def matching_regions_figure(run: RdrRun, data: ChapterData, pair: tuple[int, int] | None = None) -> Figure:
    """Fig. 5: Grad-CAM of the 5 dimensions contributing most to a true pair's similarity, in both images."""
    from reidlib.explain.gradcam import matching_regions
    from reidlib.explain.map_grid import plot_matching_regions

    qi, gi = pair if pair is not None else matching_pair(run, data)
    tf = test_transform(run.config)
    qr, gr = data.splits.query[qi], data.splits.gallery[gi]
    a, b = tf(data.image_source(qr.path)), tf(data.image_source(gr.path))
    result = matching_regions(run.model, a, b, k=5)
    return plot_matching_regions(_images(data, [qr])[0], _images(data, [gr])[0], result,
                                 title=f"Fig. 5: matching regions of {run.name}, identity {qr.pid}")


def implicit_attention_figure(runs: Mapping[str, RdrRun], data: ChapterData, pid: int | None = None,
                              n_images: int = 6) -> Figure:
    """Fig. 6: implicit attention (Grad-CAM of each image's 50 strongest dimensions) of several models
    over images of one test identity, with the identity's cue masks outlined."""
    from reidlib.explain.gradcam import implicit_attention
    from reidlib.explain.map_grid import plot_map_grid

    gallery = [r for r in data.splits.gallery if r.pid > 0]
    if pid is None:
        counts: dict[int, int] = {}
        for r in gallery:
            counts[r.pid] = counts.get(r.pid, 0) + 1
        pid = max(sorted(counts), key=lambda p: counts[p])
    recs = [r for r in gallery if r.pid == pid][:n_images]
    rows = {}
    for label, run in runs.items():
        tf = test_transform(run.config)
        images = torch.stack([tf(data.image_source(r.path)) for r in recs])
        rows[label] = list(implicit_attention(run.model, images, k=min(50, run.model.dim)).maps)
    contours = [data.synth.render(r.path).cues > 0 for r in recs] if data.synth is not None else None
    return plot_map_grid(_images(data, recs), rows, title=f"Fig. 6: implicit attention, identity {pid} "
                         "(white: its ground-truth cues)",
                         map_label="Grad-CAM of the 50 strongest dimensions",
                         column_titles=[f"cam {r.camid + 1}" for r in recs], contours=contours)


# ------------------------------------------------------------------------------------ parameters


def config_table(configs: Mapping[str, RdrConfig]) -> list[dict[str, Any]]:
    """Rows describing configs side by side (the chapter's parameter table)."""
    rows = []
    for label, c in configs.items():
        data = c.dataset + (f" ({c.synth_preset}, drawn at {c.render_height}x{c.render_width})"
                            if c.dataset == "synthreid" else "")
        rows.append({
            "setting": label,
            "dataset": data,
            "backbone": f"ResNet-{c.depth}" + ("" if c.base_width == 64 else f" at width {c.base_width}/64")
                        + f" {report.initialisation(c.pretrained, c.base_width)}"
                        + f"; depths {'/'.join(map(str, c.depth_sweep))}",
            "descriptor": f"{c.pool} pooling, FC to {c.dim}, L2",
            "stage 1": f"{c.cls_epochs} epochs, {c.cls_size}x{c.cls_size} crops "
                       f"(area {c.cls_crop_scale[0]:g}-1), batch {c.cls_batch}, "
                       f"SGD {c.cls_lr:g} -> {c.cls_final_lr:g}",
            "stage 2": f"{c.iterations} updates x {c.batch_triplets} triplets, SGD {c.lr:g} halved every "
                       f"{c.half_life:g}, m = {c.margin:g}",
            "input M": f"{c.max_side} (sweep {'/'.join(map(str, c.size_sweep))})",
            "mining": f"{c.mining}: N = {c.pool_size}, k = {c.pool_updates}, top {c.num_hard}",
            "cut-out": f"{c.cutout}, max area {c.cutout_max_area:g}",
        })
    return rows
