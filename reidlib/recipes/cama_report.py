"""Tables and figures of the CAMA chapter, read from the results files (never from memory).

Every function takes the chapter's :class:`~reidlib.results.store.RunRecord` s (``{run name: record}``,
from :func:`chapter_records`) and the paper's numbers (``book/data/paper_numbers/cama.csv``), so the
notebook shows what a run wrote and the paper printed, side by side. Our metrics are stored as
fractions; every table here shows percent, like the paper. Each of our cells is an arm's seed mean,
standard deviation and number of seeds (:func:`reidlib.recipes.report.arm_cell`); sweep plots show every
seed as a point.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from reidlib.figures.runs import sweep_figure, training_curves
from reidlib.recipes import report
from reidlib.recipes.cama import (
    BRANCH_SWEEP,
    CHAPTER,
    K_SWEEP_FRACTIONS,
    SCALE_CONFIGS,
    TABLE4_RUNS,
    CamaConfig,
    k_run_name,
    other_mode,
)
from reidlib.recipes.report import family_table as family_table  # the chapter reads it from here
from reidlib.recipes.report import sweep_points
from reidlib.results.paper_numbers import load_paper_numbers
from reidlib.results.store import RunRecord

RANKS = ("mAP", "rank1", "rank5", "rank10")
#: The paper's dataset whose ablations (Tables 4-5, Figures 5-6) we set beside ours.
ABLATION_DATASET = "Market-1501"
#: Table 5 rows: paper setting -> our run.
TABLE5_RUNS = {"branch 1st": "cama_n3_test_1", "branches 1st+2nd": "cama_n3_test_12",
               "branches 1st+2nd+3rd": "cama_n3"}




def chapter_records(scale: str, root: str | os.PathLike | None = None) -> dict[str, RunRecord]:
    """Every stored run of the chapter at ``scale``: ``{run name: record}`` (empty when none ran)."""
    return report.chapter_records(CHAPTER, scale, root)


def paper_metric(metric: str, setting: str, dataset: str = ABLATION_DATASET) -> float:
    """The paper's ``metric`` (percent) for ``setting`` on ``dataset`` (default: its ablation dataset)."""
    return report.paper_value(CHAPTER, setting, dataset, metric)


def table4(records: Mapping[str, RunRecord], dataset: str = ABLATION_DATASET) -> pd.DataFrame:
    """Table 4: IDE+BN / MltB+L_id / MltB+L_id+L_oap, the paper's ``dataset`` beside ours (percent)."""
    return report.paper_beside_ours(CHAPTER, records, TABLE4_RUNS, RANKS, dataset).round(1)


def paper_vs_ours(records: Mapping[str, RunRecord], dataset: str, run: str = "cama_n3",
                  setting: str = "CAMA (N=3)") -> pd.DataFrame:
    """Tables 1-3: the paper's rows for ``dataset`` (sorted by mAP) with our ``run`` appended as the last
    row, its dataset named in the row label."""
    return report.paper_table_with_ours(CHAPTER, records, dataset, ("Table 1", "Table 2", "Table 3"),
                                        {setting: run})


