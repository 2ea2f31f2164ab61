"""The explainers on reidlib's real models (IDE+BN and CAMA on a ResNet-18, random weights, small input)."""

from __future__ import annotations

import warnings

import pytest
import torch

from reidlib.explain.cam import model_cam
from reidlib.explain.gradcam import grad_cam
from reidlib.explain.maps import explanation_maps
from reidlib.explain.ram import model_ram
from reidlib.explain.targets import class_target
from reidlib.models import baseline, cama

from .conftest import assert_same_state, snapshot

SMALL = {"depth": 18, "last_stride": 1, "pretrained": False, "allow_random_init": True}


def _quiet(factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-init warning of the backbone
        torch.manual_seed(0)
        return factory()


@pytest.fixture(scope="module")
def idebn():
    return _quiet(lambda: baseline.IDEBN(7, **SMALL))


def test_idebn_cam_ram_gradcam(idebn):
    images = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(0))
    before = snapshot(idebn)
    cams = model_cam(idebn, images)  # passes the GAP(feature_maps) -> classifier check
    assert cams.maps[0].shape == (2, 4, 2)
    ram = model_ram(idebn, images[0], images[1:])
    torch.testing.assert_close(ram.combined.gallery.mean(dim=(1, 2)), ram.combined.similarity)
    result = grad_cam(idebn, images, class_target([1, 2]), layer="backbone.layer3")
    assert result.maps.shape == (2, 4, 2)
    assert_same_state(before, snapshot(idebn))


def test_bnneck_is_refused_by_cam():
    model = _quiet(lambda: baseline.BNNeck(7, **SMALL))
    with torch.no_grad():  # give the BN neck non-trivial running statistics
        model(torch.randn(4, 3, 64, 32))
    model.eval()  # the classifier sees BN(GAP(feature_maps)), not GAP(feature_maps)
    with pytest.raises(ValueError, match="CAM contract"):
        model_cam(model, torch.randn(2, 3, 64, 32))


def test_cama_branch_maps():
    model = _quiet(lambda: cama.CAMA(7, num_branches=2, depth=18, last_stride=1, pretrained=False))
    images = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(1))
    for method in ("cam", "ram", "gradcam"):
        maps = explanation_maps(model, images, method)
        assert set(maps) == {"branch 1", "branch 2", "all"}
        assert all(m.shape == (2, 4, 2) for m in maps.values())
