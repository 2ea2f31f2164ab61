"""A torch ``Dataset`` over re-ID records: ``(path, pid, camid)`` -> image tensor and labels.

Images come from disk by default; an ``image_source`` callable lets in-memory datasets (SynthReID's
``load_image``) plug in without writing files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torchvision.transforms.functional as TF
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from reidlib.data.image_check import image_problem
from reidlib.data.records import Record

__all__ = ["ImageDataset", "ImageReadError", "open_rgb"]


class ImageReadError(OSError):
    """An image file exists (or a source was asked for it) but could not be decoded."""


def open_rgb(path: str) -> Image.Image:
    """Open ``path`` as an RGB PIL image; errors name the file and say what is wrong with it.

    A truncated file raises (when its pixels are decoded) as long as PIL's
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays False, its default, which reidlib never changes.

    Raises:
        FileNotFoundError: no such file.
        ImageReadError: the file is empty, not an image, truncated or otherwise undecodable.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")  # convert() loads the pixels, so the file can be closed
    except (UnidentifiedImageError, OSError, ValueError) as err:
        # PIL's own message for an empty or text file ("cannot identify image file") does not say why;
        # the dataset check's reason does, and costs one more read of a file that is failing anyway.
        reason = image_problem(path) or f"{type(err).__name__}: {err}"
        raise ImageReadError(f"cannot decode image {path}: {reason}") from err


class ImageDataset(Dataset):
    """Images of re-ID records.

    Args:
        records: ``Record(path, pid, camid)`` items (or equivalent 3-tuples).
        transform: applied to the PIL image; must return a ``(3, H, W)`` tensor. ``None`` converts to a
            float tensor in ``[0, 1]``.
        image_source: ``path -> PIL.Image`` (RGB); default reads the file from disk.

    Item ``i`` is ``{"image": (3, H, W) tensor, "pid": int, "camid": int, "index": i}``.
    """

    def __init__(
        self,
        records: Sequence[Record | tuple[str, int, int]],
        transform: Callable[[Image.Image], Tensor] | None = None,
        image_source: Callable[[str], Image.Image] | None = None,
    ) -> None:
        recs: list[Record] = []
        for i, r in enumerate(records):
            if len(r) != 3:
                raise ValueError(f"record {i} must be (path, pid, camid), got {r!r}")
            recs.append(Record(str(r[0]), int(r[1]), int(r[2])))
        self.records = recs
        self.transform = transform
        self.image_source = image_source if image_source is not None else open_rgb

    def __len__(self) -> int:
        return len(self.records)

    @property
    def pids(self) -> list[int]:
        """Identity of every record, in order."""
        return [r.pid for r in self.records]

    def load(self, index: int) -> Image.Image:
        """The untransformed PIL image of record ``index``."""
        path = self.records[index].path
        try:
            img = self.image_source(path)
        except (FileNotFoundError, ImageReadError):
            raise
        except Exception as err:  # a custom source's own error: add the path it was asked for
            raise ImageReadError(f"image source could not load {path!r}: {err}") from err
        if not isinstance(img, Image.Image):
            raise TypeError(f"image source returned {type(img).__name__} for {path!r}, expected PIL.Image")
        return img if img.mode == "RGB" else img.convert("RGB")

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        index = index % len(self)
        record = self.records[index]
        img = self.load(index)
        image = self.transform(img) if self.transform is not None else TF.to_tensor(img)
        return {"image": image, "pid": record.pid, "camid": record.camid, "index": index}
