"""ImageDataset: items from disk or from an in-memory source; errors name the file."""

from __future__ import annotations

import re

import pytest
import torch
from PIL import Image, ImageFile

import reidlib.data.registry  # noqa: F401  (with the loaders: none of them may relax PIL's checks)
from reidlib.data.dataset import ImageDataset, ImageReadError, open_rgb
from reidlib.data.records import Record
from reidlib.data.transforms import build_test_transform
from tests.data.fixtures import truncate_file, write_noise_image


def _write(path, color=(255, 0, 0), size=(8, 16)):
    Image.new("RGB", size, color).save(path)
    return str(path)


def test_items_from_disk(tmp_path):
    recs = [Record(_write(tmp_path / "a.png"), 3, 0), Record(_write(tmp_path / "b.png", (0, 0, 255)), 5, 2)]
    ds = ImageDataset(recs)
    assert len(ds) == 2 and ds.pids == [3, 5]
    item = ds[1]
    assert set(item) == {"image", "pid", "camid", "index"}
    assert item["pid"] == 5 and item["camid"] == 2 and item["index"] == 1
    assert item["image"].shape == (3, 16, 8) and item["image"].dtype == torch.float32
    assert torch.allclose(item["image"][:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    assert ds[-1]["index"] == 1
    with pytest.raises(IndexError, match="out of range"):
        ds[2]


def test_grayscale_converted_and_transform_applied(tmp_path):
    path = tmp_path / "g.png"
    Image.new("L", (10, 20), 128).save(path)
    ds = ImageDataset([(str(path), 0, 0)], transform=build_test_transform(32, 16))
    assert ds[0]["image"].shape == (3, 32, 16)


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    missing = str(tmp_path / "nope.jpg")
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        ImageDataset([(missing, 0, 0)])[0]
    corrupt = tmp_path / "bad.jpg"
    corrupt.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        ImageDataset([(str(corrupt), 0, 0)])[0]


def test_empty_truncated_and_text_files_raise_naming_path_and_reason(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    truncated = truncate_file(write_noise_image(tmp_path / "truncated.jpg"))
    with Image.open(truncated):  # opens: only decoding the pixels finds the missing half
        pass
    expected = {empty: "empty file (0 bytes)", text: "not an image", truncated: "truncated JPEG"}
    for path, reason in expected.items():
        with pytest.raises(ImageReadError) as info:
            open_rgb(str(path))
        assert str(info.value).startswith(f"cannot decode image {path}: {reason}")
        with pytest.raises(ImageReadError, match=re.escape(str(path))):
            ImageDataset([(str(path), 0, 0)])[0]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # what makes the truncated file raise at all


def test_image_source_and_its_errors():
    store = {"synth/train/0": Image.new("RGB", (4, 6), (0, 255, 0))}
    ds = ImageDataset([("synth/train/0", 1, 0), ("synth/train/9", 1, 1)], image_source=store.__getitem__)
    assert ds[0]["image"].shape == (3, 6, 4)
    with pytest.raises(ImageReadError, match="synth/train/9"):
        ds[1]
    with pytest.raises(TypeError, match="expected PIL.Image"):
        ImageDataset([("k", 0, 0)], image_source=lambda p: "not an image")[0]


def test_bad_record_raises():
    with pytest.raises(ValueError, match="record 0"):
        ImageDataset([("only-a-path", 1)])
