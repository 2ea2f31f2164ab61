"""benchmarks/bench_msmt17.py: its synthetic features, the extrapolation of the dense re-ranking, and one
measurement process at a small size."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_msmt17.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_msmt17", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def test_features_have_msmt17s_structure():
    bench = _module()
    q, g, qp, gp, qc, gc = bench.msmt_like_features(32, num_query=500, num_gallery=4000)
    assert q.shape == (500, 32) and g.shape == (4000, 32) and q.dtype == torch.float32
    torch.testing.assert_close(g.norm(dim=1), torch.ones(4000))
    assert set(qp.tolist()) <= set(gp.tolist()) and len(set(gp.tolist())) == bench.NUM_IDS
    assert int(qc.max()) < bench.NUM_CAMS and int(gc.min()) >= 0


def test_dense_extrapolation_follows_the_power_law_and_the_square():
    bench = _module()
    small = {"num_query": 100, "num_gallery": 900, "wall_s": 2.0, "peak_gb": 1.0 + 1e-6 * 1000**2, "dim": 8}
    large = {"num_query": 200, "num_gallery": 1800, "wall_s": 8.0, "peak_gb": 1.0 + 1e-6 * 2000**2, "dim": 8}
    row = bench.extrapolate(small, large, 10_000)
    assert row["time_exponent"] == pytest.approx(2.0) and row["wall_s"] == pytest.approx(200.0)
    assert row["peak_gb"] == pytest.approx(1.0 + 100.0) and row["measured"] is False
    assert row["from_sizes"] == [1000, 2000]


def test_one_measurement_process_reports_time_memory_and_metrics():
    bench = _module()
    row = bench.run("evaluation", 16, n=4000)
    assert row["num_query"] + row["num_gallery"] == 4000 and row["measured"]
    assert row["wall_s"] > 0 and row["peak_gb"] >= row["working_gb"] >= 0 and 0 < row["mAP"] <= 1
