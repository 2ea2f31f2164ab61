"""The hybrid-attention network of seed 003: MFF, attention orders (Table 9), MGO, MPFE, the baseline."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reidlib.layers.attention import ChannelAttention, SpatialAttention
from reidlib.layers.cam import class_activation_map
from reidlib.losses.multi_part import MultiPartLoss
from reidlib.models.backbone import build_backbone
from reidlib.models.hybrid_attention import (
    ATTENTION_ORDERS,
    AvgPoolHeads,
    HybridAttentionNet,
    MultiPoolHeads,
    Part,
    build_attention_plan,
    part_rows,
    piece_bounds,
    pool_parts,
    stripe_parts,
)

TABLE10_STAGES = [(1,), (2,), (3,), (4,), (1, 2), (1, 2, 3), (2, 3, 4), (1, 2, 3, 4)]
NARROW = {1: 16, 2: 32, 3: 64, 4: 128}  # stage channels of build_backbone(18, 16)


def _model(classes: int = 5, **kw) -> HybridAttentionNet:
    torch.manual_seed(0)
    return HybridAttentionNet(classes, build_backbone(18, 16, last_stride=1), **kw)


# ---------------------------------------------------------------------------------------------- MFF


def test_mff_narrow_backbone_at_the_papers_384x128():
    model = _model(attention="none").eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 384, 128)
        raw = model.stage_maps(x)
        aligned = model.aligned_maps(x)
        out = model(x)
    assert [tuple(m.shape[1:]) for m in raw] == [(16, 96, 32), (32, 48, 16), (64, 24, 8), (128, 24, 8)]
    assert [tuple(m.shape[1:]) for m in aligned] == [(16, 24, 8), (32, 24, 8), (64, 24, 8), (128, 24, 8)]
    assert model.fused_channels == 240
    assert out.feature_maps[0].shape == (1, 240, 24, 8)
    assert torch.equal(out.feature_maps[0], torch.cat(aligned, dim=1))  # "none": concatenation only


def test_mff_alignment_is_max_pooling_with_kernel_equal_to_the_size_ratio():
    model = _model(attention="none").eval()
    with torch.no_grad():
        x = torch.randn(2, 3, 128, 64)
        raw = model.stage_maps(x)
        aligned = model.aligned_maps(x)
    assert torch.equal(aligned[0], F.max_pool2d(raw[0], kernel_size=4, stride=4))
    assert torch.equal(aligned[1], F.max_pool2d(raw[1], kernel_size=2, stride=2))
    assert torch.equal(aligned[2], raw[2]) and torch.equal(aligned[3], raw[3])
    assert all(m.shape[2:] == (8, 4) for m in aligned)


@pytest.mark.parametrize("stages", TABLE10_STAGES)
def test_mff_fuses_the_table10_stages_at_stage4_size(stages):
    model = _model(stages=stages, attention="none", local="global").eval()
    calls = {s: 0 for s in range(1, 5)}
    for s in range(1, 5):
        getattr(model.backbone, f"layer{s}").register_forward_hook(
            lambda *_, s=s: calls.__setitem__(s, calls[s] + 1))
    with torch.no_grad():
        fused = model(torch.randn(1, 3, 128, 64)).feature_maps[0]
    assert model.fused_channels == sum(NARROW[s] for s in stages)
    assert fused.shape == (1, model.fused_channels, 8, 4)
    # Only the stages up to the deepest selected one run.
    assert [calls[s] for s in range(1, 5)] == [1 if s <= max(stages) else 0 for s in range(1, 5)]


@pytest.fixture(scope="module")
def resnet50_model():
    torch.manual_seed(0)
    return HybridAttentionNet(7, build_backbone(50, 64, pretrained=False, last_stride=1)).eval()


def test_mff_resnet50_layout_at_128x64(resnet50_model):
    with torch.no_grad():
        x = torch.randn(1, 3, 128, 64)
        raw = resnet50_model.stage_maps(x)
        aligned = resnet50_model.aligned_maps(x)
    assert [tuple(m.shape[1:]) for m in raw] == [(256, 32, 16), (512, 16, 8), (1024, 8, 4), (2048, 8, 4)]
    assert all(m.shape[2:] == (8, 4) for m in aligned)
    assert resnet50_model.stage_channels == [256, 512, 1024, 2048]
    assert resnet50_model.fused_channels == 3840


def test_full_resnet50_model_at_256x128(resnet50_model):
    with torch.no_grad():
        out = resnet50_model(torch.randn(1, 3, 256, 128))
    assert out.feature_maps[0].shape == (1, 3840, 16, 8)
    assert len(out.logits) == len(out.features) == 21
    assert all(s.shape == (1, 7) for s in out.logits)
    assert all(f.shape == (1, 512) for f in out.features)
    assert out.embedding.shape == (1, 21 * 512)
    assert out.extras["spatial_attention"].shape == (1, 4, 16, 8)
    assert out.extras["channel_attention"].shape == (1, 3840)


# ---------------------------------------------------------------------------------------------- MGO


CONTIGUOUS_6 = [
    (0, 5),
    (0, 4), (1, 5),
    (0, 3), (1, 4), (2, 5),
    (0, 2), (1, 3), (2, 4), (3, 5),
    (0, 1), (1, 2), (2, 3), (3, 4), (4, 5),
    (0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5),
]


def test_contiguous_parts_are_every_run_of_stripes():
    parts = stripe_parts(6, "contiguous")
    assert len(parts) == 21
    assert [(p.first, p.last) for p in parts] == CONTIGUOUS_6
    assert [p.level for p in parts] == [0] + [1] * 2 + [2] * 3 + [3] * 4 + [4] * 5 + [5] * 6
    assert all(p.pieces == 6 for p in parts)


@pytest.mark.parametrize(("height", "bounds"), [
    (24, [0, 4, 8, 12, 16, 20, 24]),
    (16, [0, 3, 5, 8, 11, 13, 16]),  # 16/6 = 2.67 rows: rounded 3, 2, 3, 3, 2, 3
    (8, [0, 1, 3, 4, 5, 7, 8]),      # 8/6 = 1.33 rows: rounded 1, 2, 1, 1, 2, 1
])
def test_stripe_rows(height, bounds):
    assert piece_bounds(6, height) == bounds
    stripes = stripe_parts(6, "uniform")
    assert [part_rows(p, height) for p in stripes] == list(zip(bounds[:-1], bounds[1:], strict=True))
    contiguous = stripe_parts(6, "contiguous")
    assert part_rows(contiguous[0], height) == (0, height)          # the global part
    assert part_rows(contiguous[4], height) == (bounds[1], bounds[5])  # stripes 1-4


def test_pyramid_and_uniform_parts():
    pyramid = stripe_parts(6, "pyramid")
    assert len(pyramid) == 21
    assert [p.level for p in pyramid] == [0] + [1] * 2 + [2] * 3 + [3] * 4 + [4] * 5 + [5] * 6
    assert [part_rows(p, 24) for p in pyramid if p.level == 4] == [(0, 5), (5, 10), (10, 14), (14, 19),
                                                                   (19, 24)]
    assert [part_rows(p, 24) for p in pyramid if p.level == 3] == [(0, 6), (6, 12), (12, 18), (18, 24)]
    uniform = stripe_parts(6, "uniform")
    assert uniform == [Part(i, i, 6, 0) for i in range(6)]
    with pytest.raises(ValueError, match="non-empty"):
        piece_bounds(6, 5)
    with pytest.raises(ValueError, match="granularity"):
        stripe_parts(6, "random")


def test_each_head_sees_its_parts_rows():
    model = _model(classes=3, mpfe=False)  # GAP heads: each part's feature is the mean of its rows
    out = model(torch.randn(2, 3, 128, 64))  # fused map 8x4: stripes of 1, 2, 1, 1, 2, 1 rows
    rows = out.extras["part_rows"].tolist()
    assert rows[:3] == [[0, 8], [0, 7], [1, 8]]
    assert rows[-6:] == [[0, 1], [1, 3], [3, 4], [4, 5], [5, 7], [7, 8]]
    fused = out.feature_maps[0]
    for feature, (start, stop) in zip(out.features, rows, strict=True):
        assert torch.allclose(feature, fused[:, :, start:stop].mean(dim=(2, 3)), atol=1e-6)
    assert out.extras["part_levels"].tolist() == [p.level for p in stripe_parts(6)]


def test_pool_parts_is_max_and_mean_of_each_row_range():
    x = torch.randn(2, 5, 6, 3)
    rows = [(0, 6), (1, 3), (5, 6)]
    maxes, means = pool_parts(x, rows)
    assert maxes.shape == means.shape == (2, 3, 5)
    for p, (a, b) in enumerate(rows):
        assert torch.allclose(maxes[:, p], x[:, :, a:b].amax(dim=(2, 3)))
        assert torch.allclose(means[:, p], x[:, :, a:b].mean(dim=(2, 3)), atol=1e-6)


def test_too_short_maps_are_refused():
    model = _model()
    with pytest.raises(ValueError, match="cannot be cut into 6"):
        model(torch.randn(2, 3, 64, 32))  # stage 4 is 4x2


# --------------------------------------------------------------------------------------------- MPFE


def test_mpfe_sizes_and_computation_part_by_part():
    torch.manual_seed(0)
    heads = MultiPoolHeads(40, 2, 7).eval()
    with torch.no_grad():  # non-trivial BN statistics, different per part
        for bn in (heads.reduce_bn, heads.bn):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 40, 4, 4)
    rows = [(0, 4), (2, 4)]
    features, vectors, logits = heads(x, rows)
    assert features.shape == vectors.shape == (3, 2, 512) and logits.shape == (3, 2, 7)
    assert heads.reduce.shape == (2, 256, 80) and heads.classifier.shape == (2, 7, 512)
    for p, (a, b) in enumerate(rows):  # what one head of Sec. 3.4 computes, written out for part p
        part = x[:, :, a:b]
        pooled = torch.cat([part.amax(dim=(2, 3)), part.mean(dim=(2, 3))], dim=1)  # max, then average
        z = pooled @ heads.reduce[p].t()  # the 1x1 conv on a 1x1 map
        bn = slice(256 * p, 256 * (p + 1))
        z = (z - heads.reduce_bn.running_mean[bn]) / torch.sqrt(heads.reduce_bn.running_var[bn] + 1e-5)
        z = torch.relu(z * heads.reduce_bn.weight[bn] + heads.reduce_bn.bias[bn])
        feature = z @ heads.fc[p].t()
        assert torch.allclose(features[:, p], feature, atol=1e-5)
        fb = slice(512 * p, 512 * (p + 1))
        vector = (feature - heads.bn.running_mean[fb]) / torch.sqrt(heads.bn.running_var[fb] + 1e-5)
        assert torch.allclose(vectors[:, p], vector, atol=1e-5)
        assert torch.allclose(logits[:, p], vector @ heads.classifier[p].t(), atol=1e-5)
    leaky = MultiPoolHeads(40, 1, 7, reduce_dim=8, feat_dim=16, negative_slope=0.1)
    assert leaky.negative_slope == 0.1 and [t.shape[2] for t in leaky(x, [(0, 4)])] == [16, 16, 7]
    with pytest.raises(ValueError, match="1 part row ranges for 2 heads"):
        heads(x, [(0, 4)])


def test_full_model_outputs():
    model = _model(classes=5)
    out = model(torch.randn(4, 3, 128, 64))
    assert len(out.logits) == len(out.features) == len(out.class_weights) == 21
    assert all(s.shape == (4, 5) for s in out.logits)
    assert all(f.shape == (4, 512) for f in out.features)
    assert all(w.shape == (5, 512) for w in out.class_weights)
    assert out.feature_maps[0].shape == (4, 240, 8, 4)
    assert out.embedding.shape == (4, 21 * 512)
    assert out.extras["spatial_attention"].shape == (4, 4, 8, 4)  # one map per stage
    assert out.extras["channel_attention"].shape == (4, 240)
    # The embedding is every part's BN'd vector; the triplet features are the vectors before that BN.
    vectors = model.heads.bn(torch.stack(out.features, dim=1).flatten(1))
    assert torch.allclose(out.embedding, vectors, atol=1e-5)


def test_mpfe_off_heads_and_pcb():
    model = _model(local="pcb", mpfe=False)
    assert len(model.parts) == 6 and isinstance(model.heads, AvgPoolHeads) and model.heads.bn is None
    out = model(torch.randn(2, 3, 128, 64))
    assert [tuple(r) for r in out.extras["part_rows"].tolist()] == [(0, 1), (1, 3), (3, 4), (4, 5), (5, 7),
                                                                     (7, 8)]
    assert out.extras["part_levels"].tolist() == [0] * 6
    fused = out.feature_maps[0]
    assert torch.allclose(out.features[1], fused[:, :, 1:3].mean(dim=(2, 3)), atol=1e-6)
    assert out.embedding.shape == (2, 6 * 240)
    with_bn = _model(local="global", mpfe=False, head_bn=True)
    assert isinstance(with_bn.heads.bn, torch.nn.BatchNorm1d)


# ---------------------------------------------------------------------------------------- attention


# What each order of Table 9 runs, written out by hand: (module, channels it sees); 240 = the fused map.
EXPECTED_CALLS = {
    "none": [],
    "S": [("S", 128)],
    "C": [("C", 128)],
    "(c)+C+S": [("C", 240), ("S", 240)],
    "C+S+(c)": [("C", 16), ("C", 32), ("C", 64), ("C", 128), ("S", 16), ("S", 32), ("S", 64), ("S", 128)],
    "C+(c)+S": [("C", 16), ("C", 32), ("C", 64), ("C", 128), ("S", 240)],
    "(c)+S+C": [("S", 240), ("C", 240)],
    "S+C+(c)": [("S", 16), ("S", 32), ("S", 64), ("S", 128), ("C", 16), ("C", 32), ("C", 64), ("C", 128)],
    "S+(c)+C": [("S", 16), ("S", 32), ("S", 64), ("S", 128), ("C", 240)],
}

EXPECTED_PLANS = {
    "none": [("concat", "fused")],
    "S": [("S", "per stage")],
    "C": [("C", "per stage")],
    "(c)+C+S": [("concat", "fused"), ("C", "fused"), ("S", "fused")],
    "C+S+(c)": [("C", "per stage"), ("S", "per stage"), ("concat", "fused")],
    "C+(c)+S": [("C", "per stage"), ("concat", "fused"), ("S", "fused")],
    "(c)+S+C": [("concat", "fused"), ("S", "fused"), ("C", "fused")],
    "S+C+(c)": [("S", "per stage"), ("C", "per stage"), ("concat", "fused")],
    "S+(c)+C": [("S", "per stage"), ("concat", "fused"), ("C", "fused")],
}


@pytest.mark.parametrize("order", ATTENTION_ORDERS)
def test_attention_orders_build_and_run_in_the_named_order(order, monkeypatch):
    calls = []
    spatial, channel = SpatialAttention.attention_map, ChannelAttention.attention_map

    def record_s(self, x):
        calls.append(("S", x.shape[1]))
        return spatial(self, x)

    def record_c(self, x):
        calls.append(("C", x.shape[1]))
        return channel(self, x)

    monkeypatch.setattr(SpatialAttention, "attention_map", record_s)
    monkeypatch.setattr(ChannelAttention, "attention_map", record_c)
    stages = (4,) if order in ("S", "C") else (1, 2, 3, 4)
    model = _model(stages=stages, attention=order, local="global").eval()
    assert model.attention_plan == EXPECTED_PLANS[order]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 128, 64))
    assert calls == EXPECTED_CALLS[order]
    assert ("spatial_attention" in out.extras) == ("S" in order)
    assert ("channel_attention" in out.extras) == ("C" in order)


def test_swapped_orders_give_different_maps():
    x = torch.randn(2, 3, 128, 64)
    for order in ("C+S+(c)", "S+C+(c)"):
        model = _model(attention=order, local="global").eval()
        with torch.no_grad():
            aligned = model.aligned_maps(x)
            fused = model.fuse(x)[0]
            sam, cam = model.spatial_attention, model.channel_attention
            c_then_s = torch.cat([s(c(m)) for s, c, m in zip(sam, cam, aligned, strict=True)], dim=1)
            s_then_c = torch.cat([c(s(m)) for s, c, m in zip(sam, cam, aligned, strict=True)], dim=1)
        expected, other = (c_then_s, s_then_c) if order == "C+S+(c)" else (s_then_c, c_then_s)
        assert torch.allclose(fused, expected, atol=1e-6)
        assert not torch.allclose(fused, other, atol=1e-4)


def test_the_papers_order_is_spatial_per_stage_then_channel_on_the_fused_map():
    model = _model(local="global").eval()
    assert len(model.spatial_attention) == 4 and len(model.channel_attention) == 1
    assert model.channel_attention[0].channels == 240
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        aligned = model.aligned_maps(x)
        out = model(x)
        maps = [s.attention_map(m) for s, m in zip(model.spatial_attention, aligned, strict=True)]
        spatial = torch.cat([m * a for m, a in zip(aligned, maps, strict=True)], dim=1)
        expected = model.channel_attention[0](spatial)
    assert torch.allclose(out.feature_maps[0], expected, atol=1e-6)
    assert torch.allclose(out.extras["spatial_attention"], torch.cat(maps, dim=1), atol=1e-6)


def test_invalid_orders():
    with pytest.raises(ValueError, match="stages=\\(4,\\)"):
        build_attention_plan("S", 4)
    with pytest.raises(ValueError, match="at most once"):
        build_attention_plan("S+(c)+S", 4)
    with pytest.raises(ValueError, match="at most once"):
        build_attention_plan("S+X", 4)
    assert build_attention_plan("S + © + C", 4) == EXPECTED_PLANS["S+(c)+C"]
    assert build_attention_plan("none", 1) == []


# ----------------------------------------------------------------------------------------- baseline


def test_baseline_is_a_plain_global_resnet():
    model = _model(classes=6, stages=(4,), attention="none", local="global", mpfe=False).eval()
    assert len(model.spatial_attention) == 0 and len(model.channel_attention) == 0
    assert model.attention_plan == [] and model.parts == [Part(0, 0, 1, 0)]
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in model.backbone.parameters())
    assert extra == 6 * 128  # one bias-free classifier on GAP, nothing else
    x = torch.randn(3, 3, 128, 64)
    with torch.no_grad():
        out = model(x)
        maps = model.backbone(x)
    gap = maps.mean(dim=(2, 3))
    assert torch.allclose(out.feature_maps[0], maps, atol=1e-6)
    assert len(out.logits) == 1
    assert torch.allclose(out.logits[0], gap @ model.heads.classifier[0].t(), atol=1e-6)
    assert torch.allclose(out.features[0], gap) and torch.allclose(out.embedding, gap)
    cams = class_activation_map(out.feature_maps[0], out.class_weights[0])
    assert torch.allclose(cams.mean(dim=(2, 3)), out.logits[0], atol=1e-6)  # scores are GAP of CAMs


def test_training_step_reaches_every_part_of_the_model():
    model = _model(classes=4)
    out = model(torch.randn(8, 3, 128, 64))
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss, logs = MultiPartLoss()(out, {"pid": pids})
    loss.backward()
    assert set(logs) == {"id", "triplet", "acc"}
    for module in (model.backbone.layer1, model.spatial_attention[0], model.channel_attention[0],
                   model.heads):
        assert all(p.grad is not None and bool(p.grad.abs().sum() > 0)
                   for p in module.parameters() if p.requires_grad)
    for weights in (model.heads.reduce, model.heads.fc, model.heads.classifier):  # every part's own head
        assert bool((weights.grad.flatten(1).abs().sum(dim=1) > 0).all())
