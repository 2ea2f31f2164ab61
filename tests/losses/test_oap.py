import math

import pytest
import torch

from reidlib.layers.cam import class_activation_map
from reidlib.losses.cross_entropy import branch_cross_entropies
from reidlib.losses.oap import (
    CamaLoss,
    activation_masks,
    k_from_fraction,
    overlapped_activation_penalty,
    target_class_maps,
)
from reidlib.models.output import ReIDOutput


def _two_branch_maps(overlap: bool) -> torch.Tensor:
    """One image, two 2x2 maps; each branch fires (value 10) on one cell, the others are 0."""
    m = torch.zeros(1, 2, 2, 2)
    m[0, 0, 0, 0] = 10.0
    if overlap:
        m[0, 1, 0, 0] = 10.0
    else:
        m[0, 1, 1, 1] = 10.0
    return m


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_masks_threshold_at_kth_largest():
    m = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])  # B=1, N=1
    a2 = activation_masks(m, k=2)[0, 0]
    assert a2[0, 1].item() == pytest.approx(0.5)  # the 2nd largest sits exactly on the threshold
    assert a2[0, 0].item() == pytest.approx(_sig(1.0))
    assert a2[1, 1].item() == pytest.approx(_sig(-2.0))


def test_masks_at_extreme_k():
    m = torch.randn(3, 2, 4, 2)
    top = activation_masks(m, k=1)
    assert (top <= 0.5 + 1e-6).all()  # threshold at the maximum
    assert torch.allclose(top.flatten(2).max(dim=2).values, torch.full((3, 2), 0.5))
    bottom = activation_masks(m, k=8)
    assert (bottom >= 0.5 - 1e-6).all()  # threshold at the minimum
    assert torch.allclose(bottom.flatten(2).min(dim=2).values, torch.full((3, 2), 0.5))


@pytest.mark.parametrize("k", [0, 5, -1])
def test_masks_reject_k_out_of_range(k):
    with pytest.raises(ValueError, match="k must be in"):
        activation_masks(torch.zeros(1, 2, 2, 2), k=k)


def test_penalty_value_by_hand_k1():
    # k=1: sigma = 10 on each branch; the firing cell maps to 0.5, the others to sigmoid(-10).
    lo = _sig(-10.0)
    disjoint = overlapped_activation_penalty(_two_branch_maps(overlap=False), k=1).item()
    assert disjoint == pytest.approx((0.5 * lo + lo * 0.5 + 2 * lo * lo) / 2, rel=1e-5)
    overlapping = overlapped_activation_penalty(_two_branch_maps(overlap=True), k=1).item()
    assert overlapping == pytest.approx((0.25 + 3 * lo * lo) / 2, rel=1e-5)
    assert overlapping > 100 * disjoint


def test_penalty_k_equal_to_all_cells():
    # k = h*w: sigma = 0 (the minimum): firing cells -> sigmoid(10), the rest -> 0.5.
    hi = _sig(10.0)
    value = overlapped_activation_penalty(_two_branch_maps(overlap=False), k=4).item()
    assert value == pytest.approx((hi * 0.5 + 0.5 * hi + 2 * 0.25) / 2, rel=1e-5)


def test_penalty_is_batch_mean_and_divides_by_n():
    maps = torch.randn(5, 3, 4, 2)
    per_image = torch.stack([overlapped_activation_penalty(maps[i : i + 1], k=2) for i in range(5)])
    assert overlapped_activation_penalty(maps, k=2).item() == pytest.approx(per_image.mean().item(), rel=1e-5)
    manual = activation_masks(maps, 2).prod(dim=1).sum(dim=(1, 2)).mean() / 3
    assert overlapped_activation_penalty(maps, k=2).item() == pytest.approx(manual.item(), rel=1e-6)


def test_symmetric_gradient_reaches_every_branch():
    maps = torch.randn(2, 3, 4, 2, requires_grad=True)
    overlapped_activation_penalty(maps, k=2, mode="symmetric").backward()
    assert all(maps.grad[:, i].abs().sum() > 0 for i in range(3))


