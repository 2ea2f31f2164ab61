import pytest

from reidlib.results.claims import (
    NOT_REPRODUCED,
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


def test_verdicts_per_scale(tmp_path):
    data, results = setup(tmp_path)
    for run, mAP, r1, overlap in [
        ("oap", 0.5, 0.6, 0.1),
        ("plain", 0.4, 0.5, 0.3),
        ("max", 0.1, 0.7, 0.0),
        ("avg", 0.1, 0.68, 0.0),
    ]:
        save_run(
            "ch", run, "cpu", {"mAP": mAP, "rank1": r1, "overlap": overlap}, {}, "d", 0, 1.0, root=results
        )
    save_run("ch", "oap", "smoke", {"mAP": 0.3, "rank1": 0.1, "overlap": 0.1}, {}, "d", 0, 1.0, root=results)
    save_run(
        "ch", "plain", "smoke", {"mAP": 0.3, "rank1": 0.1, "overlap": 0.2}, {}, "d", 0, 1.0, root=results
    )
    df = evaluate_claims("ch", root=results, data_root=data)
    verdict = {(r.id, r.scale): r.verdict for r in df.itertuples()}
    assert verdict[("oap-helps", "cpu")] == REPRODUCED
    assert verdict[("oap-helps", "smoke")] == NOT_REPRODUCED  # a tie is not an improvement
    assert verdict[("oap-helps", "full")] == NOT_YET_RUN
    assert verdict[("max-best", "cpu")] == NOT_REPRODUCED  # lead 0.02 < margin 0.05
    assert verdict[("max-best", "smoke")] == NOT_YET_RUN
    assert verdict[("lower-loss", "cpu")] == REPRODUCED
    detail = df[(df.id == "max-best") & (df.scale == "cpu")].iloc[0]["detail"]
    assert "max 0.7000" in detail and "lead +0.0200 <= min margin 0.05" in detail
    wide = ledger(root=results, data_root=data)
    assert list(wide.columns[:7]) == ["chapter", "id", "claim", "paper_evidence", "smoke", "cpu", "full"]
    assert wide.set_index("id").loc["oap-helps", "cpu"] == REPRODUCED


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
