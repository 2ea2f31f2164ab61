import json
import math

import pandas as pd
import pytest

from reidlib.results.overview import (
    BASELINE_RUNS,
    PRETRAIN_CHAPTER,
    PRETRAIN_COLUMNS,
    RUN_COLUMNS,
    all_runs,
    baseline_table,
    chapters_with_results,
    cost_table,
    paper_comparisons,
    paper_number_chapters,
    paper_numbers_summary,
    pretrain_records,
    pretrain_table,
    run_summary,
    runs_table,
    seed_runs,
)
from reidlib.results.store import run_path, save_run


def _save(root, chapter, run, scale="cpu", wall=60.0, **metrics):
    metrics = metrics or {"mAP": 0.5, "rank1": 0.6, "rank5": 0.7, "rank10": 0.8}
    return save_run(chapter, run, scale, metrics, {"lr": 0.1}, "synth", 0, wall, root=root)


def _set_dirty(root, chapter, run, scale, dirty, commit="abcdef1234567890"):
    path = run_path(chapter, run, scale, root)
    data = json.loads(path.read_text())
    data["provenance"]["git"] = {"commit": commit, "dirty": dirty}
    path.write_text(json.dumps(data))


@pytest.fixture()
def root(tmp_path):
    root = tmp_path / "results"
    _save(root, "alpha", "a1", wall=30.0)
    _save(root, "alpha", "a2", wall=60.0, mAP=0.25, rank1=0.125)  # no rank5 / rank10
    _save(root, "alpha", "a_full", scale="full", wall=600.0)
    _save(root, "beta", "b1", wall=90.0, mAP=0.123456, rank1=0.2, rank5=0.3, rank10=0.4)
    (root / "gamma" / "cpu").mkdir(parents=True)  # a chapter folder without runs
    return root


def test_chapters_with_results(root, tmp_path):
    assert chapters_with_results(root) == ["alpha", "beta", "gamma"]
    assert chapters_with_results(tmp_path / "nowhere") == []
    (root / PRETRAIN_CHAPTER / "cpu").mkdir(parents=True)  # the trunks' results are no chapter's
    (root / "benchmarks").mkdir()  # loose results files, no scale folder: no chapter either
    (root / "benchmarks" / "bench_train_cpu.json").write_text("{}")
    assert chapters_with_results(root) == ["alpha", "beta", "gamma"]


def test_pretrain_folder_is_the_recipes():
    from reidlib.recipes import pretrain

    assert PRETRAIN_CHAPTER == pretrain.CHAPTER


def test_run_summary_counts_and_minutes(root):
    assert run_summary("alpha", "cpu", root) == {"runs": 2, "wall time (min)": 1.5}
    assert run_summary("gamma", "cpu", root) == {"runs": 0, "wall time (min)": 0.0}


def test_cost_table_pivots_runs_and_minutes(root):
    table = cost_table(["alpha", "beta", "gamma"], ["cpu", "full"], root)
    assert list(table.columns) == [("runs", "cpu"), ("runs", "full"),
                                   ("wall time (min)", "cpu"), ("wall time (min)", "full")]
    assert list(table.index) == ["alpha", "beta", "gamma"]
    assert table.loc["alpha", ("runs", "cpu")] == 2 and table.loc["alpha", ("runs", "full")] == 1
    assert table.loc["alpha", ("wall time (min)", "full")] == 10.0
    assert table.loc["beta", ("wall time (min)", "cpu")] == 1.5
    assert table.loc["gamma", ("runs", "cpu")] == 0
    assert all(str(table[("runs", s)].dtype).startswith("int") for s in ("cpu", "full"))
    # scales keep the order asked for
    assert [s for _, s in cost_table(["alpha"], ["full", "cpu"], root).columns][:2] == ["full", "cpu"]


def test_cost_table_without_chapters_is_empty():
    table = cost_table([], ["cpu"])
    assert table.empty and list(table.columns) == ["chapter", "scale", "runs", "wall time (min)"]


