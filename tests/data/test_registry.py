from pathlib import Path

import pytest

from reidlib.data.registry import DATASETS, load_dataset
from tests.data.fixtures import make_cuhk03_np, make_dukemtmc, make_market1501, make_msmt17


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
