import pytest
import torch

from reidlib.models.backbone import NARROW_DEPTHS, build_backbone
from reidlib.models.global_descriptor import GlobalDescriptor


def _model(pool="max", num_classes=None, dim=32):
    torch.manual_seed(0)
    backbone = build_backbone(10, width=8)
    return GlobalDescriptor(backbone, dim=dim, pool=pool, num_classes=num_classes).eval()


@pytest.mark.parametrize("size", [(64, 32), (50, 37), (32, 96)])
def test_any_size_gives_unit_descriptor(size):
    out = _model()(torch.randn(2, 3, *size))
    assert out.embedding.shape == (2, 32)
    assert torch.allclose(out.embedding.norm(dim=1), torch.ones(2), atol=1e-5)
    assert out.features[0] is out.embedding
    assert out.feature_maps[0].shape[:2] == (2, 64)
    assert out.logits == []
    assert out.class_weights == []


def test_max_and_avg_pooling_differ_and_match_definitions():
    x = torch.randn(1, 3, 64, 32)
    for pool, op in (("max", lambda m: m.amax((2, 3))), ("avg", lambda m: m.mean((2, 3)))):
        out = _model(pool)(x)
        assert torch.allclose(out.extras["pooled"], op(out.feature_maps[0]), atol=1e-6)


def test_classifier_head_and_backbone_transfer():
    cls = _model("avg", num_classes=7)
    out = cls(torch.randn(3, 3, 64, 32))
    assert out.logits[0].shape == (3, 7)
    assert len(out.class_weights) == 1 and out.class_weights[0] is cls.classifiers[0].weight
    # the classifier sees GAP(maps): its scores are the spatial means of the class activation maps
    cams = torch.einsum("cd,bdhw->bchw", out.class_weights[0], out.feature_maps[0])
    assert torch.allclose(cams.mean(dim=(2, 3)), out.logits[0], atol=1e-5)
    other = _model()
    with torch.no_grad():
        for p in cls.backbone.parameters():
            p.add_(1.0)
    other.load_backbone_from(cls)
    for a, b in zip(other.backbone.state_dict().values(), cls.backbone.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_mask_ignores_padding():
    model = _model()
    x = torch.randn(1, 3, 64, 32)
    padded = torch.zeros(1, 3, 64, 64)
    padded[..., :32] = x
    mask = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    mask[..., :32] = True
    masked = model(padded, mask).extras["pooled"]
    unmasked = model(padded).extras["pooled"]
    assert masked.shape == unmasked.shape
    assert not torch.allclose(masked, unmasked)


def test_bad_arguments():
    with pytest.raises(ValueError, match="pool"):
        GlobalDescriptor(build_backbone(10, 8), pool="gem")
    with pytest.raises(ValueError, match="out_channels"):
        GlobalDescriptor(torch.nn.ReLU())
    with pytest.raises(ValueError, match="ImageNet"):
        build_backbone(18, width=16, pretrained=True)


@pytest.mark.parametrize("depth", sorted(NARROW_DEPTHS))
def test_narrow_resnet_depths(depth):
    net = build_backbone(depth, 4)
    blocks = sum(len(getattr(net, f"layer{i}")) for i in range(1, 5))
    assert blocks == sum(NARROW_DEPTHS[depth])
    assert net(torch.randn(1, 3, 64, 32)).shape == (1, 32, 2, 1)
    assert build_backbone(depth, 4, last_stride=1)(torch.randn(1, 3, 64, 32)).shape == (1, 32, 4, 2)
    with pytest.raises(ValueError):
        build_backbone(50, 4)
