import copy
import math

import pytest
import torch
from torch import nn

from reidlib.layers.cam import class_activation_map
from reidlib.losses.fmn_rank import FMNStage2Loss
from reidlib.models.backbone import build_backbone
from reidlib.models.fmn import (
    FMN,
    GRN,
    MASK_LAYERS,
    MAX_LOG_MASK,
    MixingNetwork,
    feature_mask,
    fmn_descriptor,
)

CLASSES = 5


def _fmn(width: int = 4, size: tuple[int, int] = (64, 32), seed: int = 0, **kw) -> FMN:
    """A tiny FMN; GRN and LAN start from the same backbone weights (theta_o of Algorithm 1)."""
    torch.manual_seed(seed)
    base = build_backbone(10, width)
    grn = GRN(CLASSES, copy.deepcopy(base))
    return FMN(grn, base, CLASSES, input_size=size, **kw)


# --- Eq. 1-3 -------------------------------------------------------------------------------------------


def test_feature_mask_is_eq1_eq2_with_a_column_major_reshape():
    # W = I and no bias: m' = ReLU(g), so g's k-th entry must land at row k % h, column k // h.
    h, w = 2, 3
    g = torch.tensor([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5]])
    mask = feature_mask(g, torch.eye(6), None, h, w)
    expected = torch.tensor([[0.0, 0.2, 0.4], [0.1, 0.3, 0.5]]).exp()
    assert mask.shape == (1, h, w)
    torch.testing.assert_close(mask[0], expected, rtol=0, atol=0)
    # Eq. 2's index rule literally: k -> (i, j) = (k - h(j-1), floor(k/h) + 1) with 1-based j.
    for k in range(h * w):
        j = k // h + 1
        i = k - h * (j - 1)
        assert mask[0, i, j - 1] == math.exp(g[0, k].item())


def test_feature_mask_relu_zero_region_gives_one():
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.5, -2.0]])
    bias = torch.tensor([0.0, 0.0, 0.0, 0.1])
    g = torch.tensor([[2.0, 1.0]])  # pre-activations 2, 1, -2, 1 - 2 + 0.1 = -0.9
    mask = feature_mask(g, weight, bias, height=2, width=2)
    # column-major: cells (0,0)=k0, (1,0)=k1, (0,1)=k2, (1,1)=k3
    torch.testing.assert_close(mask[0], torch.tensor([[math.exp(2.0), 1.0], [math.exp(1.0), 1.0]]))
    assert mask[0, 0, 1] == 1.0 and mask[0, 1, 1] == 1.0  # exp(0) exactly, not approximately


def test_guard_is_exact_below_the_cap_and_finite_above():
    g = torch.tensor([[1.0, 5.0, 7.9, 100.0]])
    unguarded = feature_mask(g, torch.eye(4), None, 2, 2, max_log_mask=None)
    assert torch.isinf(unguarded).any()  # exp(100) overflows float32: the problem the guard solves
    mask = feature_mask(g, torch.eye(4), None, 2, 2)
    assert torch.isfinite(mask).all()
    below = g[0, :3].exp()
    torch.testing.assert_close(mask[0].t().reshape(-1)[:3], below, rtol=0, atol=0)
    assert mask[0, 1, 1] == pytest.approx(math.exp(MAX_LOG_MASK))


def test_guard_keeps_a_float16_mask_finite():
    g = torch.tensor([[0.5, 12.0, 300.0, -1.0]], dtype=torch.float16)
    weight = torch.eye(4, dtype=torch.float16)
    assert torch.isinf(feature_mask(g, weight, None, 2, 2, max_log_mask=None)).any()  # exp(12) > 65504
    mask = feature_mask(g, weight, None, 2, 2)
    assert mask.dtype == torch.float16 and torch.isfinite(mask).all()
    assert mask[0, 0, 0].item() == pytest.approx(math.exp(0.5), rel=1e-3)
    assert mask[0, 1, 1].item() == 1.0


def test_guard_passes_no_gradient_above_the_cap_only():
    g = torch.tensor([[1.0, 20.0]], requires_grad=True)
    feature_mask(g, torch.eye(2), None, 2, 1, max_log_mask=3.0).sum().backward()
    assert g.grad[0, 0] == pytest.approx(math.exp(1.0))
    assert g.grad[0, 1] == 0.0


def test_feature_mask_rejects_shapes_that_do_not_fit():
    with pytest.raises(ValueError, match=r"\(h\*w, m\) = \(6, 4\)"):
        feature_mask(torch.ones(1, 4), torch.ones(4, 4), None, 2, 3)
    with pytest.raises(ValueError, match="max_log_mask"):
        feature_mask(torch.ones(1, 4), torch.ones(4, 4), None, 2, 2, max_log_mask=0.0)


