import pytest

from reidlib.results.paper_numbers import load_paper_numbers, normalize_metric, side_by_side
from reidlib.results.store import save_run

HEADER = "dataset,setting,metric,value,source\n"


def write(tmp_path, text, chapter="ch"):
    folder = tmp_path / "data" / "paper_numbers"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{chapter}.csv").write_text(text)
    return tmp_path / "data"


@pytest.mark.parametrize(
    "raw, canon",
    [("R1", "rank1"), ("Rank-5", "rank5"), ("top-1", "rank1"), ("MAP", "mAP"), ("rank10", "rank10")],
)
def test_normalize_metric(raw, canon):
    assert normalize_metric(raw) == canon


def test_load_valid_file(tmp_path):
    root = write(tmp_path, HEADER + "Market-1501,CAMA,R1,94.7,Table 3\nMarket-1501,CAMA,mAP,84.5,Table 3\n")
    df = load_paper_numbers("ch", root)
    assert list(df["metric"]) == ["rank1", "mAP"] and df["value"].tolist() == [94.7, 84.5]


@pytest.mark.parametrize(
    "body, match",
    [
        ("M,CAMA,R1,abc,T3\n", r"row 2: value 'abc' is not a number"),
        ("M,CAMA,R1,194.7,T3\n", r"row 2: value 194.7 outside \[0, 100\]"),
        ("M,CAMA,R1,94.7,\n", r"row 2: empty 'source'"),
        ("M,CAMA,R1,94.7,T3\nM,CAMA,Rank-1,94.0,T3\n", r"row 3: duplicate of row 2"),
        ("M,CAMA,R1,94.7,T3,extra\n", r"row 2: more fields"),
    ],
)
def test_bad_rows_name_file_and_row(tmp_path, body, match):
    root = write(tmp_path, HEADER + body)
    with pytest.raises(ValueError, match=match) as err:
        load_paper_numbers("ch", root)
    assert "ch.csv" in str(err.value)


def test_bad_header_and_missing_file(tmp_path):
    root = write(tmp_path, "dataset,method,metric,value,source\nM,a,R1,1,T\n")
    with pytest.raises(ValueError, match=r"missing \['setting'\], unknown \['method'\]"):
        load_paper_numbers("ch", root)
    with pytest.raises(FileNotFoundError, match=r"have: \['ch'\]"):
        load_paper_numbers("other", root)


def test_side_by_side(tmp_path):
    data = write(
        tmp_path, HEADER + "Market,Base,mAP,70.0,T1\nMarket,Base,R1,85.0,T1\nMarket,Ours,mAP,80.0,T1\n"
    )
    results = tmp_path / "results"
    save_run("ch", "base", "cpu", {"mAP": 0.25, "rank1": 0.5}, {}, "synth", 0, 1.0, root=results)
    table = side_by_side("ch", "cpu", {"Base": "base", "Ours": "ours"}, root=results, data_root=data)
    assert list(table.columns) == [
        "setting",
        "paper dataset",
        "our run",
        "our dataset",
        "paper mAP",
        "ours mAP",
        "paper rank1",
        "ours rank1",
    ]
    base, ours = table.iloc[0], table.iloc[1]
    assert base["ours mAP"] == 25.0 and base["paper rank1"] == 85.0 and base["our dataset"] == "synth"
    assert ours["our dataset"] == "not yet run" and ours["paper rank1"] != ours["paper rank1"]  # NaN
    with pytest.raises(ValueError, match="setting 'Nope'"):
        side_by_side("ch", "cpu", {"Nope": "base"}, root=results, data_root=data)


def test_run_column_pairs_settings(tmp_path):
    data = write(
        tmp_path, "dataset,setting,metric,value,source,run\nM,Base,mAP,70,T1,base\nM,Other,mAP,60,T1,\n"
    )
    results = tmp_path / "results"
    save_run("ch", "base", "cpu", {"mAP": 0.5}, {}, "synth", 0, 1.0, root=results)
    table = side_by_side("ch", "cpu", metrics=["mAP"], root=results, data_root=data)
    assert table["setting"].tolist() == ["Base"] and table["ours mAP"].tolist() == [50.0]
    assert load_paper_numbers("ch", data)["run"].tolist() == ["base", ""]
