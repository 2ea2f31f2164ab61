from reidlib.results.compare import compare_trees
from reidlib.results.store import save_run


def test_compare_trees_reports_every_difference(tmp_path):
    ref, new = tmp_path / "ref", tmp_path / "new"
    save_run(
        "c", "same", "cpu", {"mAP": 0.5}, {"lr": 0.1}, "d", 0, 1.0, [{"loss": 1.0, "time_s": 2.0}], root=ref
    )
    # wall time and per-epoch timings are ignored
    save_run(
        "c", "same", "cpu", {"mAP": 0.5}, {"lr": 0.1}, "d", 0, 9.0, [{"loss": 1.0, "time_s": 3.0}], root=new
    )
    save_run("c", "diff", "cpu", {"mAP": 0.5, "cmc": [0.5, 0.6]}, {"lr": 0.1}, "d", 0, 1.0, root=ref)
    save_run("c", "diff", "cpu", {"mAP": 0.51, "cmc": [0.5, 0.7]}, {"lr": 0.2}, "d", 0, 1.0, root=new)
    save_run("c", "gone", "cpu", {"mAP": 0.5}, {}, "d", 0, 1.0, root=ref)
    save_run("c", "extra", "cpu", {"mAP": 0.5}, {}, "d", 0, 1.0, root=new)
    save_run("c", "other_scale", "smoke", {"mAP": 0.5}, {}, "d", 0, 1.0, root=new)
    lines = compare_trees(ref, new, scale="cpu")
    assert "c/cpu/diff.json: config.lr: 0.1 -> 0.2 (diff +0.1)" in lines
    assert any(line.startswith("c/cpu/diff.json: metrics.mAP: 0.5 -> 0.51") for line in lines)
    assert any(line.startswith("c/cpu/diff.json: metrics.cmc[1]") for line in lines)
    assert "c/cpu/gone.json: not produced by the new run" in lines
    assert "c/cpu/extra.json: new (no committed reference)" in lines
    assert not any("same.json" in line or "smoke" in line for line in lines)
    assert len(lines) == 5
    assert compare_trees(ref, new, scale="cpu", chapters=["other"]) == []
    tolerant = compare_trees(ref, new, scale="cpu", rtol=0.05)
    assert not any("metrics.mAP" in line for line in tolerant)
