from pathlib import Path

import pytest

from reidlib.data.parsing import (
    DatasetLayoutError,
    is_image_file,
    list_images,
    make_splits,
    parse_market_style_name,
    resolve_dataset_root,
)
from reidlib.data.records import Record
from tests.data.fixtures import write_image


@pytest.mark.parametrize(
    ("name", "expected"),
    [("0002_c1s1_000451_03.jpg", (2, 0)), ("-1_c3s2_000101_01.jpg", (-1, 2)),
     ("0000_c6s4_002452_02.jpg", (0, 5)), ("0001_c2_f0046182.jpg", (1, 1)), ("0001_c1_1.png", (1, 0))],
)
def test_market_style_names(name: str, expected: tuple[int, int]) -> None:
    assert parse_market_style_name(name, num_cameras=6, example="x") == expected


@pytest.mark.parametrize("name", ["c1_0002.jpg", "0002_c12s1_0.jpg", "0002_c1x.jpg", "abc_c1s1_0.jpg"])
def test_market_style_rejects(name: str) -> None:
    with pytest.raises(DatasetLayoutError, match=name):
        parse_market_style_name(name, num_cameras=6, example="0002_c1s1_000451_03.jpg")


def test_is_image_file() -> None:
    assert is_image_file("a/b.JPG") and is_image_file("b.jpeg") and is_image_file("b.Png")
    assert not is_image_file("Thumbs.db") and not is_image_file("b.txt") and not is_image_file("._b.jpg")


def test_list_images_sorted_and_filtered(tmp_path: Path) -> None:
    write_image(tmp_path / "b.jpg")
    write_image(tmp_path / "a.png")
    (tmp_path / "c.txt").write_text("")
    assert [p.name for p in list_images(tmp_path, dataset="d", split="s")] == ["a.png", "b.jpg"]


def test_resolve_root_case_insensitive_child(tmp_path: Path) -> None:
    (tmp_path / "MARKET1501" / "query").mkdir(parents=True)
    found = resolve_dataset_root(
        tmp_path, dataset="d", expected_entries=["query"], folder_names=["market1501"]
    )
    assert found == tmp_path / "MARKET1501"


def test_make_splits_relabels_train_only() -> None:
    train = [Record("a", 10, 0), Record("b", 4, 1), Record("c", 10, 1)]
    query = [Record("q", 10, 0)]
    splits = make_splits("d", train=train, query=query, gallery=query, num_cameras=2, root=Path("/x"))
    assert [r.pid for r in splits.train] == [1, 0, 1]
    assert splits.query[0].pid == 10 and splits.num_train_pids == 2 and splits.root == "/x"
