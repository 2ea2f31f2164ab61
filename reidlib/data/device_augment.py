"""The training augmentations on the device, batched: the GPU fast path of the train transform.

:func:`reidlib.data.transforms.build_train_transform` decodes, flips, pads and crops, converts and erases
every image with PIL on the CPU, one at a time: at thousands of images per second that starves a GPU. Here
the images are held once, already resized, as one ``uint8`` tensor ``(N, 3, H, W)`` on the device
(:class:`DeviceImageBank`: SynthReID fits easily, Market-1501 at 256x128 is 1.2 GB), and a batch is
augmented with a few tensor operations (:class:`DeviceAugment`):

1. horizontal flip with probability 1/2 (``T.RandomHorizontalFlip``);
2. zero padding by ``pad`` pixels and a random ``H x W`` crop (``T.Pad`` + ``T.RandomCrop``);
3. ``[0, 1]`` scaling and ImageNet normalisation (``T.ToTensor`` + ``T.Normalize``);
4. random erasing with probability ``p`` of a box of 2-40% of the area and aspect 0.3-3.3, set to 0 after
   normalisation (``T.RandomErasing(scale=(0.02, 0.4), ratio=(0.3, 3.3), value=0)``).

:meth:`DeviceAugment.draw` draws the parameters of a batch from a ``torch.Generator`` and
:meth:`DeviceAugment.apply` applies them; given the same parameters, the result equals the PIL pipeline's
on the same resized images (tested). The random streams differ from PIL's, so a run on the fast path is
not bit-identical to one on the PIL path, only equal in distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from reidlib.data.records import Record
from reidlib.data.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["AugmentParams", "DeviceAugment", "DeviceImageBank", "DeviceLoader"]


@dataclass
class AugmentParams:
    """One batch's augmentation parameters.

    Attributes:
        flips: ``(B,)`` bool, mirror the image.
        offsets: ``(B, 2)`` long, the crop's top-left ``(row, col)`` in the padded image, in
            ``[0, 2 * pad]``.
        erase: ``(B, 4)`` long boxes ``(top, left, height, width)`` in the cropped image; height 0 = none.
    """

    flips: Tensor
    offsets: Tensor
    erase: Tensor


class DeviceAugment:
    """Batched flip, pad-crop, normalisation and random erasing (module docstring).

    Args:
        flip: random horizontal flips. pad: zero padding before the random crop (0: no crop).
        random_erasing: erasing probability. normalize: ImageNet normalisation.
        erase_scale, erase_ratio, erase_attempts: the erasing box's area share, aspect range and the
            number of draws per image before giving up (torchvision's 10).
    """

    def __init__(self, flip: bool = True, pad: int = 10, random_erasing: float = 0.0, normalize: bool = True,
                 erase_scale: tuple[float, float] = (0.02, 0.4),
                 erase_ratio: tuple[float, float] = (0.3, 3.3), erase_attempts: int = 10) -> None:
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        if not 0.0 <= random_erasing <= 1.0:
            raise ValueError(f"random_erasing probability must be in [0, 1], got {random_erasing}")
        self.flip, self.pad, self.random_erasing, self.normalize = flip, pad, random_erasing, normalize
        self.erase_scale, self.erase_ratio, self.erase_attempts = erase_scale, erase_ratio, erase_attempts

    def draw(self, batch: int, height: int, width: int, generator: torch.Generator | None = None,
             device: torch.device | str = "cpu") -> AugmentParams:
        """The parameters of a batch of ``batch`` images of ``height x width``, drawn on ``device``."""
        device = torch.device(device)

        def uniform(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=generator, device=device)

        flips = uniform(batch) < 0.5 if self.flip else torch.zeros(batch, dtype=torch.bool, device=device)
        offsets = torch.randint(0, 2 * self.pad + 1, (batch, 2), generator=generator, device=device)
        erase = torch.zeros(batch, 4, dtype=torch.long, device=device)
        if self.random_erasing > 0:
            n = self.erase_attempts
            area = height * width * (self.erase_scale[0] + (self.erase_scale[1] - self.erase_scale[0])
                                     * uniform(batch, n))
            lo, hi = math.log(self.erase_ratio[0]), math.log(self.erase_ratio[1])
            ratio = torch.exp(lo + (hi - lo) * uniform(batch, n))
            h = torch.sqrt(area * ratio).round().long()
            w = torch.sqrt(area / ratio).round().long()
            fits = (h < height) & (w < width) & (h > 0) & (w > 0)
            first = torch.where(fits.any(dim=1), fits.float().argmax(dim=1), torch.full_like(h[:, 0], -1))
            chosen = (first >= 0) & (uniform(batch) < self.random_erasing)
            idx = first.clamp_min(0)[:, None]
            h, w = h.gather(1, idx)[:, 0], w.gather(1, idx)[:, 0]
            top = (uniform(batch) * (height - h + 1).clamp_min(1)).floor().long()
            left = (uniform(batch) * (width - w + 1).clamp_min(1)).floor().long()
            erase = torch.stack([top, left, h, w], dim=1) * chosen[:, None]
        return AugmentParams(flips, offsets, erase)

    def apply(self, images: Tensor, params: AugmentParams) -> Tensor:
        """``images`` ``(B, 3, H, W)`` uint8 -> augmented ``(B, 3, H, W)`` float32 (normalised).

        Flip and crop move whole pixels, so they run on the ``uint8`` images (a quarter of the bytes); the
        crop slices each image (one strided copy each, far cheaper than a gather over index grids); the
        scaling and normalisation are one multiply-subtract in place.
        """
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"DeviceAugment expects uint8 images (B, 3, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        b, _, h, w = images.shape
        x = torch.where(params.flips.view(b, 1, 1, 1), images.flip(-1), images)
        if self.pad:
            padded = F.pad(x, (self.pad,) * 4)
            x = torch.stack([padded[i, :, top:top + h, left:left + w]
                             for i, (top, left) in enumerate(params.offsets.tolist())])
        x = x.float()
        if self.normalize:  # (x / 255 - mean) / std
            mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
            x.mul_(1.0 / (255.0 * std)).sub_(mean / std)
        else:
            x.div_(255.0)
        if bool((params.erase[:, 2] > 0).any()):
            top, left, eh, ew = params.erase.unbind(dim=1)
            r = torch.arange(h, device=x.device)[None, :, None]
            c = torch.arange(w, device=x.device)[None, None, :]
            inside = ((r >= top[:, None, None]) & (r < (top + eh)[:, None, None])
                      & (c >= left[:, None, None]) & (c < (left + ew)[:, None, None]))
            x.masked_fill_(inside.unsqueeze(1), 0.0)
        return x

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw and apply the parameters of one batch."""
        b, _, h, w = images.shape
        return self.apply(images, self.draw(b, h, w, generator, images.device))


class DeviceImageBank:
    """Training images resized once and held as one ``uint8`` tensor ``(N, 3, H, W)`` on a device, with
    their pids and camids.

    Args:
        records: the training records. image_source: ``path -> PIL.Image`` (SynthReID renders from memory).
        height, width: the training size (bilinear resize, as the PIL pipeline's first step).
        device: where the tensor lives.
    """

    def __init__(self, records: Sequence[Record], image_source: Callable[[str], Image.Image], height: int,
                 width: int, device: torch.device | str = "cpu") -> None:
        if not records:
            raise ValueError("DeviceImageBank needs at least one record")
        self.device = torch.device(device)
        arrays = np.empty((len(records), height, width, 3), dtype=np.uint8)
        for i, r in enumerate(records):
            image = image_source(r.path).convert("RGB").resize((width, height), Image.BILINEAR)
            arrays[i] = np.asarray(image)
        self.images = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.pids = torch.tensor([r.pid for r in records], device=self.device)
        self.camids = torch.tensor([r.camid for r in records], device=self.device)

    def __len__(self) -> int:
        return len(self.pids)

    def nbytes(self) -> int:
        """Bytes the images take on the device."""
        return self.images.numel()


class DeviceLoader:
    """Batches of a :class:`DeviceImageBank` in a sampler's order, augmented on the device: a drop-in for
    the training ``DataLoader`` (the trainer finds ``sampler.set_epoch`` and checkpoints ``generator``).

    Args:
        bank: the images.
        sampler: yields indices (e.g. a :class:`~reidlib.data.samplers.RandomIdentitySampler`).
        batch_size: images per batch (the last partial batch is dropped). augment: the augmentations.
        generator: the augmentation stream (seed it with the run's seed).
    """

    def __init__(self, bank: DeviceImageBank, sampler: Any, batch_size: int, augment: DeviceAugment,
                 generator: torch.Generator | None = None) -> None:
        self.bank, self.sampler, self.batch_size, self.augment = bank, sampler, batch_size, augment
        self.generator = generator

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        order = torch.as_tensor(list(self.sampler), dtype=torch.long)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size].to(self.bank.device)
            images = self.bank.images[idx]
            params = self.augment.draw(len(idx), images.shape[2], images.shape[3], self.generator)
            params = AugmentParams(*(t.to(self.bank.device) for t in (params.flips, params.offsets,
                                                                         params.erase)))
            yield {"image": self.augment.apply(images, params), "pid": self.bank.pids[idx],
                   "camid": self.bank.camids[idx], "index": idx}
