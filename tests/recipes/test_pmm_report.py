"""The PMM chapter's tables and figures, read from smoke results files in a temporary folder."""

import matplotlib
import pytest

from reidlib.recipes import chapter, pmm, pmm_report
from reidlib.results.claims import evaluate_claims

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("pmm_report")
    base = pmm.config_for("smoke")
    data = chapter.load_data(base)
    ctx = pmm.context(data, results_root=root / "results", runs_dir=root / "runs")
    runs = pmm.run_all(base, ctx, ["bdb", "pmm", "cutout", "pmm_stages1", "bdb_seed1", "pmm_seed1"])
    return base, data, runs, pmm_report.chapter_records("smoke", root / "results"), root


def test_tables(smoke):
    base, data, runs, records, root = smoke
    t3 = pmm_report.table3(records)
    assert t3.loc["A-Hard-Mix", "paper mAP, Market-1501"] == 85.2
    assert t3.loc["CutOut", "paper rank1, CUHK03 (detected)"] == 73.5
    assert "(1 seed)" in t3.loc["CutOut", "ours mAP"] and t3.loc["CutMix", "ours mAP"] == "not run"
    assert "± " in pmm_report.main_table(records).loc["PMM (three stages, A-Hard-Mix)", "mAP"]
    reported = pmm_report.reported_table(records)
    assert reported.loc["BDB", "paper mAP, Market-1501"] == 86.2
    assert reported.loc["BDB", "paper rank1, CUHK03 (labeled)"] == 79.4
    assert reported["paper mAP, Market-1501"].isna()["PMM"]  # Table 2 was lost: never reconstructed
    assert "± " in reported.loc["PMM", "ours mAP"]
    occlusion = pmm_report.occlusion_table(records, {"PMM": "pmm", "no mix": "pmm_no_mix"})
    assert "± " in occlusion.loc["PMM", "mAP kept (%)"] and occlusion.loc["no mix", "mAP"] == "not run"
    blocks = pmm_report.sweep_table(records, pmm_report.block_runs(base), "block")
    assert list(blocks["our run"]) == ["pmm", "pmm_block2x1", "pmm_block2x2"]
    stages = pmm_report.sweep_table(records, pmm_report.STAGE_RUNS, "stages")
    assert stages.loc["2 stages", "mAP"] == "not run"
    scores = pmm_report.map_scores_table(records, {"BDB": "bdb", "PMM": "pmm"})
    assert ("PMM", "stage3") in scores.index and ("BDB", "stage3") not in scores.index
    claims = evaluate_claims(pmm.CHAPTER, scales=["smoke"], root=root / "results")
    assert set(claims["verdict"]) <= {"inconclusive", "not yet run"}


def test_figures(smoke, tmp_path):
    base, data, runs, records, root = smoke
    for fig in (pmm_report.figure4(runs["pmm"].model, runs["bdb"].model, base, data, n=2),
                pmm_report.mixed_maps_figure(runs["pmm"].model, base, data, n=4),
                pmm_report.plot_arms(records, pmm_report.TABLE3_RUNS, "t"),
                pmm_report.plot_histories(records, ["bdb", "pmm"], "t")):
        fig.savefig(tmp_path / "f.png")
    assert not runs["pmm"].model.training  # the mixing figure ran a copy in training mode
