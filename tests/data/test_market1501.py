import shutil
from pathlib import Path

import pytest

from reidlib.data.market1501 import load_market1501
from reidlib.data.parsing import DatasetLayoutError
from tests.data.fixtures import MARKET_LAYOUT, make_market1501, write_image


@pytest.fixture
def market(tmp_path: Path) -> Path:
    return make_market1501(tmp_path)


def test_counts_and_relabelled_train_pids(market: Path) -> None:
    splits = load_market1501(market)
    assert splits.name == "market1501"
    assert splits.num_cameras == 6
    assert len(splits.train) == len(MARKET_LAYOUT["train"])
    assert len(splits.query) == len(MARKET_LAYOUT["query"])
    assert splits.num_train_pids == 3
    # relabelling follows the sorted original pids 2, 7, 11 -> 0, 1, 2
    assert sorted(r.pid for r in splits.train) == [0, 0, 1, 1, 2, 2, 2]
    assert splits.extra["train_pid_map"] == [2, 7, 11]
    by_name = {Path(r.path).name: r for r in splits.train}
    assert by_name["0007_c6s1_000075_01.jpg"].pid == 1


def test_junk_dropped_and_distractors_kept_in_gallery(market: Path) -> None:
    splits = load_market1501(market)
    gallery_pids = [r.pid for r in splits.gallery]
    assert -1 not in gallery_pids
    assert gallery_pids.count(0) == 2
    assert len(splits.gallery) == len(MARKET_LAYOUT["gallery"]) - 2
    # query/gallery keep the original pids
    assert {r.pid for r in splits.query} == {3, 5}


def test_camids_are_zero_based(market: Path) -> None:
    splits = load_market1501(market)
    expected = sorted(cam - 1 for _, cam in MARKET_LAYOUT["query"])
    assert sorted(r.camid for r in splits.query) == expected
    assert {r.camid for r in splits.train} == {0, 1, 2, 3, 4, 5}


def test_paths_absolute_existing_and_non_images_ignored(market: Path) -> None:
    write_image(market / "query" / "0009_c3s2_000100_01.JPG")  # upper-case extension still an image
    write_image(market / "query" / "0009_c4s2_000100_01.png")
    (market / "query" / "0009_c4s2_000100_01.txt").write_text("note")
    (market / "query" / "subfolder").mkdir()
    (market / "query" / "._0009_c3s2_000100_01.jpg").write_bytes(b"macOS resource fork")
    splits = load_market1501(market)
    records = splits.train + splits.query + splits.gallery
    assert all(Path(r.path).is_absolute() and Path(r.path).is_file() for r in records)
    assert all(Path(r.path).suffix.lower() in {".jpg", ".png"} for r in records)
    assert len(splits.query) == len(MARKET_LAYOUT["query"]) + 2
    assert splits.root == str(market)


def test_root_may_be_the_parent_folder(tmp_path: Path) -> None:
    dataset = make_market1501(tmp_path, folder_name="market1501")
    from_parent = load_market1501(tmp_path)
    assert from_parent.root == str(dataset)
    assert from_parent.train == load_market1501(dataset).train


def test_relative_root_gives_absolute_paths(market: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(market.parent)
    splits = load_market1501(market.name)
    assert Path(splits.query[0].path).is_absolute()


def test_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetLayoutError, match="not an existing folder") as err:
        load_market1501(missing)
    assert str(missing) in str(err.value)


def test_wrong_root_names_path_and_expected_folders(tmp_path: Path) -> None:
    (tmp_path / "something_else").mkdir()
    with pytest.raises(ValueError) as err:  # DatasetLayoutError is a ValueError
        load_market1501(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message
    assert "bounding_box_train" in message and "Market-1501-v15.09.15" in message


@pytest.mark.parametrize("folder", ["bounding_box_train", "query", "bounding_box_test"])
def test_missing_split_folder(market: Path, folder: str) -> None:
    shutil.rmtree(market / folder)
    with pytest.raises(DatasetLayoutError, match="missing") as err:
        load_market1501(market)
    assert str(market / folder) in str(err.value)


def test_empty_split_folder(market: Path) -> None:
    for path in (market / "query").glob("*.jpg"):
        path.unlink()
    with pytest.raises(DatasetLayoutError, match="no images") as err:
        load_market1501(market)
    assert str(market / "query") in str(err.value)


def test_split_of_only_junk(market: Path) -> None:
    for path in (market / "query").glob("*.jpg"):
        path.unlink()
    write_image(market / "query" / "-1_c1s1_000001_01.jpg")
    with pytest.raises(DatasetLayoutError, match="only junk") as err:
        load_market1501(market)
    assert str(market / "query") in str(err.value)


@pytest.mark.parametrize(
    "name", ["holiday.jpg", "0002_c7s1_000451_03.jpg", "0002_c0s1_000451_03.jpg", "-2_c1s1_000451_03.jpg",
             "0002_cam1_000451.jpg"],
)
def test_unparsable_name_is_reported_with_its_path(market: Path, name: str) -> None:
    bad = write_image(market / "bounding_box_train" / name)
    with pytest.raises(DatasetLayoutError) as err:
        load_market1501(market)
    assert str(bad) in str(err.value)
    assert "0002_c1s1_000451_03.jpg" in str(err.value)  # the expected pattern is shown
