import pytest
import torch
from torch import nn

from reidlib.layers.cam import class_activation_map
from reidlib.models.backbone import build_backbone
from reidlib.models.cama import CAMA, descriptor, select_branches


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class TinyBackbone(nn.Module):
    """Stages named like torchvision's ResNet with total stride 16 (last stride 1): 64x32 -> 4x2 maps."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _block(3, 4, 2)
        self.layer1 = _block(4, 4, 2)
        self.layer2 = _block(4, 6, 2)
        self.layer3 = _block(6, 8, 2)
        self.layer4 = _block(8, 12, 1)
        self.out_channels = 12


def _model(n: int = 3, classes: int = 5, **kw) -> CAMA:
    torch.manual_seed(0)
    return CAMA(num_classes=classes, num_branches=n, backbone=TinyBackbone(), **kw)


def test_output_shapes():
    model = _model(3)
    out = model(torch.randn(4, 3, 64, 32))
    assert len(out.logits) == len(out.features) == len(out.feature_maps) == 3
    assert all(s.shape == (4, 5) for s in out.logits)
    assert all(f.shape == (4, 12) for f in out.features)
    assert all(m.shape == (4, 12, 4, 2) for m in out.feature_maps)
    assert out.embedding.shape == (4, 36)
    assert torch.stack(out.class_weights).shape == (3, 5, 12)


def test_scores_are_gap_of_class_activation_maps():
    model = _model(2)
    out = model(torch.randn(3, 3, 64, 32))
    classes = torch.tensor([0, 4, 2])
    for i in range(2):
        cam = class_activation_map(out.feature_maps[i], out.class_weights[i], classes)
        assert cam.shape == (3, 4, 2)
        expected = out.logits[i][torch.arange(3), classes]
        assert torch.allclose(cam.mean(dim=(1, 2)), expected, atol=1e-6)  # Eq. 4


def test_classifiers_are_bias_free_and_unshared():
    model = _model(3)
    assert all(fc.bias is None for fc in model.classifiers)
    p0 = list(model.branches[0].parameters())
    p1 = list(model.branches[1].parameters())
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(p0, p1, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(p0, p1, strict=True))  # same start, as in the paper
    with torch.no_grad():
        p1[0].add_(1.0)
    assert not torch.equal(p0[0], p1[0])


def test_descriptor_layout_blocks_are_unit_norm_and_ordered():
    model = _model(3).eval()
    out = model(torch.randn(2, 3, 64, 32))
    emb = out.embedding
    for i in range(3):
        block = emb[:, i * 12 : (i + 1) * 12]
        assert torch.allclose(block.norm(dim=1), torch.ones(2), atol=1e-5)
        assert torch.allclose(block, torch.nn.functional.normalize(out.features[i], dim=1))


def test_subset_descriptor_and_select_branches_agree():
    model = _model(3).eval()
    x = torch.randn(2, 3, 64, 32)
    full = model(x).embedding
    model.set_test_branches([0, 1])
    sub = model(x).embedding
    assert sub.shape == (2, 24)
    assert torch.allclose(sub, select_branches(full, 3, [0, 1]))
    assert torch.allclose(select_branches(full, 3, [2]), full[:, 24:])


def test_descriptor_function():
    feats = [torch.randn(2, 4) * 5, torch.randn(2, 4)]
    d = descriptor(feats, [1])
    assert torch.allclose(d.norm(dim=1), torch.ones(2))
    assert descriptor(feats).shape == (2, 8)


@pytest.mark.parametrize("bad", [[], [3], [0, 0], [-1]])
def test_bad_test_branches(bad):
    with pytest.raises(ValueError):
        _model(3).set_test_branches(bad)


def test_bad_inputs():
    with pytest.raises(ValueError, match="num_branches"):
        CAMA(num_classes=3, num_branches=0, backbone=TinyBackbone())
    with pytest.raises(ValueError, match="num_classes"):
        CAMA(num_classes=0, backbone=TinyBackbone())
    with pytest.raises(ValueError, match="expects images"):
        _model(1)(torch.randn(2, 1, 64, 32))
    with pytest.raises(ValueError, match="embedding"):
        select_branches(torch.randn(2, 10), 3, [0])


def test_single_branch_is_ide_bn():
    model = _model(1)
    out = model(torch.randn(2, 3, 64, 32))
    assert len(out.logits) == 1 and out.embedding.shape == (2, 12)


def test_bn_before_and_after_gap_agree_at_inference_not_in_training():
    torch.manual_seed(0)
    t = torch.randn(8, 5, 4, 2) * torch.linspace(0.5, 3.0, 8)[None, None, :].reshape(1, 1, 4, 2)
    bn2d, bn1d = nn.BatchNorm2d(5), nn.BatchNorm1d(5)
    train_2d = bn2d(t).mean(dim=(2, 3))
    train_1d = bn1d(t.mean(dim=(2, 3)))
    assert not torch.allclose(train_2d, train_1d, atol=1e-3)  # different batch variances
    bn1d.load_state_dict(bn2d.state_dict())  # same running statistics and affine parameters
    bn2d.eval()
    bn1d.eval()
    assert torch.allclose(bn2d(t).mean(dim=(2, 3)), bn1d(t.mean(dim=(2, 3))), atol=1e-6)


def test_classifier_parameters_are_only_w():
    model = _model(2)
    params = model.classifier_parameters()
    assert len(params) == 2 and all(p.shape == (5, 12) for p in params)


def test_gradients_reach_every_branch():
    model = _model(3)
    out = model(torch.randn(4, 3, 64, 32))
    sum(s.sum() for s in out.logits).backward()
    assert all(b[0].weight.grad is not None and b[0].weight.grad.abs().sum() > 0 for b in model.branches)


def test_resnet_backbone_without_last_stride_gives_16x8_maps_at_256x128():
    torch.manual_seed(0)
    model = CAMA(num_classes=7, num_branches=2, depth=18, last_stride=1).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 128))
    assert all(m.shape == (1, 512, 16, 8) for m in out.feature_maps)
    assert out.embedding.shape == (1, 1024)
    assert len(list(model.shared.parameters())) > 0
    shared_ids = {id(p) for p in model.shared.parameters()}
    assert not shared_ids & {id(p) for p in model.branches.parameters()}


def test_class_weights_are_the_branch_classifiers():
    model = _model(2)
    out = model(torch.randn(2, 3, 64, 32))
    assert len(out.class_weights) == 2
    assert all(w is fc.weight for w, fc in zip(out.class_weights, model.classifiers, strict=True))


def test_feature_size_comes_from_the_backbone_contract():
    torch.manual_seed(0)
    backbone = build_backbone(10, 8, last_stride=1)
    model = CAMA(num_classes=4, num_branches=2, backbone=backbone)
    assert model.feat_dim == backbone.out_channels == 64
    assert all(bn.num_features == 64 for bn in model.bns)
    assert all(fc.weight.shape == (4, 64) for fc in model.classifiers)
    with pytest.raises(ValueError, match="out_channels"):
        backbone = TinyBackbone()
        del backbone.out_channels
        CAMA(num_classes=3, backbone=backbone)
    with pytest.raises(ValueError, match="layer4"):
        backbone = TinyBackbone()
        del backbone.layer4
        CAMA(num_classes=3, backbone=backbone)


def test_cama_builds_its_own_backbone_at_any_width():
    torch.manual_seed(0)
    built = CAMA(num_classes=5, num_branches=3, depth=18, width=16, last_stride=1)
    torch.manual_seed(0)
    given = CAMA(num_classes=5, num_branches=3, backbone=build_backbone(18, 16, last_stride=1))
    assert built.feat_dim == 128
    for a, b in zip(built.state_dict().values(), given.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    out = built.eval()(torch.randn(1, 3, 128, 64))
    assert all(m.shape == (1, 128, 8, 4) for m in out.feature_maps)
    with pytest.raises(ValueError, match="ImageNet weights exist for width 64 only"):
        CAMA(num_classes=5, width=16, depth=18, pretrained=True)
