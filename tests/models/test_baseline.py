"""IDE+BN (seed 000 Eq. 2-3) and the BNNeck head: outputs, the BN/GAP swap, frozen neck bias."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import reidlib.models
from reidlib.models.backbone import build_backbone
from reidlib.models.baseline import IDEBN, BNNeck
from reidlib.models.output import ReIDOutput


@pytest.fixture(scope="module")
def idebn() -> IDEBN:
    torch.manual_seed(0)
    return IDEBN(num_classes=7, depth=18, last_stride=1)


def test_idebn_output_fields(idebn):
    out = idebn(torch.randn(4, 3, 64, 32))
    assert isinstance(out, ReIDOutput)
    assert len(out.logits) == len(out.features) == len(out.feature_maps) == 1
    assert out.logits[0].shape == (4, 7)
    assert out.feature_maps[0].shape == (4, 512, 4, 2)
    assert torch.equal(out.embedding, out.features[0])
    assert torch.allclose(out.features[0], out.feature_maps[0].mean(dim=(2, 3)))
    assert idebn.classifiers[0].bias is None and idebn.classifiers[0].weight.shape == (7, 512)


def test_idebn_scores_are_gap_of_class_activation_maps(idebn):
    # Eq. 3-4: S_c = GAP(M_c) with M_c = sum_k W_ck F_k.
    out = idebn(torch.randn(2, 3, 64, 32))
    cams = torch.einsum("bkhw,ck->bchw", out.feature_maps[0], idebn.classifiers[0].weight)
    assert torch.allclose(cams.mean(dim=(2, 3)), out.logits[0], atol=1e-5)


def test_bn_before_gap_equals_after_at_inference_only():
    # Eq. 2 (BN1d after GAP) and Eq. 3 (BN2d before GAP) agree when BN uses fixed statistics.
    torch.manual_seed(0)
    t = torch.randn(8, 5, 4, 3) * torch.rand(8, 5, 4, 3) * 3 + 1
    bn2, bn1 = nn.BatchNorm2d(5), nn.BatchNorm1d(5)
    for bn in (bn2, bn1):
        bn.running_mean.copy_(torch.arange(5.0))
        bn.running_var.copy_(torch.arange(1.0, 6.0))
        bn.weight.data.copy_(torch.linspace(0.5, 2, 5))
        bn.bias.data.copy_(torch.linspace(-1, 1, 5))
        bn.eval()
    assert torch.allclose(bn2(t).mean(dim=(2, 3)), bn1(t.mean(dim=(2, 3))), atol=1e-5)
    bn2.train()
    bn1.train()
    assert not torch.allclose(bn2(t).mean(dim=(2, 3)), bn1(t.mean(dim=(2, 3))), atol=1e-2)


def test_bnneck_output_and_frozen_bias():
    torch.manual_seed(0)
    model = BNNeck(num_classes=5, depth=18, last_stride=1, pool="max")
    out = model(torch.randn(4, 3, 64, 32))
    assert out.logits[0].shape == (4, 5) and out.features[0].shape == (4, 512)
    assert torch.allclose(out.features[0], out.feature_maps[0].amax(dim=(2, 3)))
    # Embedding is the post-BN feature; in training it is centred per channel (bias frozen at 0).
    assert torch.allclose(out.embedding.mean(dim=0), torch.zeros(512), atol=1e-4)
    assert not model.neck.bias.requires_grad
    out.logits[0].sum().backward()
    assert model.neck.bias.grad is None and model.classifiers[0].weight.grad is not None


def test_no_registry_and_errors():
    assert not hasattr(reidlib.models, "MODELS") and not hasattr(reidlib.models, "build_model")
    assert reidlib.models.IDEBN is IDEBN and reidlib.models.BNNeck is BNNeck
    with pytest.raises(ValueError, match="num_classes"):
        IDEBN(num_classes=0, depth=18)


def test_class_weights_are_the_classifier_weights():
    torch.manual_seed(0)
    for model in (IDEBN(3, backbone=build_backbone(10, 8)), BNNeck(3, backbone=build_backbone(10, 8))):
        out = model(torch.randn(2, 3, 64, 32))
        assert len(out.class_weights) == 1 and out.class_weights[0] is model.classifiers[0].weight


def test_idebn_at_a_narrow_width_builds_its_backbone():
    torch.manual_seed(0)
    built = IDEBN(5, depth=18, width=16, last_stride=1)
    torch.manual_seed(0)
    given = IDEBN(5, backbone=build_backbone(18, 16, last_stride=1))
    assert built.feat_dim == 128 and built.bn.num_features == 128
    for a, b in zip(built.state_dict().values(), given.state_dict().values(), strict=True):
        assert torch.equal(a, b)
