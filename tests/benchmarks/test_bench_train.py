"""benchmarks/bench_train.py end to end on one small chapter model: a results file that the book's table
reader accepts."""

import importlib.util
import json
import sys
from pathlib import Path

from reidlib.results.overview import train_benchmark_table

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_train.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def test_bench_train_writes_a_readable_results_file(tmp_path):
    bench = _module()
    out = tmp_path / "bench_train_cpu.json"
    assert bench.main(["--scales", "cpu", "--chapters", "pmm", "--steps", "1", "--warmup", "0",
                       "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "bench_train" and data["provenance"]["git"]
    # PMM's cpu config trains in bf16 on the CPU: timed that way and, beside it, in float32
    bf16, float32 = data["rows"]
    assert [bf16["precision"], float32["precision"]] == ["bf16", "float32"]
    for row in (bf16, float32):
        assert row["chapter"] == "pmm" and row["input"] == "128x64" and row["batch"] == 64
        assert row["model_images_per_s"] > 0 and row["pipeline_images_per_s"] > 0
    table, _ = train_benchmark_table(out)
    assert list(table["chapter"]) == ["pmm", "pmm"] and list(table["precision"]) == ["bf16", "float32"]
    assert "pmm" in bench.format_table(data["rows"])
