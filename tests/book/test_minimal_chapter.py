"""The 'Writing a chapter' page's example recipe runs end to end on the chapter contract."""

import importlib.util
import json
import sys

import pytest

from reidlib.recipes import chapter, report
from reidlib.results.paths import repo_root


def _example():
    path = repo_root() / "book" / "examples" / "minimal_chapter.py"
    spec = importlib.util.spec_from_file_location("minimal_chapter", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_minimal_chapter_trains_stores_and_reuses_its_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("REIDLIB_SCALE", raising=False)
    ex = _example()
    base = chapter.config_for(ex.SCALE_CONFIGS, "smoke")
    data = chapter.load_data(base)
    ctx = chapter.RunContext(ex.CHAPTER, data, results_root=tmp_path / "results", runs_dir=tmp_path / "runs")
    runs = ex.run_all(base, ctx)
    assert set(runs) == set(ex.RUNS) and runs["ide_bn_seed1"].config.seed == 1
    records = report.chapter_records(ex.CHAPTER, "smoke", tmp_path / "results")
    assert set(records) == {"ide_bn", "ide_bn_seed1"}
    stored = json.loads((tmp_path / "results" / "minimal" / "smoke" / "ide_bn.json").read_text())
    assert 0 <= stored["metrics"]["mAP"] <= 1 and stored["config"]["width"] == 8
    again = ex.run_all(base, chapter.RunContext(ex.CHAPTER, data, reuse=True,
                                                results_root=tmp_path / "results",
                                                runs_dir=tmp_path / "runs"))
    assert all(r.record.reused for r in again.values())
