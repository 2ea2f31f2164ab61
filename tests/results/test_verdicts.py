import pandas as pd

from reidlib.results.claims import CONTRADICTED, INCONCLUSIVE, NOT_YET_RUN, REPRODUCED, VERDICTS
from reidlib.results.verdicts import count_phrase, verdict_order, verdicts_by_scale, verdicts_per_chapter

NEW = "verdict-unknown-to-claims"  # a verdict the ledger may hold but VERDICTS does not list


def _table():
    return pd.DataFrame(
        {
            "chapter": ["a", "a", "a", "b"],
            "id": ["x", "y", "z", "w"],
            "cpu": [REPRODUCED, REPRODUCED, CONTRADICTED, NEW],
            "full": [NOT_YET_RUN] * 4,
        }
    )


def test_verdict_order_appends_unknown_verdicts():
    assert verdict_order() == list(VERDICTS)
    assert verdict_order(_table(), ["cpu", "full"]) == [*VERDICTS, NEW]
    assert verdict_order(_table(), ["full"]) == list(VERDICTS)


def test_verdicts_by_scale_counts_every_verdict():
    counts = verdicts_by_scale(_table(), ["cpu", "full"])
    assert counts.index.name == "verdict" and list(counts.columns) == ["cpu", "full"]
    assert list(counts.index) == [*VERDICTS, NEW]
    assert counts.loc[REPRODUCED, "cpu"] == 2 and counts.loc[CONTRADICTED, "cpu"] == 1
    assert counts.loc[NEW, "cpu"] == 1 and counts.loc[NOT_YET_RUN, "full"] == 4
    assert counts["cpu"].sum() == 4 and counts["full"].sum() == 4


def test_verdicts_per_chapter_fills_missing_pairs():
    per = verdicts_per_chapter(_table(), ["a", "b", "c"], ["cpu", "full"])
    assert list(per.index) == [(ch, s) for ch in "abc" for s in ("cpu", "full")]
    assert list(per.columns) == [*VERDICTS, NEW]
    assert per.loc[("a", "cpu"), REPRODUCED] == 2 and per.loc[("a", "cpu"), CONTRADICTED] == 1
    assert per.loc[("b", "cpu"), NEW] == 1 and per.loc[("b", "cpu"), REPRODUCED] == 0
    assert per.loc[("c", "full")].sum() == 0
    assert per.loc[("a", "full"), NOT_YET_RUN] == 3


def test_verdicts_per_chapter_of_empty_ledger():
    empty = pd.DataFrame(columns=["chapter", "id", "cpu"])
    per = verdicts_per_chapter(empty, ["a"], ["cpu"])
    assert per.shape == (1, len(VERDICTS)) and int(per.to_numpy().sum()) == 0


def test_count_phrase():
    counts = verdicts_by_scale(_table(), ["cpu"])["cpu"]
    assert count_phrase({"reproduced": 19, "not reproduced": 6}) == "19 reproduced, 6 not reproduced"
    phrase = count_phrase(counts)
    assert phrase.startswith(f"2 {REPRODUCED}, 1 {CONTRADICTED}, 0 {INCONCLUSIVE}, 0 {NOT_YET_RUN}")
    assert phrase.endswith(f", 1 {NEW}")
    assert count_phrase({}) == ""
