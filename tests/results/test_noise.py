import math

import pytest

from reidlib.results.noise import spread
from reidlib.results.paths import runs_root


def test_spread_drops_nan_and_needs_two_values_for_std():
    s = spread([10.0, float("nan"), 14.0, 12.0])
    assert s["n"] == 3 and s["mean"] == pytest.approx(12.0) and s["range"] == pytest.approx(4.0)
    assert s["std"] == pytest.approx(2.0)
    one = spread([5.0])
    assert one["n"] == 1 and math.isnan(one["std"]) and one["range"] == 0.0
    assert spread([])["n"] == 0


def test_runs_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLIB_RUNS", str(tmp_path / "env"))
    assert runs_root(tmp_path / "given") == tmp_path / "given"
    assert runs_root() == tmp_path / "env"
    monkeypatch.delenv("REIDLIB_RUNS")
    assert runs_root().name == "runs"
