from pathlib import Path

import pytest

from reidlib.data import registry
from reidlib.data.dataset import open_rgb
from reidlib.data.image_check import CorruptImagesError
from reidlib.data.registry import DATASETS, load_dataset, open_dataset
from tests.data.fixtures import (
    break_images,
    make_cuhk03_np,
    make_dukemtmc,
    make_market1501,
    make_market1501_with_broken_images,
    make_msmt17,
    tree_checksums,
)

ON_DISK = [("market1501", make_market1501), ("dukemtmc", make_dukemtmc), ("cuhk03", make_cuhk03_np),
           ("msmt17", make_msmt17)]


def test_real_datasets_are_registered() -> None:
    assert {"market1501", "dukemtmc", "cuhk03", "msmt17"} <= set(DATASETS)
    assert all(callable(loader) for loader in DATASETS.values())


@pytest.mark.parametrize(
    ("name", "make"),
    [("market1501", make_market1501), ("dukemtmc", make_dukemtmc), ("cuhk03", make_cuhk03_np),
     ("msmt17", make_msmt17)],
)
def test_load_dataset_dispatches_by_name(tmp_path: Path, name: str, make) -> None:
    make(tmp_path)
    splits = load_dataset(name, tmp_path)
    assert splits.name.startswith(name)
    assert splits.train and splits.query and splits.gallery


def test_keyword_arguments_reach_the_loader(tmp_path: Path) -> None:
    make_cuhk03_np(tmp_path)
    assert load_dataset("cuhk03", tmp_path, variant="detected").extra["variant"] == "detected"
    make_msmt17(tmp_path)
    assert "val" in load_dataset("MSMT17", tmp_path, combine_train_val=False).extra


def test_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'viper'") as err:
        load_dataset("viper", tmp_path)
    for name in DATASETS:
        assert name in str(err.value)


def _assert_names_every_broken_file(message: str, broken: dict[str, str]) -> None:
    lines = message.splitlines()
    for path, reason in broken.items():
        assert any(line.startswith(f"  {path}: {reason}") for line in lines), (path, reason, message)


def test_open_dataset_lists_every_broken_image_and_leaves_the_folder_alone(tmp_path: Path) -> None:
    root, broken = make_market1501_with_broken_images(tmp_path)
    before = tree_checksums(tmp_path)
    with pytest.raises(CorruptImagesError) as info:
        open_dataset("market1501", tmp_path)
    splits = load_dataset("market1501", tmp_path)
    num_records = len(splits.train) + len(splits.query) + len(splits.gallery)
    message = str(info.value)
    assert message.startswith(f"market1501: 3 of the {num_records} images checked under {root} ")
    _assert_names_every_broken_file(message, broken)
    assert sorted(p for p, _ in info.value.bad) == sorted(broken)
    assert tree_checksums(tmp_path) == before


def test_a_clean_dataset_opens(tmp_path: Path) -> None:
    make_market1501(tmp_path)
    splits, source, synth = open_dataset("market1501", tmp_path)
    assert synth is None and source is open_rgb
    assert splits == load_dataset("market1501", tmp_path)


def test_check_images_false_skips_the_check(tmp_path: Path) -> None:
    _, broken = make_market1501_with_broken_images(tmp_path)
    splits, _, _ = open_dataset("market1501", tmp_path, check_images=False)
    assert splits == load_dataset("market1501", tmp_path)
    assert set(broken) <= {r.path for r in splits.train + splits.query + splits.gallery}


@pytest.mark.parametrize(("name", "make"), ON_DISK)
def test_every_on_disk_dataset_is_checked(tmp_path: Path, name: str, make) -> None:
    make(tmp_path)
    splits = load_dataset(name, tmp_path)
    broken = break_images(*(Path(recs[-1].path) for recs in (splits.train, splits.query, splits.gallery)))
    with pytest.raises(CorruptImagesError, match=f"^{splits.name}: 3 of ") as info:
        open_dataset(name, tmp_path)
    _assert_names_every_broken_file(str(info.value), broken)


def test_msmt17_validation_images_are_checked_when_kept_apart(tmp_path: Path) -> None:
    make_msmt17(tmp_path)
    val = Path(load_dataset("msmt17", tmp_path, combine_train_val=False).extra["val"][0].path)
    val.write_bytes(b"")
    with pytest.raises(CorruptImagesError, match="msmt17: 1 of ") as info:
        open_dataset("msmt17", tmp_path, combine_train_val=False)
    assert info.value.bad == [(str(val), "empty file (0 bytes)")]


def test_the_check_bar_follows_progress(tmp_path: Path, capsys) -> None:
    make_dukemtmc(tmp_path)
    open_dataset("dukemtmc", tmp_path)
    assert capsys.readouterr().err == ""
    open_dataset("dukemtmc", tmp_path, progress=True)
    assert "dukemtmc: checking images" in capsys.readouterr().err


def test_synthreid_is_not_checked(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("SynthReID renders in memory; there is no file to check")

    monkeypatch.setattr(registry, "check_split_images", fail)
    splits, _, synth = open_dataset("synthreid", preset="tiny", precache=False)
    assert synth is not None and splits.train
