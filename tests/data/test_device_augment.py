"""The device-side batched augmentations equal the PIL pipeline's for the same parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from reidlib.data.device_augment import AugmentParams, DeviceAugment, DeviceImageBank, DeviceLoader
from reidlib.data.records import Record
from reidlib.data.samplers import RandomIdentitySampler
from reidlib.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def _pil_reference(image: Image.Image, flip: bool, offset, erase, pad: int, normalize: bool = True
                   ) -> torch.Tensor:
    """The PIL path of build_train_transform with its random choices fixed."""
    h, w = image.height, image.width
    if flip:
        image = TF.hflip(image)
    if pad:
        image = TF.crop(T.Pad(pad)(image), int(offset[0]), int(offset[1]), h, w)
    x = T.ToTensor()(image)
    x = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)(x) if normalize else x
    top, left, eh, ew = (int(v) for v in erase)
    return TF.erase(x, top, left, eh, ew, 0.0) if eh else x


@pytest.mark.parametrize(("pad", "erasing", "normalize"), [(0, 1.0, True), (3, 1.0, True), (3, 0.0, True),
                                                          (3, 1.0, False)])
def test_batched_augment_equals_pil(pad, erasing, normalize):
    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (6, 16, 8, 3), dtype=np.uint8)
    images = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()
    aug = DeviceAugment(flip=True, pad=pad, random_erasing=erasing, normalize=normalize)
    params = aug.draw(6, 16, 8, torch.Generator().manual_seed(1))
    params.flips[:2] = torch.tensor([True, False])  # both branches present
    out = aug.apply(images, params)
    assert out.shape == (6, 3, 16, 8) and out.dtype == torch.float32
    for i in range(6):
        ref = _pil_reference(Image.fromarray(arrays[i]), bool(params.flips[i]), params.offsets[i],
                             params.erase[i], pad, normalize)
        assert torch.allclose(out[i], ref, atol=1e-5), i


def test_drawn_parameters_stay_in_range():
    aug = DeviceAugment(pad=4, random_erasing=0.5)
    p = aug.draw(2000, 32, 16, torch.Generator().manual_seed(0))
    assert 0.4 < p.flips.float().mean() < 0.6
    assert p.offsets.min() >= 0 and p.offsets.max() == 8
    erased = p.erase[:, 2] > 0
    assert 0.4 < erased.float().mean() < 0.6
    top, left, h, w = p.erase[erased].unbind(dim=1)
    assert (top + h <= 32).all() and (left + w <= 16).all() and (h < 32).all() and (w < 16).all()
    area = (h * w).float() / (32 * 16)
    assert area.min() >= 0.01 and area.max() <= 0.45  # 2-40% up to the rounding of h and w
    same = aug.draw(5, 32, 16, torch.Generator().manual_seed(3))
    again = aug.draw(5, 32, 16, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip((same.flips, same.offsets, same.erase),
                                                  (again.flips, again.offsets, again.erase), strict=True))


def test_errors_name_the_value():
    with pytest.raises(ValueError, match="pad must be >= 0"):
        DeviceAugment(pad=-1)
    with pytest.raises(ValueError, match="random_erasing probability"):
        DeviceAugment(random_erasing=1.5)
    with pytest.raises(ValueError, match="uint8 images"):
        DeviceAugment().apply(torch.zeros(1, 3, 4, 4), AugmentParams(torch.zeros(1, dtype=torch.bool),
                                                                     torch.zeros(1, 2, dtype=torch.long),
                                                                     torch.zeros(1, 4, dtype=torch.long)))


def test_device_loader_batches_in_sampler_order():
    records = [Record(f"img{i}.png", i // 4, i % 2) for i in range(32)]
    colours = {r.path: Image.new("RGB", (10, 20), (i, 0, 0)) for i, r in enumerate(records)}
    bank = DeviceImageBank(records, colours.__getitem__, 16, 8)
    assert len(bank) == 32 and bank.nbytes() == 32 * 3 * 16 * 8
    sampler = RandomIdentitySampler(records, 8, 4, seed=0)
    loader = DeviceLoader(bank, sampler, 8, DeviceAugment(flip=False, pad=0, normalize=False),
                          torch.Generator().manual_seed(0))
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    order = list(sampler)
    first = batches[0]
    assert first["index"].tolist() == order[:8] and first["pid"].tolist() == [i // 4 for i in order[:8]]
    assert torch.allclose(first["image"][:, 0, 0, 0] * 255, torch.tensor(order[:8], dtype=torch.float32))
