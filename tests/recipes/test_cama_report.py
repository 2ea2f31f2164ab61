import math

import matplotlib
import pandas as pd
import pytest

from reidlib.recipes import cama_report, report
from reidlib.results.store import save_run

matplotlib.use("Agg")


def _store(root, run, m_ap, rank1=0.5, **extra_metrics):
    metrics = {"mAP": m_ap, "rank1": rank1, "rank5": 0.7, "rank10": 0.8, **extra_metrics}
    history = [{"epoch": 1, "loss": 3.0}, {"epoch": 2, "loss": 2.0, "mAP": m_ap}]
    save_run("cama", run, "smoke", metrics, {"num_branches": 3, "k_fraction": 0.1}, "synthreid_tiny", 0, 1.0,
             history=history, root=root)


@pytest.fixture
def records(tmp_path):
    _store(tmp_path, "ide_bn", 0.20, overlap={"cam_iou": 0.5})
    _store(tmp_path, "ide_bn_seed1", 0.22)
    _store(tmp_path, "ide_bn_seed2", 0.17)
    _store(tmp_path, "mltb_lid", 0.25)
    _store(tmp_path, "cama_n3", 0.30, cues={"cam_coverage": 0.4})
    return cama_report.chapter_records("smoke", tmp_path)


def test_chapter_records_reads_every_stored_run(records):
    assert set(records) == {"ide_bn", "ide_bn_seed1", "ide_bn_seed2", "mltb_lid", "cama_n3"}


def test_table4_puts_paper_and_ours_in_percent(records):
    t = cama_report.table4(records)
    assert list(t.index) == ["IDE+BN", "MltB+Lid", "MltB+Lid+Loap"]
    assert t.loc["IDE+BN", "paper mAP"] == 78.8  # Market-1501, Table 4 of the paper
    assert t.loc["MltB+Lid+Loap", "ours mAP"] == "30.0 (1 seed)"
    assert t.loc["MltB+Lid+Loap", "ours rank10"] == "80.0 (1 seed)"
    assert t.loc["IDE+BN", "ours mAP"] == "19.7 ± 2.5 (3)"  # seed mean ± sd over ide_bn and its replicas


def test_missing_runs_show_nan_not_zero(records):
    sweep = cama_report.branch_sweep(records)
    assert sweep.loc[2, "ours mAP"] == "not run" and sweep.loc[1, "ours mAP"] == "19.7 ± 2.5 (3)"
    assert cama_report.explanation_table(records, ["ide_bn"]).loc["ide_bn", "L_oap"] == "not run"
    points = cama_report.branch_sweep_points(records)
    assert sorted(points.loc[points["N"] == 1, "mAP"].round(6)) == [17.0, 20.0, 22.0]  # each seed a point
    assert math.isnan(report.arm_mean(records, "cama_n2"))


def test_seed_spread(records):
    spread = cama_report.seed_spread(records)
    assert spread["n"] == 3
    assert spread["mean"] == pytest.approx((20 + 22 + 17) / 3)
    assert spread["range"] == pytest.approx(5.0)
    assert cama_report.seed_spread({})["n"] == 0


def test_paper_vs_ours_appends_our_row_with_its_dataset(records):
    t = cama_report.paper_vs_ours(records, "Market-1501")
    assert t.index[-1] == "CAMA (N=3), ours on synthreid_tiny (seed mean ± sd)"
    assert t["mAP"].iloc[-1] == "30.0 (1 seed)"
    assert "PCB (paper)" in t.index


def test_paper_k_sweep_in_shares_of_128_cells():
    paper = cama_report.paper_k_sweep()
    assert paper["k"].tolist() == sorted(paper["k"].tolist())
    row = paper[paper["k"] == 13].iloc[0]
    assert row["k / cells (%)"] == pytest.approx(100 * 13 / 128) and row["mAP"] == 83.7


def test_figures_draw_from_the_records(records):
    fig = cama_report.plot_histories(records, ["ide_bn", "cama_n3"])
    assert len(fig.axes) == 2  # loss and the recorded mAP
    ours = pd.DataFrame({"N": [1, 3], "mAP": [20.0, 30.0], "rank1": [50.0, 50.0]})
    fig = cama_report.plot_sweep(ours, ours, "N", "N", "Fig. 6")
    assert len(fig.axes) == 2 and fig.axes[1].get_lines()[0].get_ydata().tolist() == [20.0, 30.0]
    assert all(t == int(t) for t in fig.axes[1].get_xticks())  # a branch count has no 1.5 tick
