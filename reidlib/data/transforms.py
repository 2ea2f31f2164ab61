"""Image transforms for re-ID training and testing (torchvision v1 API).

* :func:`build_train_transform` / :func:`build_test_transform`: the common fixed-size pipeline
  (resize to ``height x width``, flip, pad + random crop, random erasing).
* :class:`ProgressiveCutout`: seed 001's "cut-out" - a random rectangle replaced by random noise, whose
  maximum size grows over training (a curriculum, Sec. 3.3).
* :class:`AspectPreservingResize` + :func:`pad_collate`: seed 001's variable-size inputs - the largest
  image side is scaled to ``M`` pixels without distortion, and a batch is zero-padded to a common size.
* :class:`RandomFractionCrop`: seed 001's "crop" augmentation (Table 1) without distortion - a random
  window that keeps a random fraction of both sides.
* :func:`misalign` / :class:`MisalignedBox`: seed 003's motivation, detector boxes that are shifted and
  mis-scaled, at test time. ``build_test_transform(h, w, misalignment=j, seed=s)`` gives every image its
  own box error, the same one every time the image is seen, so a misaligned evaluation is reproducible.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor
from torch.utils.data import default_collate

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AspectPreservingResize",
    "MisalignedBox",
    "ProgressiveCutout",
    "RandomFractionCrop",
    "build_aspect_transform",
    "build_test_transform",
    "build_train_transform",
    "find_progressive",
    "misalign",
    "pad_collate",
    "set_transform_progress",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_size(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got height={height} width={width}")


class ProgressiveCutout(torch.nn.Module):
    """Replace one random rectangle of a ``(C, H, W)`` float image with uniform noise in ``[0, 1)``.

    Seed 001 ("Re-ID done right", Sec. 3.2-3.3) adds random noise to randomised regions and progressively
    increases the maximum region size during training; it does not give the distribution, so this
    choice is ours: at training progress ``p`` (0 at the start, 1 at the end) the largest allowed area,
    as a fraction of the image, is

        a_max(p) = start + (max_area_final - start) * p

    and each call draws an area ``a ~ U(min_area, a_max(p))`` (nothing is cut while ``a_max <= min_area``),
    an aspect ratio ``r`` log-uniform in ``aspect_range``, and a uniformly placed ``h x w`` rectangle
    with ``h w = a H W`` and ``h / w = r`` (clipped to the image). Apply it after ``ToTensor`` and before
    ``Normalize``, so the noise has the range of real pixels.

    ``set_progress(p)`` may be called by the trainer every epoch or iteration. The progress lives in a
    shared-memory tensor, so DataLoader worker processes (persistent or not) see the update.

    Args:
        max_area_final: ``a_max`` at the end of training, a fraction in ``(0, 1]``.
        start: ``a_max`` at the start of training, in ``[0, max_area_final]``.
        min_area: smallest area fraction drawn.
        probability: chance that an image gets a cut-out at all.
        aspect_range: ``(r_min, r_max)`` of height/width ratios.
    """

    def __init__(
        self,
        max_area_final: float,
        start: float = 0.0,
        min_area: float = 0.0,
        probability: float = 1.0,
        aspect_range: tuple[float, float] = (0.3, 3.3),
    ) -> None:
        super().__init__()
        if not 0.0 < max_area_final <= 1.0:
            raise ValueError(f"max_area_final must be in (0, 1], got {max_area_final}")
        if not 0.0 <= start <= max_area_final:
            raise ValueError(f"start must be in [0, max_area_final={max_area_final}], got {start}")
        if not 0.0 <= min_area <= max_area_final:
            raise ValueError(f"min_area must be in [0, max_area_final={max_area_final}], got {min_area}")
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        if len(aspect_range) != 2 or not 0 < aspect_range[0] <= aspect_range[1]:
            raise ValueError(
                f"aspect_range must be (r_min, r_max) with 0 < r_min <= r_max, got {aspect_range}"
            )
        self.max_area_final = float(max_area_final)
        self.start = float(start)
        self.min_area = float(min_area)
        self.probability = float(probability)
        self.aspect_range = (float(aspect_range[0]), float(aspect_range[1]))
        self._progress = torch.zeros((), dtype=torch.float64).share_memory_()

    @property
    def progress(self) -> float:
        """Training progress ``p`` in ``[0, 1]``."""
        return float(self._progress)

    def set_progress(self, p: float) -> None:
        """Set training progress ``p`` in ``[0, 1]`` (e.g. ``epoch / (num_epochs - 1)``)."""
        if not 0.0 <= p <= 1.0 or math.isnan(p):
            raise ValueError(f"cut-out progress must be in [0, 1], got {p}")
        self._progress.fill_(float(p))

    def max_area(self, p: float | None = None) -> float:
        """``a_max(p)``, the largest cut-out area fraction at progress ``p`` (default: current)."""
        p = self.progress if p is None else p
        return self.start + (self.max_area_final - self.start) * p

    def sample_box(self, height: int, width: int, generator: torch.Generator | None = None
                   ) -> tuple[int, int, int, int] | None:
        """Draw ``(top, left, h, w)`` of one cut-out for an image of ``height x width``; ``None`` = none."""
        a_max = self.max_area()
        if a_max <= self.min_area or float(torch.rand((), generator=generator)) >= self.probability:
            return None
        u = torch.rand(2, generator=generator).tolist()
        area = (self.min_area + (a_max - self.min_area) * u[0]) * height * width
        lo, hi = math.log(self.aspect_range[0]), math.log(self.aspect_range[1])
        ratio = math.exp(lo + (hi - lo) * u[1])
        h = min(height, max(1, round(math.sqrt(area * ratio))))
        w = min(width, max(1, round(math.sqrt(area / ratio))))
        top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
        return top, left, h, w

    def forward(self, img: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if not isinstance(img, Tensor) or img.dim() != 3:
            got = tuple(img.shape) if isinstance(img, Tensor) else type(img).__name__
            raise TypeError(
                f"ProgressiveCutout expects a (C, H, W) tensor (use it after ToTensor), got {got}"
            )
        box = self.sample_box(img.shape[1], img.shape[2], generator)
        if box is None:
            return img
        top, left, h, w = box
        out = img.clone()
        out[:, top : top + h, left : left + w] = torch.rand(
            (img.shape[0], h, w), generator=generator, dtype=img.dtype
        ).to(img.device)
        return out

    def extra_repr(self) -> str:
        return (f"max_area_final={self.max_area_final}, start={self.start}, min_area={self.min_area}, "
                f"probability={self.probability}, progress={self.progress:.3f}")


def find_progressive(transform: Any) -> list[ProgressiveCutout]:
    """Every :class:`ProgressiveCutout` inside ``transform`` (searches ``Compose`` and nested modules)."""
    found: list[ProgressiveCutout] = []
    stack = [transform]
    while stack:
        t = stack.pop()
        if isinstance(t, ProgressiveCutout):
            found.append(t)
        elif isinstance(t, T.Compose):
            stack.extend(t.transforms)
        elif isinstance(t, torch.nn.Module):
            stack.extend(t.children())
    return found


def set_transform_progress(transform: Any, p: float) -> int:
    """Call ``set_progress(p)`` on every curriculum transform in ``transform``; return how many."""
    found = find_progressive(transform)
    for t in found:
        t.set_progress(p)
    return len(found)


def _to_tensor_stages(
    normalize: bool, cutout: ProgressiveCutout | None, random_erasing: float
) -> list[Callable]:
    stages: list[Callable] = [T.ToTensor()]
    if cutout is not None:
        if not isinstance(cutout, ProgressiveCutout):
            raise TypeError(f"cutout must be a ProgressiveCutout, got {type(cutout).__name__}")
        stages.append(cutout)  # before Normalize: noise in pixel range [0, 1)
    if normalize:
        stages.append(T.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    if not 0.0 <= random_erasing <= 1.0:
        raise ValueError(f"random_erasing probability must be in [0, 1], got {random_erasing}")
    if random_erasing > 0:
        # Zhong et al.'s settings (area 2-40 %, aspect 0.3-3.3); value 0 after Normalize = the mean colour.
        stages.append(T.RandomErasing(p=random_erasing, scale=(0.02, 0.4), ratio=(0.3, 3.3), value=0))
    return stages


def build_train_transform(
    height: int,
    width: int,
    flip: bool = True,
    pad: int = 10,
    random_erasing: float = 0.0,
    cutout: ProgressiveCutout | None = None,
    normalize: bool = True,
) -> T.Compose:
    """Training pipeline: PIL image -> ``(3, height, width)`` float tensor.

    Resize to ``height x width`` (bilinear), random horizontal flip (``flip``), zero-pad by ``pad`` pixels
    and randomly crop back (``pad=0`` disables), ``ToTensor``, optional ``cutout`` (seed 001), ImageNet
    normalisation (``normalize``), random erasing with probability ``random_erasing``.
    """
    _check_size(height, width)
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    stages: list[Callable] = [T.Resize((height, width), interpolation=T.InterpolationMode.BILINEAR)]
    if flip:
        stages.append(T.RandomHorizontalFlip(p=0.5))
    if pad > 0:
        stages += [T.Pad(pad), T.RandomCrop((height, width))]
    stages += _to_tensor_stages(normalize, cutout, random_erasing)
    return T.Compose(stages)


def build_test_transform(height: int, width: int, normalize: bool = True, misalignment: float = 0.0,
                         seed: int = 0) -> T.Compose:
    """Test pipeline: resize to ``height x width``, ``ToTensor``, ImageNet normalisation.

    With ``misalignment > 0`` the resize becomes a :class:`MisalignedBox` of that ``jitter`` and ``seed``
    (each image cropped by its own shifted and scaled box, then resized to ``height x width`` in the same
    step); ``misalignment=0`` is exactly the plain pipeline.
    """
    _check_size(height, width)
    if misalignment == 0.0:
        first: Callable = T.Resize((height, width), interpolation=T.InterpolationMode.BILINEAR)
    else:
        first = MisalignedBox(misalignment, seed=seed, size=(height, width))
    stages: list[Callable] = [first, T.ToTensor()]
    if normalize:
        stages.append(T.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return T.Compose(stages)


def _image_size(img: Image.Image | Tensor, who: str) -> tuple[int, int]:
    """``(height, width)`` of a PIL image or a ``(..., H, W)`` tensor."""
    if isinstance(img, Image.Image):
        return img.size[1], img.size[0]
    if isinstance(img, Tensor) and img.dim() >= 2:
        return int(img.shape[-2]), int(img.shape[-1])
    raise TypeError(f"{who} expects a PIL image or a (..., H, W) tensor, got {type(img).__name__}")


def misalign(
    img: Image.Image | Tensor,
    shift: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
    size: tuple[int, int] | None = None,
    fill: int | tuple[int, ...] = 0,
) -> Image.Image | Tensor:
    """Re-crop ``img`` as a misaligned detector box would have cropped it.

    The box is the image's own frame, moved by ``shift = (dy, dx)`` (fractions of the height and width;
    positive moves the box down / right, so the person moves up / left in the result) and scaled by
    ``scale`` about its centre (``> 1``: a loose box, the person looks smaller; ``< 1``: a tight box that
    cuts the person off). The box is then resized (bilinear, antialiased) to ``size`` (``(height, width)``,
    default the image's). Only the crop exists, so where the box leaves it the result is ``fill``
    (black, like the zero padding of the training pipeline's random crop).

    ``shift=(0, 0), scale=1`` with the image's own size returns ``img`` itself.
    """
    height, width = _image_size(img, "misalign")
    if not scale > 0.0:
        raise ValueError(f"scale must be > 0, got {scale}")
    out_h, out_w = size if size is not None else (height, width)
    _check_size(out_h, out_w)
    box_h, box_w = max(1, round(scale * height)), max(1, round(scale * width))
    # floor(x + 0.5) rounds half up: a box shifted by +-k pixels stays symmetric
    top = math.floor(height * (0.5 + shift[0]) - box_h / 2 + 0.5)
    left = math.floor(width * (0.5 + shift[1]) - box_w / 2 + 0.5)
    if (top, left, box_h, box_w) == (0, 0, height, width) and (out_h, out_w) == (height, width):
        return img
    pad = [max(0, -left), max(0, -top), max(0, left + box_w - width), max(0, top + box_h - height)]
    if any(pad):
        img = TF.pad(img, pad, fill=fill)
        top, left = top + pad[1], left + pad[0]
    crop = TF.crop(img, top, left, box_h, box_w)
    if (box_h, box_w) == (out_h, out_w):
        return crop
    return TF.resize(crop, [out_h, out_w], interpolation=T.InterpolationMode.BILINEAR, antialias=True)


class MisalignedBox(torch.nn.Module):
    """Misalign every image by its own, reproducible box error (seed 003's misaligned detections).

    For each image, ``dy, dx ~ U(-jitter, jitter)`` (fractions of its height and width) and
    ``log(scale) ~ U(-scale_jitter, scale_jitter)`` (``scale_jitter`` defaults to ``jitter``; log-uniform,
    so loose and tight boxes are equally likely), then :func:`misalign`. The draw comes from a generator
    keyed by ``seed`` and by the image itself (a CRC of its pixels): the dataset hands the transform only
    the image, and the pixels identify it across epochs, workers and processes, so the same image always
    gets the same box. Pass ``key`` (an index or a path) to :meth:`forward` / :meth:`params` to key by
    that instead.

    Args:
        jitter: largest shift, as a fraction of the size, in ``[0, 1)``; 0 leaves every image as it is.
        seed: which set of box errors.
        scale_jitter: largest ``|log(scale)|``; ``None``: ``jitter``.
        size: output ``(height, width)``; ``None``: each image's own size.
        fill: value of pixels where the box leaves the image.
    """

    def __init__(self, jitter: float, seed: int = 0, scale_jitter: float | None = None,
                 size: tuple[int, int] | None = None, fill: int | tuple[int, ...] = 0) -> None:
        super().__init__()
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"misalignment jitter must be in [0, 1), got {jitter}")
        scale_jitter = jitter if scale_jitter is None else scale_jitter
        if not 0.0 <= scale_jitter < 1.0:
            raise ValueError(f"scale_jitter must be in [0, 1), got {scale_jitter}")
        if size is not None:
            _check_size(*size)
        self.jitter, self.scale_jitter = float(jitter), float(scale_jitter)
        self.seed = int(seed)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.fill = fill

    @staticmethod
    def image_key(img: Image.Image | Tensor) -> int:
        """A 32-bit fingerprint of the image's pixels, size and type (stable across processes)."""
        height, width = _image_size(img, "MisalignedBox")
        if isinstance(img, Image.Image):
            data, kind = img.tobytes(), img.mode
        else:
            data, kind = img.detach().cpu().contiguous().numpy().tobytes(), str(img.dtype)
        return zlib.crc32(data, zlib.crc32(f"{kind}:{height}x{width}".encode()))

    def params(self, img: Image.Image | Tensor, key: int | str | None = None
               ) -> tuple[float, float, float]:
        """``(dy, dx, scale)`` of ``img`` (or of ``key``, when given)."""
        if self.jitter == 0.0 and self.scale_jitter == 0.0:
            return 0.0, 0.0, 1.0
        word = self.image_key(img) if key is None else zlib.crc32(f"key:{key}".encode())
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0xB0C5, word]))
        dy, dx = rng.uniform(-self.jitter, self.jitter, 2).tolist()
        scale = math.exp(float(rng.uniform(-self.scale_jitter, self.scale_jitter)))
        return dy, dx, scale

    def forward(self, img: Image.Image | Tensor, key: int | str | None = None) -> Image.Image | Tensor:
        dy, dx, scale = self.params(img, key)
        return misalign(img, (dy, dx), scale, size=self.size, fill=self.fill)

    def extra_repr(self) -> str:
        return f"jitter={self.jitter}, scale_jitter={self.scale_jitter}, seed={self.seed}, size={self.size}"


