"""Backbones: one contract for both widths (stage shapes, channels, errors), weights from disk, clones."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

from reidlib.models.backbone import (
    NARROW_DEPTHS,
    STAGE_NAMES,
    NarrowResNet,
    PretrainedWeightsNotFound,
    RandomInitWarning,
    ResNetBackbone,
    StagedBackbone,
    build_backbone,
    clone_stage,
    find_pretrained_file,
)

#: Total stride after each stage (the stem's stride-2 conv and max pool make 4).
STAGE_STRIDES = {"stem": 4, "layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}


@pytest.fixture(scope="module")
def r18_stride1() -> ResNetBackbone:
    torch.manual_seed(0)
    return ResNetBackbone(depth=18, last_stride=1).eval()


def test_stage_shapes_last_stride_1(r18_stride1):
    with torch.no_grad():
        out = r18_stride1.forward_stages(torch.randn(1, 3, 256, 128))
    assert list(out) == list(STAGE_NAMES)
    assert out["stem"].shape == (1, 64, 64, 32)
    assert out["layer1"].shape == (1, 64, 64, 32)
    assert out["layer2"].shape == (1, 128, 32, 16)
    assert out["layer3"].shape == (1, 256, 16, 8)
    assert out["layer4"].shape == (1, 512, 16, 8)  # 256x128 -> 16x8, as in CAMA (Sec. 4.3)
    assert {k: v.shape[1] for k, v in out.items()} == r18_stride1.stage_channels
    assert r18_stride1.out_channels == 512


def test_last_stride_2_halves_stage4():
    net = ResNetBackbone(depth=18, last_stride=2).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 32)).shape == (1, 512, 2, 1)


def test_resnet50_last_stride_1_sets_conv_and_shortcut():
    net = ResNetBackbone(depth=50, last_stride=1)
    block = net.layer4[0]
    assert block.conv2.stride == (1, 1) and block.downsample[0].stride == (1, 1)
    assert net.layer3[0].conv2.stride == (2, 2)  # only stage 4 changes
    assert net.stage_channels == {"stem": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 64, 32)).shape == (1, 2048, 4, 2)


def test_pretrained_file_round_trip(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)  # includes fc.*, which the backbone drops
    net = ResNetBackbone(depth=18, last_stride=1, pretrained=str(path))
    assert net.weights_path == path
    ref_state = reference.state_dict()
    for name, value in net.state_dict().items():
        key = name.replace("stem.", "", 1) if name.startswith("stem.") else name
        assert torch.equal(value, ref_state[key]), name
    assert not any(k.startswith("fc.") for k in net.state_dict())


def test_pretrained_true_reads_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    reference = torchvision.models.resnet18(weights=None)
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    net = ResNetBackbone(depth=18, pretrained=True)
    assert net.weights_path.name == "resnet18-f37072fd.pth"
    assert torch.equal(net.stem.conv1.weight, reference.conv1.weight)


def test_missing_weights_raise_with_locations(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(PretrainedWeightsNotFound) as err:
        ResNetBackbone(depth=50, pretrained=True)
    message = str(err.value)
    assert str(tmp_path / "checkpoints" / "resnet50-0676ba61.pth") in message
    assert "allow_random_init=True" in message and "never downloads" in message
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(PretrainedWeightsNotFound, match="nope.pth"):
        ResNetBackbone(depth=18, pretrained=str(tmp_path / "nope.pth"))


def test_missing_weights_warn_when_random_init_allowed(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = ResNetBackbone(depth=18, pretrained=str(tmp_path / "nope.pth"), allow_random_init=True)
    relevant = [w for w in caught if issubclass(w.category, RandomInitWarning)]
    assert len(relevant) == 1 and "RANDOMLY INITIALISED" in str(relevant[0].message)
    assert net.weights_path is None


def test_wrong_or_corrupt_weights_file(tmp_path):
    bad = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), bad)
    with pytest.raises(ValueError, match="does not match torchvision ResNet-18"):
        ResNetBackbone(depth=18, pretrained=str(bad))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        ResNetBackbone(depth=18, pretrained=str(junk))


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        ResNetBackbone(depth=20)
    with pytest.raises(ValueError, match="last_stride"):
        ResNetBackbone(depth=18, last_stride=3)
    with pytest.raises(ValueError, match="pretrained must be"):
        find_pretrained_file(18, 3)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        ResNetBackbone(depth=18)(torch.zeros(1, 1, 32, 32))


def test_clone_stage_gives_independent_copies(r18_stride1):
    copies = clone_stage(r18_stride1, "layer4", 2)
    assert len(copies) == 2
    for c in copies:
        assert c is not r18_stride1.layer4
        assert torch.equal(c[0].conv1.weight, r18_stride1.layer4[0].conv1.weight)
    with torch.no_grad():
        copies[0][0].conv1.weight.add_(1.0)
    assert not torch.equal(copies[0][0].conv1.weight, copies[1][0].conv1.weight)
    assert not torch.equal(copies[0][0].conv1.weight, r18_stride1.layer4[0].conv1.weight)
    single = clone_stage(r18_stride1.layer3)
    assert single is not r18_stride1.layer3 and isinstance(single, torch.nn.Sequential)
    with pytest.raises(ValueError, match="no stage 'layer9'"):
        clone_stage(r18_stride1, "layer9", 2)


@pytest.mark.parametrize("width", [64, 16])
@pytest.mark.parametrize("last_stride", [1, 2])
@pytest.mark.parametrize("size", [(128, 64), (256, 128)])
def test_build_backbone_stage_shapes_and_channels(width, last_stride, size):
    torch.manual_seed(0)
    net = build_backbone(18, width, last_stride=last_stride).eval()
    assert isinstance(net, StagedBackbone)
    assert isinstance(net, ResNetBackbone if width == 64 else NarrowResNet)
    assert (net.depth, net.width, net.last_stride) == (18, width, last_stride)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        stages = net.forward_stages(x)
        maps = net(x)
    assert list(stages) == list(STAGE_NAMES)
    for name, out in stages.items():
        stride = STAGE_STRIDES[name] // (2 if name == "layer4" and last_stride == 1 else 1)
        assert out.shape == (2, net.stage_channels[name], size[0] // stride, size[1] // stride), name
    # e.g. 128x64: stem 32x16, layer1 32x16, layer2 16x8, layer3 8x4, layer4 4x2 (8x4 with last stride 1)
    if size == (128, 64):
        assert stages["layer4"].shape[2:] == ((8, 4) if last_stride == 1 else (4, 2))
    assert {k: v.shape[1] for k, v in stages.items()} == net.stage_channels
    assert net.out_channels == net.stage_channels["layer4"] == maps.shape[1]
    torch.testing.assert_close(maps, stages["layer4"])
    w = width
    assert net.stage_channels == {"stem": w, "layer1": w, "layer2": 2 * w, "layer3": 4 * w, "layer4": 8 * w}


@pytest.mark.parametrize("depth", sorted(NARROW_DEPTHS))
def test_narrow_depths_have_their_blocks_and_torchvision_layout(depth):
    net = build_backbone(depth, width=8)
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == list(NARROW_DEPTHS[depth])
    # the same module names as the torchvision backbone, so code that reads one reads the other
    full = {name for name, _ in build_backbone(18).named_modules()}
    assert {name for name, _ in net.named_modules() if not name.startswith("layer")} <= full
    assert net.weights_path is None and "random init" in repr(net)


def test_build_backbone_width_64_is_torchvision_with_weights(tmp_path):
    torch.manual_seed(2)
    reference = torchvision.models.resnet34(weights=None)
    path = tmp_path / "r34.pth"
    torch.save(reference.state_dict(), path)
    net = build_backbone(34, pretrained=path, last_stride=1)
    assert isinstance(net, ResNetBackbone) and net.weights_path == path
    assert torch.equal(net.layer4[0].conv1.weight, reference.layer4[0].conv1.weight)
    assert net.layer4[0].conv1.stride == (1, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_backbone(18, pretrained=tmp_path / "nope.pth", allow_random_init=True)
    assert any(issubclass(w.category, RandomInitWarning) for w in caught)


def test_build_backbone_errors():
    with pytest.raises(ValueError, match="ImageNet weights exist for width 64 only"):
        build_backbone(18, width=16, pretrained=True)
    # a narrow width takes the file of a SynthReID trunk, named when missing
    with pytest.raises(FileNotFoundError, match="/some/file.pth"):
        build_backbone(18, width=16, pretrained="/some/file.pth")
    with pytest.raises(ValueError, match=r"narrow ResNets .* depths \[10, 18, 34\], got 50"):
        build_backbone(50, width=16)
    with pytest.raises(ValueError, match=r"width 64 .* depths \[18, 34, 50, 101, 152\], got 10"):
        build_backbone(10)
    with pytest.raises(ValueError, match="width must be >= 4, got 2"):
        build_backbone(18, width=2)
    for width in (64, 16):
        with pytest.raises(ValueError, match="last_stride must be 1 or 2, got 3"):
            build_backbone(18, width, last_stride=3)
    with pytest.raises(ValueError, match=r"NarrowResNet expects images \(B, 3, H, W\), got \(1, 1, 32, 32\)"):
        build_backbone(10, 8)(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        build_backbone(10, 8).forward_stages(torch.zeros(3, 32, 32))


def test_clone_stage_of_a_narrow_backbone():
    net = build_backbone(10, 4)
    copies = clone_stage(net, "layer4", 3)
    assert len(copies) == 3
    assert all(torch.equal(c[0].conv1.weight, net.layer4[0].conv1.weight) for c in copies)
