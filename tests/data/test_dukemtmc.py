import shutil
from pathlib import Path

import pytest

from reidlib.data.dukemtmc import load_dukemtmc
from reidlib.data.parsing import DatasetLayoutError
from tests.data.fixtures import DUKE_LAYOUT, make_dukemtmc, write_image


@pytest.fixture
def duke(tmp_path: Path) -> Path:
    return make_dukemtmc(tmp_path)


def test_counts_relabelling_and_cameras(duke: Path) -> None:
    splits = load_dukemtmc(duke)
    assert splits.name == "dukemtmc" and splits.num_cameras == 8
    assert [len(splits.train), len(splits.query), len(splits.gallery)] == [
        len(DUKE_LAYOUT[s]) for s in ("train", "query", "gallery")
    ]
    assert splits.num_train_pids == 3
    assert sorted(r.pid for r in splits.train) == [0, 0, 1, 1, 2]
    assert splits.extra["train_pid_map"] == [1, 4, 9]
    # camera c8 -> camid 7; c1 -> 0
    query = {Path(r.path).name: r for r in splits.query}
    assert query["0006_c8_f0000097.jpg"].camid == 7
    assert query["0005_c1_f0000000.jpg"].camid == 0
    # gallery-only identity 12 keeps its original pid
    assert 12 in {r.pid for r in splits.gallery}


def test_non_images_ignored_and_paths_absolute(duke: Path) -> None:
    splits = load_dukemtmc(duke)
    for record in splits.train + splits.query + splits.gallery:
        assert Path(record.path).is_absolute() and record.path.endswith(".jpg")


def test_root_may_be_the_parent_folder(tmp_path: Path) -> None:
    dataset = make_dukemtmc(tmp_path, folder_name="dukemtmc-reid")
    assert load_dukemtmc(tmp_path).root == str(dataset)


def test_wrong_root(tmp_path: Path) -> None:
    make_dukemtmc(tmp_path / "deeper")  # one level too deep to be found
    with pytest.raises(DatasetLayoutError) as err:
        load_dukemtmc(tmp_path)
    assert str(tmp_path) in str(err.value) and "DukeMTMC-reID" in str(err.value)


def test_missing_gallery_folder(duke: Path) -> None:
    shutil.rmtree(duke / "bounding_box_test")
    with pytest.raises(DatasetLayoutError, match="missing gallery split") as err:
        load_dukemtmc(duke)
    assert str(duke / "bounding_box_test") in str(err.value)


def test_empty_train_folder(duke: Path) -> None:
    for path in (duke / "bounding_box_train").glob("*.jpg"):
        path.unlink()
    with pytest.raises(DatasetLayoutError, match="no images") as err:
        load_dukemtmc(duke)
    assert str(duke / "bounding_box_train") in str(err.value)


def test_camera_out_of_range(duke: Path) -> None:
    bad = write_image(duke / "query" / "0005_c9_f0000001.jpg")
    with pytest.raises(DatasetLayoutError, match="camera") as err:
        load_dukemtmc(duke)
    assert str(bad) in str(err.value) and "1..8" in str(err.value)
