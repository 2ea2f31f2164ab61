from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from reidlib.explain.overlay import (
    add_colorbar,
    image_to_tensor,
    map_range,
    normalize_map,
    overlay_heatmap,
    show_image,
    to_uint8_image,
    upsample_map,
)


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(16, 8, 3), dtype=np.uint8)


def test_image_round_trip_through_normalised_tensor():
    image = _image()
    tensor = image_to_tensor(image)
    assert tensor.shape == (3, 16, 8) and tensor.dtype == torch.float32
    np.testing.assert_array_equal(to_uint8_image(tensor), image)
    np.testing.assert_array_equal(to_uint8_image(Image.fromarray(image)), image)
    with pytest.raises(ValueError, match="uint8"):
        to_uint8_image(image.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        to_uint8_image(torch.zeros(16, 8, 3))


def test_upsample_and_normalize():
    heat = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    up = upsample_map(heat, (8, 4))
    assert up.shape == (8, 4) and up.min() >= 0 and up.max() <= 3
    norm = normalize_map(heat)
    assert norm.min() == 0 and norm.max() == 1
    np.testing.assert_allclose(normalize_map(heat, scale=(0, 6)), heat.numpy() / 6)
    np.testing.assert_allclose(normalize_map(heat, scale=(1, 2)), [[0, 0], [1, 1]])
    assert not normalize_map(np.ones((2, 2))).any()
    assert map_range([heat, heat - 5]) == (-5.0, 3.0)
    with pytest.raises(ValueError, match="2-D"):
        upsample_map(torch.zeros(1, 2, 2), (4, 4))


def test_overlay_blend():
    image = _image()
    heat = np.random.default_rng(1).random((4, 2))
    out = overlay_heatmap(image, heat)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(overlay_heatmap(image, heat, alpha=0.0), image)
    assert not np.array_equal(out, image)


def test_show_image_and_colorbar():
    fig, axes = plt.subplots(1, 2)
    image = _image()
    mask = np.zeros((16, 8), bool)
    mask[4:8, 2:6] = True
    show_image(axes[0], image, np.ones((4, 2)), border="#009E73", contour=mask, title="x")
    assert axes[0].spines["left"].get_visible()
    show_image(axes[1], image)
    assert not axes[1].spines["left"].get_visible()
    add_colorbar(fig, list(axes), "CAM, each map scaled to its own min-max")
    assert fig.axes[-1].get_ylabel() == "CAM, each map scaled to its own min-max"
    assert fig.axes[-1].get_ylim() == (0.0, 1.0)
    with pytest.raises(ValueError, match="contour mask"):
        show_image(axes[1], image, contour=mask[:8])
    plt.close(fig)