def test_ordered_same_value_first_branch_untouched():
    maps = torch.randn(2, 3, 4, 2)
    sym = overlapped_activation_penalty(maps, k=2, mode="symmetric")
    m = maps.clone().requires_grad_(True)
    ordered = overlapped_activation_penalty(m, k=2, mode="ordered")
    assert ordered.item() == pytest.approx(sym.item(), rel=1e-6)
    ordered.backward()
    assert m.grad[:, 0].abs().sum() == 0
    assert m.grad[:, 1].abs().sum() > 0 and m.grad[:, 2].abs().sum() > 0


def test_ordered_gradient_is_prefix_overlap():
    maps = torch.randn(2, 3, 4, 2)
    m = maps.clone().requires_grad_(True)
    overlapped_activation_penalty(m, k=2, mode="ordered").backward()
    # Reference: branch i is moved only by its overlap with the earlier branches.
    ref = maps.clone().requires_grad_(True)
    a = activation_masks(ref, 2)
    surrogate = (a[:, 1] * a[:, 0].detach()).sum(dim=(1, 2)).mean() / 3
    surrogate = surrogate + (a[:, 2] * (a[:, 0] * a[:, 1]).detach()).sum(dim=(1, 2)).mean() / 3
    surrogate.backward()
    assert torch.allclose(m.grad, ref.grad, atol=1e-7)


def test_ordered_equals_detaching_first_for_two_branches():
    maps = torch.randn(3, 2, 4, 2)
    m = maps.clone().requires_grad_(True)
    overlapped_activation_penalty(m, k=3, mode="ordered").backward()
    ref = maps.clone().requires_grad_(True)
    a = activation_masks(ref, 3)
    ((a[:, 0].detach() * a[:, 1]).sum(dim=(1, 2)).mean() / 2).backward()
    assert torch.allclose(m.grad, ref.grad, atol=1e-7)


def test_unknown_mode_rejected():
    with pytest.raises(ValueError, match="OAP mode"):
        overlapped_activation_penalty(torch.zeros(1, 2, 2, 2), k=1, mode="both")


def test_descending_the_penalty_lowers_it():
    torch.manual_seed(0)
    base = torch.randn(1, 1, 4, 2)
    maps = (base.repeat(1, 2, 1, 1) + 0.1 * torch.randn(1, 2, 4, 2)).requires_grad_(True)
    opt = torch.optim.SGD([maps], lr=1.0)
    start = overlapped_activation_penalty(maps, k=2).item()
    for _ in range(50):
        opt.zero_grad()
        overlapped_activation_penalty(maps, k=2).backward()
        opt.step()
    assert overlapped_activation_penalty(maps, k=2).item() < 0.7 * start


def test_coincident_top_cells_have_a_floor():
    # Every branch's own top-k cells have a_i >= 0.5, so when all branches share them the penalty
    # cannot drop below k * 0.5**N / N however sharp the maps get: only moving the peaks apart helps.
    sharp = torch.full((1, 3, 4, 2), -50.0)
    sharp[:, :, 0, :] = 50.0  # the same two cells on top in all three branches
    assert overlapped_activation_penalty(sharp, k=2).item() == pytest.approx(2 * 0.5**3 / 3, rel=1e-4)


def test_target_class_maps_match_einsum_and_scores():
    torch.manual_seed(0)
    fmaps = [torch.randn(4, 6, 4, 2) for _ in range(2)]
    w = torch.randn(2, 5, 6)
    t = torch.tensor([0, 3, 4, 3])
    maps = target_class_maps(fmaps, w, t)
    assert maps.shape == (4, 2, 4, 2)
    for i in range(2):
        scores = fmaps[i].mean(dim=(2, 3)) @ w[i].T  # S^i = W^i GAP(F^i)
        assert torch.allclose(maps[:, i].mean(dim=(1, 2)), scores[torch.arange(4), t], atol=1e-5)


