import pytest

from reidlib.results.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_YET_RUN,
    REPRODUCED,
    evaluate_claims,
    ledger,
    load_claims,
)
from reidlib.results.store import save_run

CLAIMS = """
- id: oap-helps
  claim: OAP improves mAP
  paper_evidence: Table 4
  comparison: {metric: mAP, better: oap, worse: plain}
- id: max-best
  claim: max pooling beats the others
  paper_evidence: Table 5
  comparison: {kind: best_of, metric: rank1, best: max, others: [avg, plain], min_margin: 0.05}
- id: lower-loss
  claim: OAP lowers the overlap
  paper_evidence: Fig. 6
  comparison: {metric: overlap, better: oap, worse: plain, higher_is_better: false}
"""


def setup(tmp_path, text=CLAIMS):
    folder = tmp_path / "data" / "claims"
    folder.mkdir(parents=True)
    (folder / "ch.yaml").write_text(text)
    return tmp_path / "data", tmp_path / "results"


def _arm(results, run, values, scale="cpu", **other):
    """One arm: ``values[s]`` stored as seed ``s`` (run ``run`` for seed 0, ``run_seed<s>`` otherwise)."""
    for seed, (mAP, r1, overlap) in enumerate(values):
        name = run if seed == 0 else f"{run}_seed{seed}"
        save_run("ch", name, scale, {"mAP": mAP, "rank1": r1, "overlap": overlap}, {}, "d", seed, 1.0,
                 root=results)


def test_verdicts_come_from_paired_seed_intervals(tmp_path):
    data, results = setup(tmp_path)
    _arm(results, "oap", [(0.50, 0.6, 0.10), (0.52, 0.6, 0.11), (0.51, 0.6, 0.12)])
    _arm(results, "plain", [(0.40, 0.5, 0.30), (0.41, 0.5, 0.31), (0.40, 0.5, 0.29)])
    _arm(results, "max", [(0.1, 0.70, 0.0), (0.1, 0.71, 0.0), (0.1, 0.70, 0.0)])  # beats avg by ~0.02 only
    _arm(results, "avg", [(0.1, 0.68, 0.0), (0.1, 0.69, 0.0), (0.1, 0.68, 0.0)])
    _arm(results, "oap", [(0.30, 0.1, 0.1)], scale="smoke")  # one seed per arm decides nothing
    _arm(results, "plain", [(0.20, 0.1, 0.2)], scale="smoke")
    df = evaluate_claims("ch", root=results, data_root=data)
    verdict = {(r.id, r.scale): r.verdict for r in df.itertuples()}
    assert verdict[("oap-helps", "cpu")] == REPRODUCED
    assert verdict[("oap-helps", "smoke")] == INCONCLUSIVE  # a 10-point lead on a single seed
    assert verdict[("oap-helps", "full")] == NOT_YET_RUN
    assert verdict[("max-best", "cpu")] == INCONCLUSIVE  # max beats plain clearly, avg by less than 0.05
    assert verdict[("max-best", "smoke")] == NOT_YET_RUN
    assert verdict[("lower-loss", "cpu")] == REPRODUCED
    row = df[(df.id == "oap-helps") & (df.scale == "cpu")].iloc[0]
    assert row["seeds"] == 3 and row["margin"] == pytest.approx((0.10 + 0.11 + 0.11) / 3)
    assert row["low"] < row["margin"] < row["high"]
    detail = df[(df.id == "max-best") & (df.scale == "cpu")].iloc[0]["detail"]
    assert "max - avg: +0.0200 over 3 paired seed(s), 95% interval" in detail and "min margin 0.05" in detail
    wide = ledger(root=results, data_root=data)
    assert list(wide.columns[:7]) == ["chapter", "id", "claim", "paper_evidence", "smoke", "cpu", "full"]
    assert wide.set_index("id").loc["oap-helps", "cpu"] == REPRODUCED


def test_an_interval_below_zero_contradicts(tmp_path):
    data, results = setup(tmp_path)
    _arm(results, "oap", [(0.30, 0, 0), (0.31, 0, 0), (0.29, 0, 0)])
    _arm(results, "plain", [(0.40, 0, 0), (0.42, 0, 0), (0.40, 0, 0)])
    _arm(results, "extra", [(0.9, 0, 0)])  # a run of no claim's arm changes nothing
    df = evaluate_claims("ch", scales=["cpu"], root=results, data_root=data)
    assert df.set_index("id").loc["oap-helps", "verdict"] == CONTRADICTED


def test_missing_metric_is_an_error(tmp_path):
    data, results = setup(tmp_path)
    save_run("ch", "oap", "cpu", {"mAP": 0.5}, {}, "d", 0, 1.0, root=results)
    save_run("ch", "plain", "cpu", {"mAP": 0.4}, {}, "d", 0, 1.0, root=results)
    with pytest.raises(KeyError, match="no metric 'overlap'"):
        evaluate_claims("ch", scales=["cpu"], root=results, data_root=data)


@pytest.mark.parametrize(
    "text, match",
    [
        ("- id: a\n  claim: c\n  paper_evidence: e\n", r"claim 0 \(a\): missing keys \['comparison'\]"),
        (
            "- id: a\n  claim: c\n  paper_evidence: e\n  comparison: {metric: m, better: x}\n",
            r"missing keys \['worse'\]",
        ),
        (
            "- id: a\n  claim: c\n  paper_evidence: e\n  comparison: {kind: rank, metric: m}\n",
            "kind 'rank' unknown",
        ),
        (
            "- id: a\n  claim: c\n  paper_evidence: e\n  comparison: {metric: m, better: x, worse: x}\n",
            "itself",
        ),
        (
            "- id: a\n  claim: c\n  paper_evidence: e\n"
            "  comparison: {metric: m, better: x, worse: y, min_margin: -1}\n",
            "min_margin",
        ),
        ("{}", "non-empty list"),
        (CLAIMS + CLAIMS, "duplicate id 'oap-helps'"),
    ],
)
def test_bad_claims_files(tmp_path, text, match):
    data, _ = setup(tmp_path, text)
    with pytest.raises(ValueError, match=match) as err:
        load_claims("ch", data)
    assert "ch.yaml" in str(err.value)


def test_missing_claims_file(tmp_path):
    data, _ = setup(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"have \['ch'\]"):
        load_claims("nope", data)
