"""ResNet backbone: stage shapes, last stride, weights from disk only, clear errors, stage clones."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

from reidlib.models.backbone import (
    STAGE_NAMES,
    PretrainedWeightsNotFound,
    RandomInitWarning,
    ResNetBackbone,
    clone_stage,
    find_pretrained_file,
)


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