def test_runs_table_percent_missing_metrics_and_dirty_commit(root):
    _set_dirty(root, "alpha", "a1", "cpu", dirty=True)
    _set_dirty(root, "alpha", "a2", "cpu", dirty=False)
    table = runs_table("alpha", "cpu", root)
    assert tuple(table.columns) == RUN_COLUMNS
    rows = table.set_index("run")
    assert rows.loc["a1", "mAP"] == 50.0 and rows.loc["a1", "rank10"] == 80.0
    assert rows.loc["a2", "rank1"] == 12.5  # fractions become percent
    assert math.isnan(rows.loc["a2", "rank5"])
    assert rows.loc["a1", "commit"] == "abcdef1234+" and rows.loc["a2", "commit"] == "abcdef1234"
    assert rows.loc["a2", "wall time (s)"] == 60.0 and set(table["chapter"]) == {"alpha"}
    assert runs_table("gamma", "cpu", root).empty


def test_all_runs_stacks_chapters_in_order(root):
    table = all_runs(["beta", "alpha", "gamma"], "cpu", root)
    assert list(table["chapter"]) == ["beta", "alpha", "alpha"]
    assert list(table.index) == [0, 1, 2]
    assert table.loc[0, "mAP"] == pytest.approx(12.35)  # rounded to 0.01 percent
    assert all_runs(["gamma"], "cpu", root).empty
    assert all_runs([], "cpu", root).empty


PAPER_CSV = """dataset,setting,metric,value,source,run
Market-1501,Baseline,mAP,70.0,Table 1,a1
Market-1501,Baseline,R1,85.0,Table 1,a1
Market-1501,Ours,mAP,80.0,Table 2,
Duke,Baseline,mAP,60.0,Table 1,
"""


@pytest.fixture()
def data_root(tmp_path):
    folder = tmp_path / "data" / "paper_numbers"
    folder.mkdir(parents=True)
    (folder / "alpha.csv").write_text(PAPER_CSV)
    return tmp_path / "data"


def test_paper_numbers_summary(data_root, tmp_path):
    assert paper_number_chapters(data_root) == ["alpha"]
    summary = paper_numbers_summary(data_root)
    assert list(summary.columns) == ["chapter", "dataset", "numbers", "settings", "metrics", "sources"]
    rows = summary.set_index("dataset")
    assert rows.loc["Market-1501", "numbers"] == 3 and rows.loc["Market-1501", "settings"] == 2
    assert rows.loc["Market-1501", "metrics"] == "mAP, rank1"
    assert rows.loc["Market-1501", "sources"] == "Table 1, Table 2"
    assert rows.loc["Duke", "numbers"] == 1
    empty = paper_numbers_summary(tmp_path / "no_data")
    assert empty.empty and list(empty.columns) == list(summary.columns)


def test_paper_comparisons_only_datasets_with_runs(root, data_root):
    comparisons = paper_comparisons("cpu", root=root, data_root=data_root)
    assert [(c, d) for c, d, _ in comparisons] == [("alpha", "Market-1501")]
    table = comparisons[0][2]
    assert isinstance(table, pd.DataFrame) and list(table["our run"]) == ["a1"]
    assert table.loc[0, "paper mAP"] == 70.0 and table.loc[0, "ours mAP"] == pytest.approx(50.0)
    assert table.loc[0, "paper rank1"] == 85.0


def _seeded(root, chapter, run, seed, m_ap, scale="cpu", wall=60.0):
    return save_run(chapter, run, scale, {"mAP": m_ap, "rank1": 0.5}, {"lr": 0.1}, "synth", seed, wall,
                    root=root)


@pytest.fixture()
def seeded_root(tmp_path):
    root = tmp_path / "results"
    for name, seed, value in (("ide_bn", 0, 0.10), ("ide_bn_seed1", 1, 0.20), ("ide_bn_seed2", 2, 0.30),
                              ("ide_bn_seed10", 10, 0.40), ("ide_bn_kf", 0, 0.9), ("cama_n3", 0, 0.5)):
        _seeded(root, "cama", name, seed, value)
    _seeded(root, "protocol", "baseline", 0, 0.125, wall=30.0)
    _seeded(root, "reid_done_right", "rdr_seed1", 1, 0.5)  # the replica without the seed-0 run
    return root


def test_seed_runs_are_the_run_and_its_numbered_replicas(seeded_root):
    assert seed_runs("cama", "ide_bn", "cpu", seeded_root) == ["ide_bn", "ide_bn_seed1", "ide_bn_seed2",
                                                               "ide_bn_seed10"]
    assert seed_runs("reid_done_right", "rdr", "cpu", seeded_root) == ["rdr_seed1"]
    assert seed_runs("cama", "missing", "cpu", seeded_root) == []
    assert seed_runs("nowhere", "ide_bn", "cpu", seeded_root) == []