def test_mixer_multiplies_every_channel_by_the_same_mask():
    torch.manual_seed(0)
    mn = MixingNetwork(in_features=6, height=4, width=3, init_std=0.5)
    f = torch.rand(2, 5, 4, 3) + 0.5
    g = torch.rand(2, 6)
    o, mask = mn(f, g)
    assert mask.shape == (2, 4, 3)
    torch.testing.assert_close(mask, feature_mask(g, mn.fc.weight, None, 4, 3))
    ratio = o / f
    for c in range(5):  # Eq. 3: o_c = f_c * m for every channel c
        torch.testing.assert_close(ratio[:, c], mask)
    assert not torch.allclose(mask[0], mask[1])  # the mask depends on the image's g


def test_mixing_network_starts_near_one_and_rejects_other_map_sizes():
    torch.manual_seed(0)
    mn = MixingNetwork(in_features=64, height=8, width=4)
    assert mn.fc.bias is None  # Eq. 1 has none
    mask = mn.mask(torch.rand(3, 64) * 2)
    assert (mask >= 1).all() and (mask < 1.05).all()
    with pytest.raises(ValueError, match="8x4"):
        mn(torch.ones(3, 2, 4, 8), torch.ones(3, 64))
    with pytest.raises(ValueError, match="init_std"):
        MixingNetwork(4, 2, 2, init_std=0.0)


# --- GRN ---------------------------------------------------------------------------------------------


def test_grn_output_and_cams():
    torch.manual_seed(0)
    grn = GRN(CLASSES, build_backbone(10, 4))
    grn.eval()
    x = torch.randn(2, 3, 64, 32)
    out, stages = grn.forward_with_stages(x)
    assert set(stages) == {"stem", "layer1", "layer2", "layer3", "layer4"}
    assert out.logits[0].shape == (2, CLASSES) and out.features[0].shape == (2, 32)
    assert out.feature_maps[0].shape == (2, 32, 2, 1) and out.embedding is out.features[0]
    torch.testing.assert_close(out.features[0], stages["layer4"].mean(dim=(2, 3)))
    assert grn.classifiers[0].bias is None and out.class_weights[0] is grn.classifiers[0].weight
    cam = class_activation_map(out.feature_maps[0], out.class_weights[0], torch.tensor([1, 3]))
    torch.testing.assert_close(cam.mean(dim=(1, 2)), out.logits[0][[0, 1], [1, 3]])
    torch.testing.assert_close(grn(x).logits[0], out.logits[0])


# --- FMN ---------------------------------------------------------------------------------------------


def test_fmn_output_layout():
    model = _fmn().eval()
    x = torch.randn(3, 3, 64, 32)
    out = model(x)
    assert [s.shape for s in out.logits] == [(3, CLASSES)] * 2
    assert [f.shape for f in out.features] == [(3, 32), (3, 32)]
    assert [m.shape for m in out.feature_maps] == [(3, 32, 2, 1)] * 2
    assert out.extras["mask"].shape == (3, 16, 8)  # the stem's map at 64x32
    assert out.extras["mask_clamped"].item() == 0.0
    torch.testing.assert_close(out.embedding, fmn_descriptor(out.features[0], out.features[1], 0.5))
    torch.testing.assert_close(out.logits[0], model.grn(x).logits[0])  # the GRN's branch is the GRN
    assert out.class_weights[0] is model.grn.classifiers[0].weight
    assert out.class_weights[1] is model.lan_classifier.weight
    for i in range(2):  # both branches keep S = GAP(M) (seed 000, Eq. 4)
        cam = class_activation_map(out.feature_maps[i], out.class_weights[i], torch.tensor([0, 2, 4]))
        torch.testing.assert_close(cam.mean(dim=(1, 2)), out.logits[i][[0, 1, 2], [0, 2, 4]])


def test_fmn_initial_mask_is_near_one():
    out = _fmn().eval()(torch.randn(2, 3, 64, 32))
    mask = out.extras["mask"]
    assert (mask >= 1).all() and (mask < 1.05).all()


def test_lan_sees_the_masked_features():
    model = _fmn().eval()
    x = torch.randn(2, 3, 64, 32)
    out = model(x)
    f = model.grn.backbone.stem(x)
    lan_map = model.lan(f * out.extras["mask"].unsqueeze(1))
    torch.testing.assert_close(out.feature_maps[1], lan_map)
    torch.testing.assert_close(out.logits[1], model.lan_classifier(lan_map.mean(dim=(2, 3))))
    assert list(dict(model.lan.named_children())) == ["layer1", "layer2", "layer3", "layer4"]


def test_without_mask_the_lan_sees_f_and_the_mask_is_ones():
    model = _fmn(use_mask=False).eval()
    assert model.mixing is None
    x = torch.randn(2, 3, 64, 32)
    out = model(x)
    assert torch.equal(out.extras["mask"], torch.ones(2, 16, 8))
    lan_map = model.lan(model.grn.backbone.stem(x))
    torch.testing.assert_close(out.feature_maps[1], lan_map)