def test_target_class_maps_bad_shapes():
    with pytest.raises(ValueError, match="classifier_weights"):
        target_class_maps([torch.zeros(1, 6, 2, 2)], torch.zeros(2, 5, 6), torch.tensor([0]))
    with pytest.raises(ValueError, match="feature_maps"):
        target_class_maps([torch.zeros(1, 7, 2, 2)], torch.zeros(1, 5, 6), torch.tensor([0]))


def test_k_from_fraction():
    assert k_from_fraction(13 / 128, 128) == 13
    assert k_from_fraction(13 / 128, 32) == 3
    assert k_from_fraction(13 / 128, 8) == 1
    assert k_from_fraction(1.0, 8) == 8
    with pytest.raises(ValueError):
        k_from_fraction(0.0, 8)


def _fake_output(n: int) -> tuple[ReIDOutput, dict]:
    torch.manual_seed(0)
    fmaps = [torch.randn(4, 6, 4, 2, requires_grad=True) for _ in range(n)]
    w = torch.randn(n, 5, 6)
    feats = [f.mean(dim=(2, 3)) for f in fmaps]
    logits = [f @ w[i].T for i, f in enumerate(feats)]
    out = ReIDOutput(logits=logits, features=feats, feature_maps=fmaps, embedding=torch.cat(feats, 1),
                     class_weights=list(w))
    return out, {"pid": torch.tensor([0, 1, 2, 3])}


def test_cama_loss_sums_branches_and_adds_penalty():
    out, batch = _fake_output(3)
    total, logs = CamaLoss(k=2, alpha=1.0)(out, batch)
    assert logs["loss_id"] == pytest.approx(sum(logs[f"loss_id_{i}"] for i in (1, 2, 3)), rel=1e-5)
    assert total.item() == pytest.approx(logs["loss_id"] + logs["loss_oap"], rel=1e-5)
    no_oap, logs0 = CamaLoss(k=2, alpha=0.0)(out, batch)
    assert no_oap.item() == pytest.approx(logs0["loss_id"], rel=1e-6)
    assert logs0["loss_oap"] == pytest.approx(logs["loss_oap"])  # still logged, not optimised


def test_cama_loss_single_branch_is_plain_cross_entropy():
    out, batch = _fake_output(1)
    total, logs = CamaLoss(k=2)(out, batch)
    assert "loss_oap" not in logs
    expected = torch.nn.functional.cross_entropy(out.logits[0], batch["pid"])
    assert total.item() == pytest.approx(expected.item())


def test_cama_loss_rejects_bad_config():
    with pytest.raises(ValueError):
        CamaLoss(k=0)
    with pytest.raises(ValueError):
        CamaLoss(k=2, alpha=-1)
    with pytest.raises(ValueError):
        CamaLoss(k=2, mode="sym")


def test_cama_loss_reads_class_weights_and_uses_the_shared_cam():
    out, batch = _fake_output(2)
    weights = [w.clone().requires_grad_(True) for w in out.class_weights]
    out.class_weights = weights
    total, logs = CamaLoss(k=2, alpha=1.0)(out, batch)
    pairs = zip(out.feature_maps, weights, strict=True)
    maps = torch.stack([class_activation_map(f, w, batch["pid"]) for f, w in pairs], dim=1)
    assert logs["loss_oap"] == pytest.approx(overlapped_activation_penalty(maps, k=2).item())
    total.backward()  # the penalty trains the classifier weights through the maps
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in weights)
    out.class_weights = []
    with pytest.raises(ValueError, match="class_weights"):
        CamaLoss(k=2)(out, batch)


def test_cama_loss_identity_term_is_the_shared_branch_cross_entropy():
    out, batch = _fake_output(3)
    _, logs = CamaLoss(k=2, label_smoothing=0.1)(out, batch)
    expected = branch_cross_entropies(out.logits, batch["pid"], 0.1)
    for i, value in enumerate(expected):
        assert logs[f"loss_id_{i + 1}"] == pytest.approx(value.item())
    with pytest.raises(ValueError, match="logits"):
        CamaLoss(k=2)(ReIDOutput([], out.features, out.feature_maps, out.embedding), batch)
