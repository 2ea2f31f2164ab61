"""Transforms: pipeline shapes, cut-out area curriculum, aspect-preserving resize and pad collate."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from reidlib.data.transforms import (
    IMAGENET_MEAN,
    AspectPreservingResize,
    ProgressiveCutout,
    build_aspect_transform,
    build_test_transform,
    build_train_transform,
    find_progressive,
    pad_collate,
    set_transform_progress,
)


def _img(w: int = 20, h: int = 40) -> Image.Image:
    return Image.new("RGB", (w, h), (120, 60, 30))


def test_train_and_test_pipelines_output_size():
    torch.manual_seed(0)
    train = build_train_transform(32, 16, flip=True, pad=4, random_erasing=0.5)
    test = build_test_transform(32, 16)
    assert train(_img()).shape == (3, 32, 16)
    out = test(_img())
    assert out.shape == (3, 32, 16)
    expected_r = (120 / 255 - IMAGENET_MEAN[0]) / 0.229
    assert out[0, 5, 5].item() == pytest.approx(expected_r, abs=1e-4)
    raw = build_train_transform(32, 16, flip=False, pad=0, normalize=False)(_img())
    assert raw[0, 5, 5].item() == pytest.approx(120 / 255, abs=1e-4)
    with pytest.raises(ValueError, match="pad"):
        build_train_transform(32, 16, pad=-1)
    with pytest.raises(ValueError, match="random_erasing"):
        build_train_transform(32, 16, random_erasing=2.0)


def test_cutout_max_area_grows_linearly():
    cut = ProgressiveCutout(max_area_final=0.4, start=0.1)
    assert cut.max_area(0.0) == pytest.approx(0.1)
    assert cut.max_area(0.5) == pytest.approx(0.25)
    assert cut.max_area(1.0) == pytest.approx(0.4)
    cut.set_progress(0.5)
    assert cut.progress == 0.5 and cut.max_area() == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cut.set_progress(1.5)


def test_cutout_areas_follow_schedule():
    g = torch.Generator().manual_seed(0)
    cut = ProgressiveCutout(max_area_final=0.5)
    img = torch.zeros(3, 64, 32)
    assert torch.equal(cut(img, generator=g), img)  # progress 0, start 0: nothing is cut
    mean_area = {}
    for p in (0.25, 1.0):
        cut.set_progress(p)
        areas = []
        for _ in range(200):
            out = cut(img, generator=g)
            changed = (out != 0).any(dim=0)
            areas.append(changed.float().mean().item())
            assert torch.all((out >= 0) & (out < 1))
            rows, cols = changed.any(dim=1).nonzero(), changed.any(dim=0).nonzero()
            if len(rows):  # a single rectangle: its bounding box is all noise
                box = changed[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
                assert box.float().mean() > 0.98
        # rounding the box to whole pixels may overshoot a_max a little
        assert max(areas) <= cut.max_area(p) * 1.15 + 1 / (64 * 32) * 40
        mean_area[p] = sum(areas) / len(areas)
    assert mean_area[1.0] > 2.5 * mean_area[0.25]
    assert img.abs().sum() == 0  # input untouched


def test_cutout_in_pipeline_and_progress_helpers():
    cut = ProgressiveCutout(0.3)
    pipeline = build_train_transform(32, 16, cutout=cut)
    assert find_progressive(pipeline) == [cut]
    assert set_transform_progress(pipeline, 0.7) == 1 and cut.progress == pytest.approx(0.7)
    assert set_transform_progress(build_test_transform(8, 4), 0.7) == 0
    with pytest.raises(TypeError, match=r"\(C, H, W\) tensor"):
        cut(_img())
    with pytest.raises(ValueError, match="max_area_final"):
        ProgressiveCutout(0.0)


class _Noise(Dataset):
    def __init__(self, transform):
        self.transform = transform

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        return self.transform(torch.zeros(1, 16, 16))


def test_progress_reaches_dataloader_workers():
    cut = ProgressiveCutout(1.0, min_area=0.5)  # at p = 0 nothing is cut; at p = 1 at least half
    loader = DataLoader(_Noise(cut), batch_size=2, num_workers=1, persistent_workers=True)
    assert next(iter(loader)).abs().sum() == 0
    cut.set_progress(1.0)
    batch = next(iter(loader))
    assert ((batch != 0).float().mean(dim=(1, 2, 3)) > 0.4).all()


def test_aspect_preserving_resize():
    resize = AspectPreservingResize(416)
    assert resize.output_size(256, 128) == (416, 208)
    assert resize.output_size(100, 300) == (139, 416)
    assert resize(_img(20, 40)).size == (208, 416)  # PIL: (W, H); up-scaled, no distortion
    assert resize(torch.rand(3, 50, 30)).shape == (3, 416, 250)
    with pytest.raises(ValueError, match="max_side"):
        AspectPreservingResize(0)


def test_aspect_transform_and_pad_collate():
    tf = build_aspect_transform(64, cutout=ProgressiveCutout(0.2))
    items = [
        {"image": tf(_img(20, 40)), "pid": 1, "camid": 0, "index": 0},
        {"image": tf(_img(50, 30)), "pid": 2, "camid": 1, "index": 1},
    ]
    assert items[0]["image"].shape == (3, 64, 32) and items[1]["image"].shape == (3, 38, 64)
    batch = pad_collate(items)
    assert batch["image"].shape == (2, 3, 64, 64)
    assert batch["sizes"].tolist() == [[64, 32], [38, 64]]
    assert batch["pid"].tolist() == [1, 2] and batch["index"].tolist() == [0, 1]
    assert torch.equal(batch["image"][0, :, :, :32], items[0]["image"])
    assert batch["image"][0, :, :, 32:].abs().sum() == 0  # zero pad on the right
    assert batch["image"][1, :, 38:].abs().sum() == 0  # and at the bottom
    assert batch["mask"].shape == (2, 1, 64, 64)
    assert batch["mask"][1].sum() == 38 * 64 and batch["mask"][0, 0, :, :32].all()


def test_pad_collate_errors():
    with pytest.raises(ValueError, match="empty batch"):
        pad_collate([])
    with pytest.raises(ValueError, match="item 1"):
        pad_collate([torch.zeros(3, 4, 4), torch.zeros(4, 4)])
    with pytest.raises(ValueError, match="channel counts"):
        pad_collate([torch.zeros(3, 4, 4), torch.zeros(1, 4, 4)])


def test_random_fraction_crop_keeps_aspect_and_fraction():
    from reidlib.data.transforms import RandomFractionCrop

    torch.manual_seed(0)
    crop = RandomFractionCrop(0.8)
    for _ in range(20):
        out = crop(torch.zeros(3, 100, 50))
        h, w = out.shape[1:]
        assert 80 <= h <= 100 and 40 <= w <= 50
        assert abs(h / w - 2.0) < 0.1
    img = Image.new("RGB", (50, 100))
    assert build_aspect_transform(40, crop=0.8)(img).shape == (3, 40, 20)
    with pytest.raises(ValueError):
        RandomFractionCrop(0.0)
