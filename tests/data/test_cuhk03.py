import shutil
from pathlib import Path

import pytest

from reidlib.data.cuhk03 import load_cuhk03
from reidlib.data.parsing import DatasetLayoutError
from tests.data.fixtures import CUHK03_LAYOUTS, make_cuhk03_np, write_image


@pytest.fixture
def cuhk03(tmp_path: Path) -> Path:
    return make_cuhk03_np(tmp_path)


@pytest.mark.parametrize("variant", ["labeled", "detected"])
def test_both_variants(cuhk03: Path, variant: str) -> None:
    splits = load_cuhk03(cuhk03, variant=variant)
    layout = CUHK03_LAYOUTS[variant]
    assert splits.name == f"cuhk03_{variant}"
    assert splits.extra["variant"] == variant
    assert splits.root == str(cuhk03 / variant)
    assert splits.num_cameras == 2
    assert [len(splits.train), len(splits.query), len(splits.gallery)] == [
        len(layout[s]) for s in ("train", "query", "gallery")
    ]
    assert splits.num_train_pids == 3
    assert {r.pid for r in splits.train} == {0, 1, 2}
    assert {r.camid for r in splits.train + splits.query + splits.gallery} == {0, 1}
    assert all(f"{Path('cuhk03-np') / variant}" in r.path and r.path.endswith(".png") for r in splits.train)


def test_variants_read_different_folders(cuhk03: Path) -> None:
    labeled, detected = load_cuhk03(cuhk03, "labeled"), load_cuhk03(cuhk03, "detected")
    assert len(labeled.train) != len(detected.train)
    assert not {r.path for r in labeled.gallery} & {r.path for r in detected.gallery}


def test_root_may_be_the_parent_folder(tmp_path: Path) -> None:
    dataset = make_cuhk03_np(tmp_path)
    assert load_cuhk03(tmp_path).root == str(dataset / "labeled")


def test_unknown_variant(cuhk03: Path) -> None:
    with pytest.raises(ValueError, match="labeled, detected"):
        load_cuhk03(cuhk03, variant="manual")


def test_missing_variant_folder(cuhk03: Path) -> None:
    shutil.rmtree(cuhk03 / "detected")
    load_cuhk03(cuhk03, "labeled")  # the other variant still loads
    with pytest.raises(DatasetLayoutError, match="missing 'detected' variant") as err:
        load_cuhk03(cuhk03, "detected")
    assert str(cuhk03 / "detected") in str(err.value)


def test_wrong_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError) as err:
        load_cuhk03(tmp_path)
    assert str(tmp_path) in str(err.value) and "labeled" in str(err.value) and "cuhk03-np" in str(err.value)


def test_missing_split_folder(cuhk03: Path) -> None:
    shutil.rmtree(cuhk03 / "labeled" / "query")
    with pytest.raises(DatasetLayoutError, match="missing query split") as err:
        load_cuhk03(cuhk03)
    assert str(cuhk03 / "labeled" / "query") in str(err.value)


def test_unparsable_name(cuhk03: Path) -> None:
    bad = write_image(cuhk03 / "detected" / "bounding_box_test" / "1_3_2.png")
    with pytest.raises(DatasetLayoutError, match="cannot parse") as err:
        load_cuhk03(cuhk03, "detected")
    assert str(bad) in str(err.value) and "0001_c1_1.png" in str(err.value)
