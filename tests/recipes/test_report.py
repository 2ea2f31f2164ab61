import math

import pandas as pd
import pytest

from reidlib.recipes import report
from reidlib.results.claims import CONTRADICTED, INCONCLUSIVE, REPRODUCED
from reidlib.results.store import save_run


def _save(root, run, mAP, **extra):
    save_run("cama", run, "cpu", {"mAP": mAP, "rank1": 0.5, **extra}, {"run": run}, "synth", 0, 1.0,
             root=root)


@pytest.fixture
def records(tmp_path):
    for run, value in {"base": 0.30, "base_s1": 0.26, "base_s2": 0.32, "other": 0.40}.items():
        _save(tmp_path, run, value, family={"mAP": value / 2})
    return report.chapter_records("cama", "cpu", tmp_path)


def _claims(verdicts, margins, seeds):
    n = len(verdicts)
    return pd.DataFrame({"id": [f"c{i}" for i in range(n)], "claim": [f"claim {i}" for i in range(n)],
                         "verdict": verdicts, "margin": margins, "low": [m - 0.01 for m in margins],
                         "high": [m + 0.01 for m in margins], "seeds": seeds,
                         "detail": [f"detail {i}" for i in range(n)], "paper_evidence": ["Table 1"] * n})


def test_metric_reads_nested_metrics_and_gives_nan_for_missing(records):
    assert report.metric(records["base"], "family.mAP") == pytest.approx(0.15)
    assert report.percent(records["base"], "mAP") == pytest.approx(30.0)
    assert math.isnan(report.metric(records["base"], "family.rank1"))
    assert math.isnan(report.percent(None, "mAP"))


def test_seed_spread_over_the_stored_runs_only(records):
    s = report.seed_spread(records, ["base", "base_s1", "base_s2", "never_ran"])
    assert s["n"] == 3 and s["range"] == pytest.approx(6.0) and s["mean"] == pytest.approx(88 / 3)


def test_paper_value_reads_the_papers_table():
    assert report.paper_value("cama", "IDE+BN", "Market-1501", "mAP") == 78.8
    assert math.isnan(report.paper_value("cama", "no such setting", "Market-1501"))


def test_claims_table_summary_and_verdict_text():
    claims = _claims([REPRODUCED, CONTRADICTED, INCONCLUSIVE], [0.10, -0.05, 0.03], [3, 3, 1])
    table = report.claims_table(claims)
    assert list(table.index) == ["c0", "c1", "c2"]
    assert table["difference (points)"].tolist() == [10.0, -5.0, 3.0]
    assert table["95% interval (points)"].tolist() == ["[+9.00, +11.00]", "[-6.00, -4.00]", "[+2.00, +4.00]"]
    assert table["paired seeds"].tolist() == [3, 3, 1]
    text = report.claims_summary(table, "cpu")
    assert text.startswith("At `cpu` scale, of 3 claims: 1 reproduced, 1 contradicted, 1 inconclusive, "
                           "0 not yet run.")
    assert "1 claims have fewer than 3 paired seeds" in text
    assert "- **c1** (contradicted): claim 1 (detail 1)" in text and "c0**" not in text
    assert report.verdict_text(table) == {"c0": REPRODUCED, "c1": CONTRADICTED, "c2": INCONCLUSIVE}


def _seeded(tmp_path, values):
    from reidlib.results.store import save_run

    for name, (seed, m) in values.items():
        save_run("toy", name, "cpu", {"mAP": m}, {"seed": seed}, "synth", seed, 1.0, root=tmp_path)
    return report.chapter_records("toy", "cpu", tmp_path)


def test_an_arm_is_a_run_and_its_seed_replicas(tmp_path):
    records = _seeded(tmp_path, {"a": (0, 0.40), "a_seed1": (1, 0.42), "a_seed2": (2, 0.44),
                                 "a_seedx": (9, 0.9), "ab_seed1": (1, 0.9), "b": (0, 0.30)})
    assert [r.seed for r in report.arm_records(records, "a")] == [0, 1, 2]
    mean, sd, n = report.arm_stats(records, "a")
    assert (round(mean, 6), round(sd, 6), n) == (42.0, 2.0, 3)
    assert report.arm_cell(records, "a") == "42.0 ± 2.0 (3)"
    assert report.arm_cell(records, "b") == "30.0 (1 seed)"
    assert report.arm_cell(records, "missing") == "not run"
    assert math.isnan(report.arm_mean(records, "missing")) and report.arm_stats(records, "b")[2] == 1
    assert report.arm_points(records, "a", factor=1.0) == [(0, 0.40), (1, 0.42), (2, 0.44)]