def test_baseline_table_mean_std_and_wall_time(seeded_root):
    table = baseline_table("cpu", root=seeded_root).set_index("chapter")
    assert list(table.index) == list(BASELINE_RUNS)
    assert list(table.columns) == ["baseline", "seeds", "runs", "mAP mean (%)", "mAP std (%)",
                                   "chapter wall time (min)"]
    cama = table.loc["cama"]
    assert cama["baseline"] == "ide_bn" and cama["seeds"] == 4
    assert cama["runs"] == "ide_bn, ide_bn_seed1, ide_bn_seed2, ide_bn_seed10"
    assert cama["mAP mean (%)"] == pytest.approx(25.0)
    assert cama["mAP std (%)"] == pytest.approx(12.91, abs=0.005)  # sample std of 10, 20, 30, 40
    assert cama["chapter wall time (min)"] == 6.0  # all six runs, not only the baseline's
    protocol = table.loc["protocol"]
    assert protocol["seeds"] == 1 and protocol["mAP mean (%)"] == 12.5 and math.isnan(protocol["mAP std (%)"])
    assert protocol["chapter wall time (min)"] == 0.5
    assert table.loc["reid_done_right", "seeds"] == 1 and table.loc["reid_done_right", "runs"] == "rdr_seed1"


def test_baseline_table_shows_what_is_missing(seeded_root, tmp_path):
    table = baseline_table("smoke", root=seeded_root)
    assert list(table["seeds"]) == [0] * len(BASELINE_RUNS) and set(table["runs"]) == {"none yet"}
    assert table["mAP mean (%)"].isna().all() and (table["chapter wall time (min)"] == 0.0).all()
    other = baseline_table("cpu", {"cama": "cama_n3", "beta": "b"}, metric="rank1", root=seeded_root)
    assert list(other["chapter"]) == ["cama", "beta"] and "rank1 mean (%)" in other
    assert other.loc[0, "rank1 mean (%)"] == 50.0 and other.loc[1, "runs"] == "none yet"
    assert str(baseline_table("cpu", {}, root=tmp_path)["seeds"].dtype).startswith("int")


def _trunk_run(root, name, scale="cpu", epochs=3, wall=600.0, acc=0.875):
    history = [{"epoch": e + 1, "loss": 5.0 - e, "acc": acc * (e + 1) / epochs, "lr": 1e-3}
               for e in range(epochs)]
    return save_run(PRETRAIN_CHAPTER, name, scale, {"train_acc": acc, "train_loss": 5.0 - epochs + 1},
                    {"depth": 18}, "synthreid_market", 0, wall, history=history,
                    extra={"key": f"key-{name}", "sha256": "0" * 64, "images": 12936, "identities": 751,
                           "population_seed": 7919}, root=root)


def test_pretrain_table_reads_the_trunks_results_files(tmp_path):
    root = tmp_path / "results"
    _trunk_run(root, "resnet18w16")
    _trunk_run(root, "resnet10w16", epochs=2, wall=90.0, acc=0.5)
    _trunk_run(root, "resnet18w8", scale="smoke", epochs=1, wall=1.0)
    assert list(pretrain_records("cpu", root)) == ["resnet10w16", "resnet18w16"]
    table = pretrain_table("cpu", root)
    assert list(table.columns) == list(PRETRAIN_COLUMNS)
    rows = table.set_index("trunk")
    assert rows.loc["resnet18w16", "key"] == "key-resnet18w16"
    assert rows.loc["resnet18w16", "images"] == 12936 and rows.loc["resnet18w16", "identities"] == 751
    assert rows.loc["resnet18w16", "epochs"] == 3 and rows.loc["resnet10w16", "epochs"] == 2
    assert rows.loc["resnet18w16", "final train accuracy (%)"] == 87.5
    assert rows.loc["resnet18w16", "wall time (min)"] == 10.0
    assert rows.loc["resnet10w16", "wall time (min)"] == 1.5
    assert list(pretrain_table("smoke", root)["trunk"]) == ["resnet18w8"]
    empty = pretrain_table("full", root)
    assert empty.empty and list(empty.columns) == list(PRETRAIN_COLUMNS)
    # the trunks' wall time sits beside the chapters' in the cost table
    cost = cost_table([PRETRAIN_CHAPTER], ["cpu"], root)
    assert cost.loc[PRETRAIN_CHAPTER, ("wall time (min)", "cpu")] == 11.5


