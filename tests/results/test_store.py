import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from reidlib.results.store import (
    RunOutcome,
    config_defaults,
    list_runs,
    load_run,
    load_runs,
    lookup_metric,
    reusable_run,
    run_or_reuse,
    run_path,
    save_run,
    to_jsonable,
)


@dataclass
class Cfg:
    dataset: str = "synth_tiny"
    seed: int = 3
    lr: float = 0.01
    size: tuple = (64, 32)
    out: Path = Path("runs/x")


def test_save_and_load_roundtrip_with_provenance(tmp_path):
    path = save_run(
        "cama",
        "baseline",
        "cpu",
        {"mAP": np.float32(0.5), "cmc": [0.5, 0.7], "ap": {"trapezoid": 0.48}},
        Cfg(),
        "synth_tiny",
        3,
        12.3456,
        history=[{"epoch": 1, "loss": float("nan")}],
        root=tmp_path,
    )
    assert path == tmp_path / "cama" / "cpu" / "baseline.json"
    rec = load_run("cama", "baseline", "cpu", root=tmp_path)
    assert rec.metrics["mAP"] == pytest.approx(0.5)
    assert rec.metric("ap.trapezoid") == 0.48
    assert rec.config == {"dataset": "synth_tiny", "seed": 3, "lr": 0.01, "size": [64, 32], "out": "runs/x"}
    assert rec.history[0]["loss"] is None  # NaN stored as null, file stays strict JSON
    assert rec.wall_time_s == 12.346
    prov = rec.provenance
    assert set(prov) >= {"git", "versions", "device", "timestamp_utc"}
    assert set(prov["versions"]) >= {"python", "torch", "torchvision", "numpy", "reidlib"}
    assert prov["device"]["device"] == "cpu"
    json.loads(path.read_text())  # strict JSON


