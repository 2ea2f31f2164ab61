import math

import pytest

from reidlib.recipes import reid_done_right as R
from reidlib.recipes import reid_done_right_report as report
from reidlib.results.store import save_run


def _save(root, run, mAP, rank1=0.5, **extra):
    save_run(R.CHAPTER, run, "cpu", {"mAP": mAP, "rank1": rank1, **extra}, {"run": run}, "synth", 0, 1.0,
             root=root)


def test_tables_and_noise_from_hand_made_results(tmp_path):
    for run, value in {"rdr": 0.30, "rdr_seed1": 0.28, "rdr_seed2": 0.33, "aug_none": 0.20, "aug_flip": 0.25,
                       "aug_crop": 0.21}.items():
        _save(tmp_path, run, value)
    records = report.chapter_records("cpu", tmp_path)
    t1 = report.table1(records)
    assert t1.loc["cut-out", "ours mAP"] == pytest.approx((30 + 28 + 33) / 3)  # seed mean of the arm
    assert t1.loc["cut-out", "seeds"] == 3 and t1.loc["none", "seeds"] == 1
    assert t1.loc["cut-out", "ours mAP sd"] == pytest.approx(2.5166, abs=1e-3)
    assert t1.loc["cut-out", "paper mAP (Market-1501)"] == pytest.approx(81.2)
    assert math.isnan(t1.loc["flip + crop + cut-out", "ours mAP"])  # aug_all not run
    spread = report.seed_spread(records)
    assert spread["n"] == 3 and spread["range"] == pytest.approx(5.0)


def test_table2_labels_each_size_as_a_multiple_of_the_native_height(tmp_path):
    for run, value in {"size_small": 0.2, "rdr": 0.3, "size_large": 0.25}.items():
        _save(tmp_path, run, value)
    records = report.chapter_records("cpu", tmp_path)
    t2 = report.table2(records, R.SCALE_CONFIGS["cpu"])  # 128x64 renders, M = 96 / 128 / 160
    assert list(t2.index) == ["256 px = 1x (ours 96 px = 0.75x)", "416 px = 1.62x (ours 128 px = 1x)",
                              "640 px = 2.5x (ours 160 px = 1.25x)"]
    assert t2["ours mAP"].tolist() == pytest.approx([20.0, 30.0, 25.0])
    full = report.table2(records, R.SCALE_CONFIGS["full"])
    assert list(full.index)[0] == "256 px = 1x (ours 256 px = 1x)"  # the full recipe is the paper's setting


def test_table4_and_distractor_table(tmp_path):
    _save(tmp_path, "rdr", 0.3, rank5=0.6)
    _save(tmp_path, "rdr_qe", 0.4, rank5=0.7)
    curve = {"0": {"mAP": 0.3, "rank1": 0.5, "gallery": 100},
             "200": {"mAP": 0.2, "rank1": 0.4, "gallery": 300}}
    _save(tmp_path, "distractors_rdr", 0.3, curve=curve)
    records = report.chapter_records("cpu", tmp_path)
    t4 = report.table4(records)
    assert t4["ours mAP"].iloc[:2].tolist() == pytest.approx([30.0, 40.0])
    assert t4["paper mAP"].iloc[:2].tolist() == pytest.approx([81.2, 90.0])
    dist = report.distractor_table(records, {"rdr": "rdr"})
    assert dist["rdr mAP"].tolist() == pytest.approx([30.0, 20.0])
    assert list(dist.index) == [(0, 100), (200, 300)]