def test_train_benchmark_table(tmp_path):
    import json

    from reidlib.results.overview import train_benchmark_files, train_benchmark_table

    folder = tmp_path / "benchmarks"
    folder.mkdir()
    row = {"chapter": "pmm", "scale": "cpu", "backbone": "ResNet-18 (width 16)", "input": "128x64",
           "batch": 64, "model_images_per_s": 300.0, "pipeline_images_per_s": 150.0, "pipeline_slowdown": 2.0}
    (folder / "bench_train_cpu.json").write_text(json.dumps(
        {"benchmark": "bench_train", "rows": [row], "not_measured": [], "threads": 2,
         "provenance": {"device": {"name": "cpu"}}, "settings": {}}))
    (folder / "other.json").write_text("{}")
    files = train_benchmark_files(tmp_path)
    assert [f.rsplit("/", 1)[-1] for f in files] == ["bench_train_cpu.json"]
    table, meta = train_benchmark_table(files[0])
    assert table.loc[0, "with data pipeline (img/s)"] == 150.0 and table.loc[0, "pipeline slowdown"] == 2.0
    assert table["TFLOP/s"].isna().all() and meta["threads"] == 2
    (folder / "bench_train_bad.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="bench_train_bad.json: not a bench_train results file"):
        train_benchmark_table(folder / "bench_train_bad.json")
    assert train_benchmark_files(tmp_path / "nothing") == []


def _retrieval_rows():
    base = {"num_query": 11659, "num_gallery": 82161, "measured": True}
    return [
        {**base, "task": "evaluation", "dim": 2048, "wall_s": 35.0, "peak_gb": 4.8, "working_gb": 3.4,
         "mAP": 0.61, "rank1": 0.9},
        {**base, "task": "rerank", "dim": 2048, "wall_s": 200.0, "peak_gb": 5.0, "working_gb": 3.6,
         "mAP": 0.7, "rank1": 0.92},
        {"task": "dense_rerank", "dim": 512, "num_query": 746, "num_gallery": 5254, "measured": True,
         "wall_s": 10.0, "peak_gb": 1.0, "working_gb": 0.8},
        {"task": "rerank_rows", "dim": 512, "num_query": 746, "num_gallery": 5254, "measured": True,
         "wall_s": 1.0, "peak_gb": 0.5, "working_gb": 0.2},
        {"task": "dense_rerank", "dim": 512, "num_query": 1491, "num_gallery": 10509, "measured": True,
         "wall_s": 40.0, "peak_gb": 3.4, "working_gb": 2.9},
        {"task": "rerank_rows", "dim": 512, "num_query": 1491, "num_gallery": 10509, "measured": True,
         "wall_s": 3.0, "peak_gb": 0.7, "working_gb": 0.3},
        {**base, "task": "dense_rerank", "dim": 512, "measured": False, "wall_s": 2400.0, "peak_gb": 200.0,
         "from_sizes": [6000, 12000]},
    ]


def test_retrieval_benchmark_table(tmp_path):
    import json

    from reidlib.results.overview import retrieval_benchmark_file, retrieval_benchmark_table

    assert retrieval_benchmark_file(tmp_path) is None
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "retrieval_msmt17_cpu.json").write_text(json.dumps(
        {"benchmark": "retrieval_msmt17", "rows": _retrieval_rows(), "targets": {"rerank": {"wall_s": 300}},
         "chunked_equals_whole_matrix": True, "threads": 2, "provenance": {}}))
    path = retrieval_benchmark_file(tmp_path)
    table, meta = retrieval_benchmark_table(path)
    assert list(table["task"][:2]) == ["evaluation, query chunks", "re-ranking + evaluation, streamed"]
    assert table.loc[0, "mAP (%)"] == pytest.approx(61.0) and pd.isna(table.loc[2, "mAP (%)"])
    assert table.loc[6, "how"] == "extrapolated from N = 6,000, 12,000" and table.loc[0, "how"] == "measured"
    assert meta["chunked_equals_whole_matrix"] and meta["targets"]["rerank"]["wall_s"] == 300
    (folder / "bad.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="bad.json: not a retrieval_msmt17 results file"):
        retrieval_benchmark_table(folder / "bad.json")
