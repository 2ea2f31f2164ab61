"""The protocol page's recipe: config, tables from a synthetic run record, and the smoke run end to end."""

import json

import numpy as np
import pytest

from reidlib.data.synthetic import PRESETS, SynthReID
from reidlib.evaluation.rank import AP_MODES, TRUNCATION_RANK
from reidlib.recipes import protocol
from reidlib.recipes.protocol import (
    ap_comparison,
    ap_definitions_table,
    config_table,
    dataset_label,
    per_query_ap,
    presets_table,
    protocol_config,
    query_with_cues,
    real_dataset_layouts,
    run_protocol,
)
from reidlib.results.store import RunRecord, config_defaults, config_differences, read_run_file, to_jsonable


def _record(per_query, rank1=0.5):
    modes = {m: float(np.mean(v)) for m, v in per_query.items()}
    return RunRecord(chapter="protocol", run="baseline", scale="cpu", dataset="synthreid-tiny", seed=0,
                     metrics={"mAP": modes["full"], "rank1": rank1, "ap_modes": modes}, config={},
                     wall_time_s=1.0, extra={"per_query_ap": per_query})


PER_QUERY = {
    "full": [1.0, 0.5, 0.3, 0.2],
    "trapezoid": [1.0, 0.25, 0.3, 0.1],
    "truncated50": [1.0, 0.5, 0.1, 0.0],
}


def test_presets_table_lists_every_preset():
    table = presets_table()
    assert list(table.index) == list(PRESETS) and table.index.name == "preset"
    tiny = PRESETS["tiny"]
    assert table.loc["tiny", "gallery images"] == tiny.num_gallery_test + tiny.num_distractors
    assert table.loc["market", "train images"] == PRESETS["market"].num_train_images
    assert list(table.columns) == ["train ids", "train images", "test ids", "query images", "gallery images",
                                   "distractors", "cameras", "family size"]


def test_real_dataset_layouts():
    layouts = real_dataset_layouts()
    assert [d.module for d in layouts] == [f"reidlib.data.{m}" for m in protocol.REAL_DATASET_MODULES]
    assert all(d.title and not d.title.endswith(".") and "Layout" in d.layout for d in layouts)
    assert "Market-1501" in layouts[0].title and "bounding_box_train/" in layouts[0].layout


def test_query_with_cues():
    synth = SynthReID("tiny", seed=0, height=32, width=16)
    record = query_with_cues(synth)
    assert record in synth.splits.query and synth.render(record.path).cues.any()


def test_protocol_config_applies_parameters():
    cfg = protocol_config("cpu")
    assert cfg.device == "auto" and cfg.train.seed == 0 and cfg.data.preset == "tiny"
    assert dataset_label(cfg) == "synthreid-tiny"
    other = protocol_config("full", dataset="dukemtmc", data_root="/data/duke", device="cpu", seed=3)
    got = (other.data.name, other.data.root, other.device, other.train.seed)
    assert got == ("dukemtmc", "/data/duke", "cpu", 3)
    assert dataset_label(other) == "dukemtmc"
    with pytest.raises(FileNotFoundError, match="no protocol config"):
        protocol_config("nonexistent")


def test_cpu_config_is_the_committed_runs_config():
    # the committed results file stays valid for reuse only while the page's config is unchanged
    stored = read_run_file(protocol.repo_root() / "results" / "protocol" / "cpu" / "baseline.json")
    cfg = protocol_config("cpu")
    assert config_differences(stored.config, to_jsonable(cfg), defaults=config_defaults(cfg)) == []


def test_config_table():
    table = config_table(protocol_config("cpu"))
    assert list(table.index) == ["dataset", "input (pixels)", "model", "epochs", "batch", "optimizer", "seed"]
    expected = ["synthreid-tiny", "64x32", "bnneck, ResNet-18", 6, 32, "adam, lr 0.001", 0]
    assert list(table["setting"]) == expected


def test_ap_definitions_table_in_percent_and_points():
    table = ap_definitions_table(_record(PER_QUERY))
    assert list(table.index) == list(AP_MODES) and table.index.name == "AP definition"
    assert table.loc["full", "mAP (%)"] == 50.0
    assert table.loc["trapezoid", "mAP (%)"] == pytest.approx(41.25)
    assert table.loc["truncated50", "difference to full (points)"] == pytest.approx(-10.0)
    assert table.loc["full", "difference to full (points)"] == 0.0


def test_ap_comparison_counts_queries_lost_to_truncation():
    summary = ap_comparison(_record(PER_QUERY, rank1=0.25))
    assert summary.lost_to_truncation == 2 and summary.num_queries == 4
    assert summary.map_percent["trapezoid"] == pytest.approx(41.25) and summary.rank1_percent == 25.0
    assert summary.truncation_rank == TRUNCATION_RANK and summary.dataset == "synthreid-tiny"
    arrays = per_query_ap(_record(PER_QUERY))
    assert set(arrays) == set(PER_QUERY) and arrays["full"].dtype == float


@pytest.mark.slow
def test_run_protocol_smoke_end_to_end_and_reuse(tmp_path, monkeypatch, capsys):
    cfg = protocol_config("smoke", device="cpu")
    record = run_protocol(cfg, "smoke", out_dir=tmp_path / "runs", root=tmp_path / "results")
    assert record.path == tmp_path / "results" / "protocol" / "smoke" / "baseline.json"
    assert (tmp_path / "runs" / "latest.pt").is_file()
    assert record.dataset == "synthreid-tiny" and record.seed == 0 and not record.reused
    assert set(record.metrics["ap_modes"]) == set(AP_MODES)
    assert record.metrics["mAP"] == record.metrics["ap_modes"]["full"]
    per_query = per_query_ap(record)
    assert {len(v) for v in per_query.values()} == {record.metrics["num_valid"]}
    # the trapezoid and truncated definitions never exceed the full one, query by query
    assert (per_query["trapezoid"] <= per_query["full"] + 1e-9).all()
    assert (per_query["truncated50"] <= per_query["full"] + 1e-9).all()
    assert np.mean(per_query["trapezoid"]) == pytest.approx(record.metrics["ap_modes"]["trapezoid"])
    assert len(record.history) == cfg.train.epochs
    stored = json.loads(record.path.read_text())
    assert stored["chapter"] == "protocol" and stored["run"] == "baseline"
    assert set(stored["extra"]) == {"per_query_ap"}

    def no_training(*args, **kwargs):
        raise AssertionError("trained although a run with the same config is stored")

    monkeypatch.setattr(protocol, "run_baseline", no_training)
    again = run_protocol(cfg, "smoke", reuse=True, out_dir=tmp_path / "runs", root=tmp_path / "results")
    assert again.reused and again.metrics == record.metrics and again.extra == record.extra
    assert "Reused protocol/smoke/baseline" in capsys.readouterr().out
    changed = protocol_config("smoke", device="cpu", seed=1)
    with pytest.raises(AssertionError, match="trained although"):
        run_protocol(changed, "smoke", reuse=True, out_dir=tmp_path / "runs", root=tmp_path / "results")
