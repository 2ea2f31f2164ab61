"""One way, for the whole book, to lay a heat map over a person image.

A map of ``h x w`` cells is upsampled bilinearly to the image (``H x W``), scaled to ``[0, 1]`` (each
map by its own minimum and maximum, or several maps by one shared range so that they can be compared),
coloured with :data:`reidlib.figures.style.HEATMAP_CMAP` and blended with the image at ``alpha = 0.5``.
Every figure that shows such overlays also shows a colour bar that states the scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from reidlib.figures.style import HEATMAP_CMAP

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "to_uint8_image",
    "image_to_tensor",
    "upsample_map",
    "map_range",
    "normalize_map",
    "overlay_heatmap",
    "show_image",
    "add_colorbar",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Opacity of the heat map in every overlay of the book.
OVERLAY_ALPHA = 0.5

ImageLike = np.ndarray | Tensor | Image.Image
MapLike = np.ndarray | Tensor


def to_uint8_image(
    image: ImageLike, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> np.ndarray:
    """An image as ``(H, W, 3)`` uint8 RGB.

    Accepts a uint8 ``(H, W, 3)`` array, a PIL image, or a ``(3, H, W)`` float tensor normalised with
    ``mean``/``std`` (ImageNet's by default), which is de-normalised.
    """
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"an image tensor must be (3, H, W) and normalised; got {tuple(image.shape)}")
        m = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        s = torch.tensor(std, dtype=torch.float32)[:, None, None]
        rgb = (image.detach().float().cpu() * s + m).clamp(0, 1)
        return (rgb.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"an image array must be uint8 (H, W, 3); got dtype {image.dtype} shape {image.shape}"
            )
        return image
    raise TypeError(f"expected a uint8 array, a PIL image or a (3, H, W) tensor; got {type(image).__name__}")


def image_to_tensor(
    image: ImageLike, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Tensor:
    """A uint8 ``(H, W, 3)`` image (array or PIL) as a normalised ``(3, H, W)`` float tensor, no resizing."""
    rgb = torch.from_numpy(np.array(to_uint8_image(image), copy=True)).permute(2, 0, 1).float() / 255
    return (rgb - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def _as_map(heatmap: MapLike) -> Tensor:
    tensor = heatmap.detach() if isinstance(heatmap, Tensor) else torch.as_tensor(np.asarray(heatmap))
    tensor = tensor.float().cpu()
    if tensor.dim() != 2:
        raise ValueError(f"a heat map must be 2-D (h, w); got shape {tuple(tensor.shape)}")
    return tensor


def upsample_map(heatmap: MapLike, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of an ``(h, w)`` map to ``size = (H, W)``, as a float32 array."""
    tensor = _as_map(heatmap)
    out = F.interpolate(tensor[None, None], size=tuple(size), mode="bilinear", align_corners=False)
    return out[0, 0].numpy()


def map_range(maps: Sequence[MapLike]) -> tuple[float, float]:
    """The ``(min, max)`` over several maps: a shared scale for maps that should be compared."""
    if len(maps) == 0:
        raise ValueError("map_range needs at least one map")
    values = [_as_map(m) for m in maps]
    return float(min(v.min() for v in values)), float(max(v.max() for v in values))


def normalize_map(heatmap: MapLike, scale: tuple[float, float] | None = None) -> np.ndarray:
    """Scale a map to ``[0, 1]``: by ``scale = (low, high)`` if given (values outside are clipped), else by
    its own minimum and maximum. A constant map becomes all zeros."""
    values = _as_map(heatmap).numpy()
    low, high = scale if scale is not None else (float(values.min()), float(values.max()))
    if high <= low:
        return np.zeros_like(values)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def overlay_heatmap(
    image: ImageLike,
    heatmap: MapLike,
    *,
    scale: tuple[float, float] | None = None,
    alpha: float = OVERLAY_ALPHA,
    cmap: str = HEATMAP_CMAP,
) -> np.ndarray:
    """The book's overlay: upsample ``heatmap`` to ``image``, scale to ``[0, 1]`` (:func:`normalize_map`),
    colour with ``cmap`` and blend, ``(1 - alpha) image + alpha colour``. Returns uint8 ``(H, W, 3)``."""
    rgb = to_uint8_image(image)
    height, width = rgb.shape[:2]
    values = normalize_map(upsample_map(heatmap, (height, width)), scale)
    colour = plt.get_cmap(cmap)(values)[..., :3]
    blended = (1 - alpha) * rgb.astype(np.float32) / 255 + alpha * colour
    return (np.clip(blended, 0, 1) * 255 + 0.5).astype(np.uint8)


def show_image(
    ax: Axes,
    image: ImageLike,
    heatmap: MapLike | None = None,
    *,
    scale: tuple[float, float] | None = None,
    title: str | None = None,
    border: str | None = None,
    border_width: float = 4.0,
    contour: np.ndarray | None = None,
) -> None:
    """Draw an image (with an optional heat-map overlay) on ``ax``: no ticks, optional coloured border
    (ranked lists: match / mismatch / query colour) and optional white contour of a boolean mask."""
    rgb = to_uint8_image(image) if heatmap is None else overlay_heatmap(image, heatmap, scale=scale)
    ax.imshow(rgb, interpolation="bilinear")
    if contour is not None:
        if contour.shape != rgb.shape[:2]:
            raise ValueError(f"contour mask has shape {contour.shape}; the image is {rgb.shape[:2]}")
        if contour.any():
            ax.contour(contour.astype(float), levels=[0.5], colors="white", linewidths=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(border is not None)
        if border is not None:
            spine.set_edgecolor(border)
            spine.set_linewidth(border_width)
    if title:
        ax.set_title(title, fontsize=8)


def add_colorbar(
    fig: Figure,
    axes: Axes | Sequence[Axes],
    label: str,
    scale: tuple[float, float] | None = None,
    cmap: str = HEATMAP_CMAP,
) -> None:
    """A colour bar for overlays: over ``scale`` (a shared range in the map's units), or over ``[0, 1]``
    when ``scale`` is None, in which case ``label`` must say how the maps were scaled (e.g. "CAM, each
    map scaled to its own min-max")."""
    low, high = scale if scale is not None else (0.0, 1.0)
    mappable = plt.cm.ScalarMappable(norm=Normalize(vmin=low, vmax=high), cmap=cmap)
    mappable.set_array([])
    bar = fig.colorbar(mappable, ax=axes, fraction=0.025, pad=0.02)
    bar.set_label(label)
