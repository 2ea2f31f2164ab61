"""Transforms: pipeline shapes, cut-out area curriculum, aspect-preserving resize, pad collate and
test-time box misalignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from reidlib.data.transforms import (
    IMAGENET_MEAN,
    AspectPreservingResize,
    MisalignedBox,
    ProgressiveCutout,
    build_aspect_transform,
    build_test_transform,
    build_train_transform,
    find_progressive,
    misalign,
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


# ---- test-time misalignment -------------------------------------------------------------------------------
def _square(height: int = 100, width: int = 50, side: int = 12, marker: int = 0) -> Image.Image:
    """Black image with a red square centred on it; ``marker`` (green, top-left pixel) varies the image
    without touching the square."""
    a = np.zeros((height, width, 3), np.uint8)
    y0, x0 = (height - side) // 2, (width - side) // 2
    a[y0:y0 + side, x0:x0 + side, 0] = 255
    a[0, 0, 1] = marker
    return Image.fromarray(a)


def _centroid(img: Image.Image | torch.Tensor) -> np.ndarray:
    """``(y, x)`` centroid of the red channel (pixel centres at integer coordinates)."""
    red = np.asarray(img, dtype=float)[..., 0] if isinstance(img, Image.Image) else img[0].numpy()
    ys, xs = np.mgrid[: red.shape[0], : red.shape[1]]
    return np.array([(red * ys).sum(), (red * xs).sum()]) / red.sum()


def _noise_image(seed: int, w: int = 40, h: int = 80) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_zero_misalignment_is_the_plain_test_transform():
    plain, zero = build_test_transform(32, 16), build_test_transform(32, 16, misalignment=0.0, seed=7)
    assert [type(t) for t in zero.transforms] == [type(t) for t in plain.transforms]
    for seed in range(3):
        img = _noise_image(seed)
        assert torch.equal(zero(img), plain(img))
    img = _noise_image(0)
    assert MisalignedBox(0.0)(img) is img and MisalignedBox(0.0).params(img) == (0.0, 0.0, 1.0)
    assert misalign(img) is img
    # a box without error resized to the test size is the test pipeline's resize
    resized = build_test_transform(32, 16, normalize=False)(img)
    np.testing.assert_array_equal(np.asarray(misalign(img, size=(32, 16))),
                                  (resized.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def test_misalign_moves_and_scales_the_content_as_asked():
    img = _square()
    centre = _centroid(img)
    # box 10 px down and 10 px left: the square goes 10 px up and 10 px right
    moved = misalign(img, shift=(0.1, -0.2))
    assert moved.size == img.size
    np.testing.assert_allclose(_centroid(moved) - centre, [-10.0, 10.0], atol=0.3)
    # a tight box (scale 0.8) also magnifies: offsets from the centre grow by 1 / 0.8
    tight = misalign(img, shift=(0.1, 0.0), scale=0.8)
    np.testing.assert_allclose(_centroid(tight) - centre, [-10.0 / 0.8, 0.0], atol=0.6)
    red = np.asarray(tight)[..., 0] > 127
    assert red.any(axis=1).sum() == pytest.approx(12 / 0.8, abs=1.5)
    # where the box leaves the image, the result is black (or ``fill``)
    grey = Image.new("RGB", (50, 100), (128, 128, 128))
    off = np.asarray(misalign(grey, shift=(0.3, 0.0)))
    assert off[-30:].max() == 0 and off[:70].min() == 128
    assert np.asarray(misalign(grey, shift=(0.0, -0.1), fill=255))[:, :5].min() == 255
    # tensors are cropped like PIL images, and the output size can be chosen
    tensor = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
    np.testing.assert_allclose(_centroid(misalign(tensor, shift=(0.1, -0.2))), _centroid(moved), atol=1e-6)
    assert misalign(img, shift=(0.05, 0.05), size=(64, 32)).size == (32, 64)
    with pytest.raises(ValueError, match="scale"):
        misalign(img, scale=0.0)
    with pytest.raises(TypeError, match="PIL image"):
        misalign(np.zeros((4, 4)))


def test_misaligned_test_transform_is_reproducible_per_image():
    tf = build_test_transform(32, 16, misalignment=0.15, seed=3)
    images = [_noise_image(seed) for seed in range(6)]
    first = [tf(img) for img in images]
    again = build_test_transform(32, 16, misalignment=0.15, seed=3)  # a new instance, e.g. another run
    for img, out in zip(images, first, strict=True):
        assert out.shape == (3, 32, 16)
        assert torch.equal(tf(img), out) and torch.equal(again(img), out)
        assert torch.equal(tf(img.copy()), out)  # keyed by the pixels, not by the object
    plain = build_test_transform(32, 16)
    assert sum(not torch.allclose(o, plain(i)) for o, i in zip(first, images, strict=True)) >= 5
    box = MisalignedBox(0.15, seed=3)
    assert len({box.params(img) for img in images}) == len(images)  # each image its own box
    other_seed = MisalignedBox(0.15, seed=4)
    assert all(box.params(img) != other_seed.params(img) for img in images)
    assert box.params(images[0], key=17) == box.params(images[1], key=17) != box.params(images[0])
    with pytest.raises(ValueError, match="jitter"):
        MisalignedBox(1.0)
    with pytest.raises(ValueError, match="jitter"):
        build_test_transform(32, 16, misalignment=-0.1)


@pytest.mark.parametrize("jitter", [0.05, 0.1, 0.2])
def test_larger_misalignment_moves_the_content_further(jitter: float):
    box = MisalignedBox(jitter, seed=0)
    height, width = 120, 64
    moves = []
    for marker in range(1, 81):
        img = _square(height, width, side=10, marker=marker)
        dy, dx, scale = box.params(img)
        assert abs(dy) <= jitter and abs(dx) <= jitter and abs(np.log(scale)) <= jitter
        move = _centroid(box(img)) - _centroid(img)
        # each image moves exactly by its own box error (in output pixels: shift / scale)
        np.testing.assert_allclose(move, [-dy * height / scale, -dx * width / scale], atol=0.75)
        moves.append(np.abs(move))
    # |U(-j, j)| averages j / 2 of the size
    mean_y, mean_x = np.mean(moves, axis=0)
    assert mean_y == pytest.approx(jitter / 2 * height, rel=0.25)
    assert mean_x == pytest.approx(jitter / 2 * width, rel=0.25)