def test_lan_starts_from_lan_backbone_and_shares_no_tensor_with_the_grn():
    torch.manual_seed(0)
    base = build_backbone(10, 4)
    grn = GRN(CLASSES, copy.deepcopy(base))
    with torch.no_grad():  # stand-in for stage 1: the GRN's weights leave theta_o
        for p in grn.parameters():
            p.add_(0.1)
    model = FMN(grn, base, CLASSES, input_size=(64, 32))
    grn_ptrs = {t.data_ptr() for t in list(model.grn.parameters()) + list(model.grn.buffers())}
    lan_tensors = list(model.lan.parameters()) + list(model.lan.buffers())
    lan_tensors += list(model.mixing.parameters()) + list(model.lan_classifier.parameters())
    assert not grn_ptrs & {t.data_ptr() for t in lan_tensors}
    assert not {p.data_ptr() for p in base.parameters()} & {p.data_ptr() for p in model.lan.parameters()}
    # theta_o -> theta_l: the LAN holds the pre-trained weights, not the fine-tuned GRN's
    torch.testing.assert_close(model.lan.layer1[0].conv1.weight, base.layer1[0].conv1.weight)
    assert not torch.allclose(model.lan.layer1[0].conv1.weight, model.grn.backbone.layer1[0].conv1.weight)


def test_lan_is_independent_even_when_given_the_grns_own_backbone():
    torch.manual_seed(0)
    grn = GRN(CLASSES, build_backbone(10, 4))
    model = FMN(grn, grn.backbone, CLASSES, input_size=(64, 32))
    grn_ptrs = {p.data_ptr() for p in model.grn.parameters()}
    assert not grn_ptrs & {p.data_ptr() for p in model.lan.parameters()}


def test_train_keeps_the_grn_in_eval_mode():
    model = _fmn()
    model.train()
    assert model.training and model.lan.training and model.mixing.training
    assert not any(m.training for m in model.grn.modules())
    assert not any(p.requires_grad for p in model.grn.parameters())
    model.eval()
    assert not any(m.training for m in model.modules())
    assert model.train() is model


def test_stage2_step_trains_mn_and_lan_and_leaves_the_grn_untouched():
    model = _fmn(width=4, size=(64, 32))
    model.train()
    grn_state = {k: v.clone() for k, v in model.grn.state_dict().items()}  # weights and BN statistics
    mn_before = model.mixing.fc.weight.detach().clone()
    lan_before = {k: v.detach().clone() for k, v in model.lan.named_parameters()}
    lan_bn_before = model.lan.layer1[0].bn1.running_mean.clone()
    cls_before = model.lan_classifier.weight.detach().clone()
    # All parameters go to the optimizer (as the Trainer does), with weight decay: the frozen GRN must
    # still not move.
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=5e-4)
    loss_fn = FMNStage2Loss(margin=0.05)
    torch.manual_seed(1)
    batch = {"image": torch.randn(4, 3, 64, 32), "pid": torch.tensor([0, 1, 2, 3])}
    for _ in range(2):
        opt.zero_grad()
        loss, logs = loss_fn(model(batch["image"]), batch)
        loss.backward()
        assert all(p.grad is None for p in model.grn.parameters())
        assert model.mixing.fc.weight.grad is not None and model.mixing.fc.weight.grad.abs().sum() > 0
        opt.step()
    for k, v in model.grn.state_dict().items():
        assert torch.equal(v, grn_state[k]), k
    assert not torch.equal(model.mixing.fc.weight, mn_before)
    assert not torch.equal(model.lan_classifier.weight, cls_before)
    changed = [k for k, v in model.lan.named_parameters() if not torch.equal(v, lan_before[k])]
    assert len(changed) == len(lan_before)  # every LAN parameter trains
    assert not torch.equal(model.lan.layer1[0].bn1.running_mean, lan_bn_before)  # the LAN's BN does learn
    assert set(logs) >= {"ce", "rank", "acc", "active_fraction", "mask_clamped"}
    assert {id(p) for p in model.stage2_parameters()} == {
        id(p) for n, p in model.named_parameters() if not n.startswith("grn.")
    }


# --- mask sizes (Table 5) ----------------------------------------------------------------------------


NARROW_SIZES = {
    (128, 64): {"pool1": (32, 16), "res2": (32, 16), "res3": (16, 8), "res4": (8, 4)},
    (256, 128): {"pool1": (64, 32), "res2": (64, 32), "res3": (32, 16), "res4": (16, 8)},
}