class AspectPreservingResize(torch.nn.Module):
    """Scale an image so its largest side is ``max_side`` pixels, keeping the aspect ratio (seed 001).

    Up-scales as well as down-scales (the paper up-scales Market's 256x128 to 416 on the long side).
    Works on PIL images and ``(..., H, W)`` tensors; the short side is rounded to the nearest pixel
    (at least 1).
    """

    def __init__(
        self, max_side: int, interpolation: T.InterpolationMode = T.InterpolationMode.BILINEAR
    ) -> None:
        super().__init__()
        if max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {max_side}")
        self.max_side = int(max_side)
        self.interpolation = interpolation

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(new_height, new_width)`` for an input of ``height x width``."""
        if height < 1 or width < 1:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        scale = self.max_side / max(height, width)
        if height >= width:
            return self.max_side, max(1, round(width * scale))
        return max(1, round(height * scale)), self.max_side

    def forward(self, img: Image.Image | Tensor) -> Image.Image | Tensor:
        if isinstance(img, Image.Image):
            width, height = img.size
        elif isinstance(img, Tensor) and img.dim() >= 2:
            height, width = img.shape[-2:]
        else:
            raise TypeError(
                f"AspectPreservingResize expects a PIL image or a (..., H, W) tensor, got {type(img)}"
            )
        size = self.output_size(int(height), int(width))
        if size == (height, width):
            return img
        return TF.resize(img, list(size), interpolation=self.interpolation, antialias=True)

    def extra_repr(self) -> str:
        return f"max_side={self.max_side}"


class RandomFractionCrop(torch.nn.Module):
    """Crop a random window whose sides are the same random fraction ``s ~ U(min_fraction, 1)`` of the
    image's sides, placed uniformly: the aspect ratio is kept (up to rounding), so a later
    :class:`AspectPreservingResize` never distorts. Works on PIL images and ``(..., H, W)`` tensors.
    """

    def __init__(self, min_fraction: float = 0.8) -> None:
        super().__init__()
        if not 0.0 < min_fraction <= 1.0:
            raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
        self.min_fraction = float(min_fraction)

    def forward(self, img: Image.Image | Tensor) -> Image.Image | Tensor:
        if isinstance(img, Image.Image):
            width, height = img.size
        elif isinstance(img, Tensor) and img.dim() >= 2:
            height, width = (int(v) for v in img.shape[-2:])
        else:
            raise TypeError(f"RandomFractionCrop expects a PIL image or a (..., H, W) tensor, got "
                            f"{type(img)}")
        u = torch.rand(3).tolist()
        s = self.min_fraction + (1.0 - self.min_fraction) * u[0]
        h, w = max(1, round(height * s)), max(1, round(width * s))
        top, left = int(u[1] * (height - h + 1)), int(u[2] * (width - w + 1))
        return TF.crop(img, min(top, height - h), min(left, width - w), h, w)

    def extra_repr(self) -> str:
        return f"min_fraction={self.min_fraction}"


def build_aspect_transform(
    max_side: int, flip: bool = False, cutout: ProgressiveCutout | None = None, normalize: bool = True,
    crop: float | None = None,
) -> T.Compose:
    """Seed 001's pipeline: optional random crop (:class:`RandomFractionCrop` keeping at least ``crop`` of
    each side), aspect-preserving resize to ``max_side``, optional flip and cut-out, ``ToTensor``,
    normalisation. Batches of its outputs need :func:`pad_collate`. Without ``crop``/``cutout``/``flip``
    it is the test pipeline."""
    stages: list[Callable] = [RandomFractionCrop(crop)] if crop is not None else []
    stages.append(AspectPreservingResize(max_side))
    if flip:
        stages.append(T.RandomHorizontalFlip(p=0.5))
    stages += _to_tensor_stages(normalize, cutout, 0.0)
    return T.Compose(stages)


def pad_collate(batch: Sequence[dict | Tensor]) -> dict[str, Tensor]:
    """Collate images of different sizes by zero-padding each at the bottom and right to the largest
    ``H`` and ``W`` of the batch.

    Args:
        batch: items of :class:`reidlib.data.dataset.ImageDataset` (dicts with ``"image"`` ``(C, H_i, W_i)``
            and scalar fields) or bare ``(C, H_i, W_i)`` tensors.

    Returns:
        a dict with ``"image"`` ``(B, C, H, W)``, ``"sizes"`` ``(B, 2)`` int64 of ``(H_i, W_i)``, ``"mask"``
        ``(B, 1, H, W)`` bool (True on real pixels), plus every other field of the items stacked with the
        default collate (``"pid"``, ``"camid"``, ``"index"`` as ``(B,)`` tensors).
    """
    if len(batch) == 0:
        raise ValueError("pad_collate got an empty batch")
    items = [b if isinstance(b, dict) else {"image": b} for b in batch]
    images = []
    for i, item in enumerate(items):
        img = item.get("image")
        if not isinstance(img, Tensor) or img.dim() != 3:
            got = tuple(img.shape) if isinstance(img, Tensor) else type(img).__name__
            raise ValueError(f"pad_collate: item {i} must hold a (C, H, W) image tensor, got {got}")
        images.append(img)
    channels = {img.shape[0] for img in images}
    if len(channels) != 1:
        raise ValueError(f"pad_collate: images have different channel counts {sorted(channels)}")
    height = max(img.shape[1] for img in images)
    width = max(img.shape[2] for img in images)
    out = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    mask = torch.zeros((len(images), 1, height, width), dtype=torch.bool)
    sizes = torch.zeros((len(images), 2), dtype=torch.int64)
    for i, img in enumerate(images):
        h, w = img.shape[1:]
        out[i, :, :h, :w] = img
        mask[i, :, :h, :w] = True
        sizes[i] = torch.tensor([h, w])
    collated: dict[str, Tensor] = {"image": out, "sizes": sizes, "mask": mask}
    keys = set(items[0]) - {"image"}
    for i, item in enumerate(items):
        if set(item) - {"image"} != keys:
            raise ValueError(
                f"pad_collate: item {i} has fields {sorted(item)}, item 0 has {sorted(items[0])}"
            )
    for key in sorted(keys):
        collated[key] = default_collate([item[key] for item in items])
    return collated