def test_env_overrides_results_root(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLIB_RESULTS", str(tmp_path / "r"))
    assert run_path("c", "r1", "smoke") == tmp_path / "r" / "c" / "smoke" / "r1.json"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"chapter": "../x"}, "invalid chapter name"),
        ({"run": "a/b"}, "invalid run name"),
        ({"scale": "gpu"}, "unknown scale"),
        ({"metrics": {}}, "non-empty mapping"),
        ({"metrics": {"mAP": float("inf")}}, r"metrics.mAP is not finite"),
        ({"metrics": {"mAP": None}}, r"metrics.mAP must be a number"),
        ({"dataset": ""}, "dataset must be"),
        ({"wall_time_s": -1}, "wall_time_s"),
    ],
)
def test_save_rejects_bad_input(tmp_path, kwargs, match):
    args = dict(
        chapter="c",
        run="r",
        scale="cpu",
        metrics={"mAP": 0.1},
        config={},
        dataset="d",
        seed=0,
        wall_time_s=1.0,
        root=tmp_path,
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        save_run(**args)


def test_unstorable_config_names_field():
    with pytest.raises(TypeError, match=r"config.model"):
        to_jsonable({"model": object()}, "config")


def test_load_missing_run_lists_existing(tmp_path):
    save_run("c", "a", "cpu", {"mAP": 0.1}, {}, "d", 0, 1.0, root=tmp_path)
    with pytest.raises(FileNotFoundError, match="stored runs: a"):
        load_run("c", "b", "cpu", root=tmp_path)


def test_lookup_metric_reports_available():
    with pytest.raises(KeyError, match="available: a.b, c"):
        lookup_metric({"a": {"b": 1}, "c": 2}, "a.x")


def test_load_runs_dataframe(tmp_path):
    save_run("c", "b", "smoke", {"mAP": 0.2, "ap": {"full": 0.2}}, {}, "d", 1, 1.0, root=tmp_path)
    save_run("c", "a", "smoke", {"mAP": 0.1, "rank1": 0.3}, {}, "d", 0, 2.0, root=tmp_path)
    df = load_runs("c", "smoke", root=tmp_path)
    assert list(df["run"]) == ["a", "b"]
    assert {"mAP", "rank1", "ap.full", "git_commit", "wall_time_s"} <= set(df.columns)
    assert load_runs("c", "full", root=tmp_path).empty
    assert list_runs("c", "cpu", root=tmp_path) == []


def test_run_or_reuse_trains_then_reuses(tmp_path, capsys):
    calls = []

    def train():
        calls.append(1)
        return RunOutcome(metrics={"mAP": 0.4}, history=[{"epoch": 1}])

    first = run_or_reuse("c", "r", "cpu", Cfg(), train, reuse=True, root=tmp_path)
    assert calls == [1] and not first.reused and first.dataset == "synth_tiny" and first.seed == 3
    again = run_or_reuse("c", "r", "cpu", Cfg(), train, reuse=True, root=tmp_path)
    assert calls == [1] and again.reused and again.metrics == {"mAP": 0.4}
    assert "Reused c/cpu/r" in capsys.readouterr().out
    run_or_reuse("c", "r", "cpu", Cfg(lr=0.1), train, reuse=True, root=tmp_path)
    assert calls == [1, 1]
    assert "config differs in lr" in capsys.readouterr().out
    run_or_reuse("c", "r", "cpu", Cfg(lr=0.1), train, reuse=False, root=tmp_path)
    assert calls == [1, 1, 1]


def test_a_run_is_reused_only_on_the_same_data(tmp_path, capsys):
    calls = []

    def train():
        calls.append(1)
        return RunOutcome(metrics={"mAP": 0.4})

    run_or_reuse("c", "r", "cpu", Cfg(), train, reuse=True, root=tmp_path, data_identity="aaaa")
    assert run_or_reuse("c", "r", "cpu", Cfg(), train, reuse=True, root=tmp_path, data_identity="aaaa").reused
    capsys.readouterr()
    again = run_or_reuse("c", "r", "cpu", Cfg(), train, reuse=True, root=tmp_path, data_identity="bbbb")
    assert not again.reused and calls == [1, 1] and again.data_identity == "bbbb"
    assert "its data differ (stored aaaa, now bbbb); training again" in capsys.readouterr().out


def test_run_or_reuse_validates(tmp_path):
    with pytest.raises(ValueError, match="pass dataset="):
        run_or_reuse("c", "r", "cpu", {"seed": 1}, lambda: {"metrics": {"mAP": 1.0}}, root=tmp_path)
    with pytest.raises(ValueError, match="must return a RunOutcome"):
        run_or_reuse("c", "r", "cpu", {"dataset": "d"}, lambda: {"mAP": 1.0}, root=tmp_path)
    rec = run_or_reuse("c", "r", "cpu", {"dataset": "d"}, lambda: {"metrics": {"mAP": 1.0}}, root=tmp_path)
    assert rec.metrics == {"mAP": 1.0} and rec.seed is None


@dataclass
class Inner:
    momentum: float = 0.9


@dataclass
class Grown(Cfg):
    """``Cfg`` after two fields were added (one nested), as a config class grows between runs."""

    amp_dtype: str = "auto"
    inner: Inner = field(default_factory=Inner)


def test_a_field_added_at_its_default_does_not_block_reuse(tmp_path, capsys):
    calls = []

    def train():
        calls.append(1)
        return RunOutcome(metrics={"mAP": 0.4}, history=[{"epoch": 1}])

    run_or_reuse("c", "r", "cpu", Cfg(), train, reuse=True, root=tmp_path)
    again = run_or_reuse("c", "r", "cpu", Grown(), train, reuse=True, root=tmp_path)
    assert calls == [1] and again.reused
    # the new field away from its default is a difference, and so is a changed old one
    for changed, name in ((Grown(amp_dtype="float16"), "amp_dtype"), (Grown(inner=Inner(0.5)), "inner"),
                          (Grown(lr=0.5), "lr")):
        record, why = reusable_run("c", "r", "cpu", changed, root=tmp_path)
        assert record is None and name in why
    # a stored field the config no longer has is still a difference
    run_or_reuse("c", "g", "cpu", Grown(), train, reuse=True, root=tmp_path)
    record, why = reusable_run("c", "g", "cpu", Cfg(), root=tmp_path)
    assert record is None and "amp_dtype" in why and "inner" in why


def test_defaults_also_apply_to_a_config_stored_as_a_plain_mapping(tmp_path):
    # chapters store their dataclass config as a dict with extra keys (the pre-trained trunk's key)
    def train():
        return RunOutcome(metrics={"mAP": 0.4}, history=[])

    run_or_reuse("c", "r", "cpu", {**to_jsonable(Cfg()), "trunk": "k1"}, train, reuse=True, root=tmp_path)
    grown = {**to_jsonable(Grown()), "trunk": "k1"}
    record, why = reusable_run("c", "r", "cpu", grown, root=tmp_path)
    assert record is None and "amp_dtype" in why  # a mapping has no defaults of its own
    record, why = reusable_run("c", "r", "cpu", grown, root=tmp_path, defaults=config_defaults(Grown()))
    assert record is not None and why == ""
    record, why = reusable_run("c", "r", "cpu", {**grown, "trunk": "k2"}, root=tmp_path,
                               defaults=config_defaults(Grown()))
    assert record is None and "trunk" in why