@pytest.mark.parametrize("size", list(NARROW_SIZES))
def test_mask_sizes_on_a_narrow_backbone(size):
    torch.manual_seed(0)
    base = build_backbone(10, 16)
    grn = GRN(CLASSES, copy.deepcopy(base))
    for layer, mask_size in NARROW_SIZES[size].items():
        model = FMN(grn, base, CLASSES, mask_layer=layer, input_size=size).eval()
        assert model.mask_size == mask_size and model.masked_stage == MASK_LAYERS[layer]
        assert model.mixing.fc.out_features == mask_size[0] * mask_size[1]
        out = model(torch.randn(1, 3, *size))
        assert out.extras["mask"].shape == (1, *mask_size)
        assert out.embedding.shape == (1, 256)
        assert len(model.lan) == 4 - list(MASK_LAYERS).index(layer)


@pytest.fixture(scope="module")
def resnet18_pair():
    torch.manual_seed(0)
    base = build_backbone(18, 64, pretrained=False)  # torchvision's layout, random weights, no download
    return GRN(CLASSES, copy.deepcopy(base)), base


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((224, 224), {"pool1": (56, 56), "res2": (56, 56), "res3": (28, 28), "res4": (14, 14)}),  # Table 5
        ((128, 64), NARROW_SIZES[(128, 64)]),
        ((256, 128), NARROW_SIZES[(256, 128)]),
    ],
)
def test_mask_sizes_on_the_full_width_layout(resnet18_pair, size, expected):
    grn, base = resnet18_pair
    for layer, mask_size in expected.items():
        model = FMN(grn, base, CLASSES, mask_layer=layer, input_size=size)
        assert model.mask_size == mask_size
        assert model.mixing.fc.in_features == 512  # g = pool5 of the GRN


def test_full_width_forward_at_128x64(resnet18_pair):
    grn, base = resnet18_pair
    model = FMN(grn, base, CLASSES, mask_layer="res3", input_size=(128, 64)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 128, 64))
    assert out.extras["mask"].shape == (1, 16, 8)
    assert out.embedding.shape == (1, 1024)


# --- descriptor (Eq. 6) ------------------------------------------------------------------------------


def test_descriptor_is_eq6():
    g = torch.tensor([[3.0, 4.0]])
    l = torch.tensor([[0.0, 2.0, 0.0]])
    d = fmn_descriptor(g, l, alpha=0.25)
    torch.testing.assert_close(d, torch.tensor([[0.25 * 0.6, 0.25 * 0.8, 0.0, 0.75, 0.0]]))
    assert fmn_descriptor(torch.randn(4, 6), torch.randn(4, 3)).shape == (4, 9)


@pytest.mark.parametrize("alpha", [1.0, 0.0])
def test_extreme_alpha_ranks_like_one_branch(alpha):
    torch.manual_seed(0)
    g, l = torch.randn(10, 8), torch.randn(10, 6)
    d = fmn_descriptor(g, l, alpha)
    alone = nn.functional.normalize(g if alpha == 1.0 else l, dim=1)
    query, gallery = slice(0, 3), slice(3, 10)
    dist = torch.cdist(d[query], d[gallery])
    dist_alone = torch.cdist(alone[query], alone[gallery])
    torch.testing.assert_close(dist, dist_alone)
    assert torch.equal(dist.argsort(dim=1), dist_alone.argsort(dim=1))
    mixed = torch.cdist(fmn_descriptor(g, l, 0.5)[query], fmn_descriptor(g, l, 0.5)[gallery])
    assert not torch.allclose(mixed, dist_alone / 2)  # at 0.5 the other branch matters


def test_descriptor_rejects_alpha_outside_unit_interval():
    with pytest.raises(ValueError, match="alpha"):
        fmn_descriptor(torch.ones(1, 2), torch.ones(1, 2), 1.5)


# --- errors ------------------------------------------------------------------------------------------


def test_wrong_input_size_names_both_sizes():
    model = _fmn(size=(64, 32)).eval()
    with pytest.raises(ValueError, match=r"64x32 images.*got 128x64"):
        model(torch.randn(1, 3, 128, 64))


def test_constructor_checks():
    torch.manual_seed(0)
    base = build_backbone(10, 4)
    grn = GRN(CLASSES, copy.deepcopy(base))
    with pytest.raises(ValueError, match="pool1"):
        FMN(grn, base, CLASSES, mask_layer="res5", input_size=(64, 32))
    with pytest.raises(ValueError, match="identities"):
        FMN(grn, base, CLASSES + 1, input_size=(64, 32))
    with pytest.raises(ValueError, match="alpha"):
        FMN(grn, base, CLASSES, alpha=-0.1, input_size=(64, 32))
    with pytest.raises(ValueError, match="channels"):
        FMN(grn, build_backbone(10, 8), CLASSES, input_size=(64, 32))
    with pytest.raises(ValueError, match="input_size"):
        FMN(grn, base, CLASSES, input_size=(64,))
