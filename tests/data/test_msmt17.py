import shutil
from pathlib import Path

import pytest

from reidlib.data.msmt17 import load_msmt17, parse_msmt17_camera
from reidlib.data.parsing import DatasetLayoutError
from tests.data.fixtures import MSMT17_FOLDERS, MSMT17_LAYOUT, make_msmt17, msmt17_relpath, write_image

VERSIONS = ["V1", "V2"]


@pytest.mark.parametrize("version", VERSIONS)
def test_both_versions_counts_and_relabelling(tmp_path: Path, version: str) -> None:
    root = make_msmt17(tmp_path, version)
    splits = load_msmt17(root)
    assert splits.name == "msmt17" and splits.num_cameras == 15
    assert splits.extra["version"] == version
    # train = list_train + list_val
    assert len(splits.train) == len(MSMT17_LAYOUT["train"]) + len(MSMT17_LAYOUT["val"])
    assert len(splits.query) == len(MSMT17_LAYOUT["query"])
    assert len(splits.gallery) == len(MSMT17_LAYOUT["gallery"])
    assert splits.num_train_pids == 4  # pids 0, 1, 2 from list_train and 3 from list_val
    assert sorted({r.pid for r in splits.train}) == [0, 1, 2, 3]
    train_dir, test_dir = (root / f for f in MSMT17_FOLDERS[version])
    assert all(r.path.startswith(str(train_dir)) for r in splits.train)
    assert all(r.path.startswith(str(test_dir)) for r in splits.query + splits.gallery)
    assert all(Path(r.path).is_absolute() and Path(r.path).is_file() for r in splits.train)


def test_cameras_from_the_third_name_field(tmp_path: Path) -> None:
    splits = load_msmt17(make_msmt17(tmp_path))
    assert sorted(r.camid for r in splits.query) == [0, 8]  # cameras 01 and 09
    assert max(r.camid for r in splits.gallery) == 14  # camera 15
    assert parse_msmt17_camera("0000/0000_000_01_0303morning_0015_0.jpg") == 0


def test_query_gallery_keep_original_pids(tmp_path: Path) -> None:
    splits = load_msmt17(make_msmt17(tmp_path))
    assert [r.pid for r in splits.gallery] == [pid for pid, _ in MSMT17_LAYOUT["gallery"]]


def test_val_kept_apart_when_not_combined(tmp_path: Path) -> None:
    splits = load_msmt17(make_msmt17(tmp_path), combine_train_val=False)
    assert len(splits.train) == len(MSMT17_LAYOUT["train"])
    assert splits.num_train_pids == 3
    assert [r.pid for r in splits.extra["val"]] == [0, 3]


@pytest.mark.parametrize("version", VERSIONS)
def test_root_may_be_the_parent_folder(tmp_path: Path, version: str) -> None:
    root = make_msmt17(tmp_path, version)
    assert load_msmt17(tmp_path).root == str(root)


def test_version_picks_the_matching_folder_when_both_exist(tmp_path: Path) -> None:
    v1, v2 = make_msmt17(tmp_path, "V1"), make_msmt17(tmp_path, "V2")
    assert load_msmt17(tmp_path, version="V2").root == str(v2)
    assert load_msmt17(tmp_path, version="v1").root == str(v1)
    with pytest.raises(ValueError, match="unknown version"):
        load_msmt17(tmp_path, version="V3")


def test_both_layouts_in_one_folder_is_ambiguous(tmp_path: Path) -> None:
    root = make_msmt17(tmp_path, "V1", folder_name="MSMT17")
    (root / "mask_train_v2").mkdir()
    with pytest.raises(DatasetLayoutError, match="version=") as err:
        load_msmt17(root)
    assert str(root) in str(err.value)
    assert load_msmt17(root, version="V1").extra["version"] == "V1"


def test_neither_layout_names_both(tmp_path: Path) -> None:
    root = tmp_path / "MSMT17_V1"
    root.mkdir()
    (root / "list_train.txt").write_text("")
    with pytest.raises(DatasetLayoutError) as err:
        load_msmt17(root)
    message = str(err.value)
    assert str(root) in message and "train/ and test/" in message and "mask_train_v2/" in message


def test_wrong_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError) as err:
        load_msmt17(tmp_path)
    assert str(tmp_path) in str(err.value) and "MSMT17_V1" in str(err.value)


@pytest.mark.parametrize("version", VERSIONS)
def test_missing_image_folder(tmp_path: Path, version: str) -> None:
    root = make_msmt17(tmp_path, version)
    test_dir = root / MSMT17_FOLDERS[version][1]
    shutil.rmtree(test_dir)
    with pytest.raises(DatasetLayoutError, match="missing") as err:
        load_msmt17(root)
    assert str(test_dir) in str(err.value)


@pytest.mark.parametrize("split", ["train", "val", "query", "gallery"])
def test_missing_list_file(tmp_path: Path, split: str) -> None:
    root = make_msmt17(tmp_path)
    (root / f"list_{split}.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="missing") as err:
        load_msmt17(root)
    assert str(root / f"list_{split}.txt") in str(err.value)


def test_empty_list_file(tmp_path: Path) -> None:
    root = make_msmt17(tmp_path)
    (root / "list_query.txt").write_text("\n\n")
    with pytest.raises(DatasetLayoutError, match="empty") as err:
        load_msmt17(root)
    assert str(root / "list_query.txt") in str(err.value)


@pytest.mark.parametrize(
    "line", ["0000/0000_000_01_0303morning_0015_0.jpg", "0000/0000_000_01_0303morning_0015_0.jpg x",
             "0000/notes.txt 0", "0000/0000_000_01_0303morning_0015_0.jpg -1"],
)
def test_bad_list_line(tmp_path: Path, line: str) -> None:
    root = make_msmt17(tmp_path)
    with (root / "list_gallery.txt").open("a") as f:
        f.write(line + "\n")
    with pytest.raises(DatasetLayoutError, match="line 5") as err:
        load_msmt17(root)
    assert str(root / "list_gallery.txt") in str(err.value)


@pytest.mark.parametrize("name", ["0000_000_16_0303morning_0001_0.jpg", "0000_000_xx_0303morning_0001_0.jpg",
                                  "0000_c1.jpg"])
def test_bad_camera_in_name(tmp_path: Path, name: str) -> None:
    root = make_msmt17(tmp_path)
    bad = write_image(root / "test" / "0000" / name)
    with (root / "list_query.txt").open("a") as f:
        f.write(f"0000/{name} 0\n")
    with pytest.raises(DatasetLayoutError, match="camera") as err:
        load_msmt17(root)
    assert str(bad) in str(err.value)


def test_listed_image_missing(tmp_path: Path) -> None:
    root = make_msmt17(tmp_path)
    pid, cam = MSMT17_LAYOUT["train"][0]
    missing = root / "train" / msmt17_relpath(pid, cam, 0)
    missing.unlink()
    with pytest.raises(DatasetLayoutError, match="does not exist") as err:
        load_msmt17(root)
    assert str(missing) in str(err.value)
    assert len(load_msmt17(root, check_files=False).train) == 7