def k_sweep(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Figure 5 (ours): N = 2 CAMA at each ``k`` of :data:`K_SWEEP_FRACTIONS` (k as a share of the cells);
    seed mean ± sd (seeds) per point."""
    rows = []
    for frac in K_SWEEP_FRACTIONS:
        run = k_run_name(frac)
        rows.append({"k / cells (%)": round(100 * frac, 1), "run": run, "mAP": report.arm_cell(records, run),
                     "rank1": report.arm_cell(records, run, "rank1"),
                     "CAM overlap (IoU)": report.arm_cell(records, run, "overlap.cam_iou", 1.0, 3)})
    return pd.DataFrame(rows)


def k_sweep_points(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Figure 5's points, one row per run and seed: ``k / cells (%)``, ``seed``, ``mAP``, ``rank1``."""
    return sweep_points(records, {100 * f: k_run_name(f) for f in K_SWEEP_FRACTIONS}, "k / cells (%)")


def branch_sweep_points(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Figure 6's points, one row per run and seed: ``N``, ``seed``, ``mAP``, ``rank1``."""
    return sweep_points(records, {n: "ide_bn" if n == 1 else f"cama_n{n}" for n in BRANCH_SWEEP}, "N")


def paper_k_sweep() -> pd.DataFrame:
    """Figure 5 (paper, Market-1501): ``k`` in cells of the 16x8 map and as a share of its 128 cells."""
    table = load_paper_numbers(CHAPTER)
    table = table[table["source"] == "Figure 5"]
    wide = table.pivot_table(index="setting", columns="metric", values="value", aggfunc="first")
    wide["k"] = [int(s.split("=")[1]) for s in wide.index]
    wide["k / cells (%)"] = 100 * wide["k"] / 128
    return wide.sort_values("k").reset_index(drop=True)


def branch_sweep(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Figure 6 (ours and paper): mAP / rank-1 per number of branches ``N`` (N = 1 is IDE+BN)."""
    rows = []
    for n in BRANCH_SWEEP:
        run = "ide_bn" if n == 1 else f"cama_n{n}"
        rows.append({"N": n, "paper mAP": paper_metric("mAP", f"N={n}"),
                     "paper rank1": paper_metric("rank1", f"N={n}"),
                     "ours mAP": report.arm_cell(records, run),
                     "ours rank1": report.arm_cell(records, run, "rank1")})
    return pd.DataFrame(rows).set_index("N")


def table5(records: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Table 5: the 3-branch model tested with the 1st, 1st+2nd and all branches (paper vs ours)."""
    rows = []
    for setting, run in TABLE5_RUNS.items():
        rows.append({"test descriptor": setting, "paper mAP": paper_metric("mAP", setting),
                     "paper rank1": paper_metric("rank1", setting), "ours mAP": report.arm_cell(records, run),
                     "ours rank1": report.arm_cell(records, run, "rank1")})
    return pd.DataFrame(rows).set_index("test descriptor")


def _metric(rec: RunRecord | None, name: str, scale: float = 1.0) -> float:
    return report.metric(rec, name, scale)


def mode_comparison(records: Mapping[str, RunRecord], default_mode: str) -> pd.DataFrame:
    """The two OAP gradient variants of the 3-branch model (see :mod:`reidlib.losses.oap`)."""
    runs = {default_mode: "cama_n3", other_mode(default_mode): f"cama_n3_{other_mode(default_mode)}"}
    rows = []
    for mode, run in sorted(runs.items()):
        rows.append({"OAP gradients": mode, "run": run, "mAP": report.arm_cell(records, run),
                     "rank1": report.arm_cell(records, run, "rank1"),
                     "CAM overlap (IoU)": report.arm_cell(records, run, "overlap.cam_iou", 1.0, 3),
                     "L_oap at the end": report.arm_cell(records, run, "overlap.oap", 1.0, 3)})
    return pd.DataFrame(rows).set_index("OAP gradients")


def explanation_table(records: Mapping[str, RunRecord], runs: Sequence[str]) -> pd.DataFrame:
    """Branch overlap and share of CAM/RAM energy on identity cues per run (beyond the paper)."""
    rows = []
    for run in runs:
        rec = records.get(run)
        def cell(name: str, factor: float = 1.0, digits: int = 3, run: str = run) -> str:
            return report.arm_cell(records, run, name, factor, digits)

        rows.append({
            "run": run,
            "branches": rec.config.get("num_branches") if rec else math.nan,
            "CAM overlap (IoU of top-k cells)": cell("overlap.cam_iou"),
            "RAM overlap (IoU)": cell("overlap.ram_iou"),
            "L_oap": cell("overlap.oap"),
            "cue pixels covered by top-k CAM cells (%)": cell("cues.cam_coverage", 100, 1),
            "CAM energy on cues (%)": cell("cues.cam_energy", 100, 1),
            "RAM energy on cues (%)": cell("cues.ram_energy", 100, 1),
            "cue area (%)": cell("cues.cue_area", 100, 1),
        })
    return pd.DataFrame(rows).set_index("run")


def seed_spread(records: Mapping[str, RunRecord], metric: str = "mAP", run: str = "ide_bn"
                ) -> dict[str, float]:
    """``run``'s ``metric`` (percent) over its training seeds (default IDE+BN):
    :func:`reidlib.recipes.report.seed_spread`."""
    return report.arm_spread(records, run, metric)


def plot_histories(records: Mapping[str, RunRecord], runs: Sequence[str],
                   title: str = "Training loss per epoch") -> Figure:
    """Loss per epoch (and the periodic mAP where recorded) of ``runs``
    (:func:`reidlib.figures.runs.training_curves`)."""
    return training_curves(records, runs, "training loss (L_id + alpha L_oap)", title)


def plot_sweep(ours: pd.DataFrame, paper: pd.DataFrame, x: str, xlabel: str, title: str,
               paper_x: str | None = None) -> Figure:
    """A sweep, the paper's curve (:data:`ABLATION_DATASET`) beside ours
    (:func:`reidlib.figures.runs.sweep_figure`)."""
    return sweep_figure(ours, paper, x, xlabel, title, f"paper ({ABLATION_DATASET})", paper_x)


# ------------------------------------------------------------------------------------ parameters


def config_table(configs: Mapping[str, CamaConfig]) -> list[dict[str, Any]]:
    """Rows describing configs side by side (for the chapter's parameter table)."""
    rows = []
    for label, c in configs.items():
        h, w = c.map_size
        rows.append({
            "setting": label,
            "dataset": f"{c.dataset}" + (f" ({c.synth_preset})" if c.dataset == "synthreid" else ""),
            "backbone": f"ResNet-{c.depth}" + ("" if c.base_width == 64 else f" at width {c.base_width}/64")
                        + f" {report.initialisation(c.pretrained, c.base_width)}"
                        + (", last stride 1" if c.last_stride == 1 else ""),
            "input": f"{c.height}x{c.width}",
            "map (cells)": f"{h}x{w} ({h * w})",
            "k": f"{c.k} ({c.k_fraction:.1%})",
            "batch": c.batch_size,
            "optimizer": f"Adam, wd {c.weight_decay:g}",
            "epochs": f"{c.warmup_epochs} classifier-only + {c.epochs - c.warmup_epochs}",
            "LR": f"{c.warmup_start_lr:g} -> {c.lr:g}, x{c.lr_gamma:g} at {c.lr_milestones or 'never'}",
        })
    return rows


def chapter_settings(base: CamaConfig) -> dict[str, CamaConfig]:
    """The paper's setting, the ``cpu`` and ``full`` configs and, when it is neither, ``base`` (the config
    a notebook runs with): the columns of the chapter's parameter table."""
    paper = dataclasses.replace(SCALE_CONFIGS["full"], dataset="market1501")
    settings = {"paper (Sec. 4.2, Market-1501)": paper, "cpu": SCALE_CONFIGS["cpu"],
                "full": SCALE_CONFIGS["full"]}
    if base not in settings.values():
        settings[f"this run ({base.scale})"] = base
    return settings
