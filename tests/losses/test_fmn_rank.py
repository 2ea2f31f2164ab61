import pytest
import torch
import torch.nn.functional as F

from reidlib.losses.combine import LossSum
from reidlib.losses.fmn_rank import (
    DEFAULT_MARGIN,
    FMNStage2Loss,
    probability_ranking_loss,
    true_class_probability,
)
from reidlib.models.output import ReIDOutput

# Logits log(p) have softmax exactly p, so the probabilities of Eq. 5 are set by hand.
P_GRN = torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
P_LAN = torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.5, 0.1, 0.4]])
TARGETS = torch.tensor([0, 1, 2])
# p^G_t - p^L_t + m at m = 0.05: 0.7 - 0.6 + 0.05 = 0.15 (active), 0.5 - 0.8 + 0.05 < 0 (zero region),
# 0.8 - 0.4 + 0.05 = 0.45 (active)
HINGES = torch.tensor([0.15, 0.0, 0.45])


def _logits(p: torch.Tensor, requires_grad: bool = False) -> torch.Tensor:
    return p.log().clone().requires_grad_(requires_grad)


def test_true_class_probability():
    torch.testing.assert_close(true_class_probability(_logits(P_LAN), TARGETS), torch.tensor([0.6, 0.8, 0.4]))


def test_ranking_loss_is_eq5_on_hand_made_probabilities():
    per_image = probability_ranking_loss(_logits(P_GRN), _logits(P_LAN), TARGETS, 0.05, reduction="none")
    torch.testing.assert_close(per_image, HINGES)
    assert per_image[1] == 0.0  # hinge inactive: the LAN already beats the GRN by more than m
    loss = probability_ranking_loss(_logits(P_GRN), _logits(P_LAN), TARGETS, 0.05)
    torch.testing.assert_close(loss, HINGES.mean())


def test_margin_moves_the_boundary():
    same = _logits(P_GRN)
    assert probability_ranking_loss(same, same, TARGETS, margin=0.0) == 0.0  # max(0, 0) at the boundary
    torch.testing.assert_close(probability_ranking_loss(same, same, TARGETS, margin=0.2), torch.tensor(0.2))


def test_gradient_reaches_only_the_lan_logits():
    grn = _logits(P_GRN, requires_grad=True)
    lan = _logits(P_LAN, requires_grad=True)
    probability_ranking_loss(grn, lan, TARGETS, 0.05).backward()
    assert grn.grad is None  # the GRN's probability is a fixed reference
    assert torch.equal(lan.grad[1], torch.zeros(3))  # zero region: no gradient
    # d/dz (-p_t / B) = -p_t (onehot_t - p) / B for the active images
    for b in (0, 2):
        onehot = F.one_hot(TARGETS[b], 3).float()
        expected = -P_LAN[b, TARGETS[b]] * (onehot - P_LAN[b]) / 3
        torch.testing.assert_close(lan.grad[b], expected)
    assert (lan.grad[[0, 2], TARGETS[[0, 2]]] < 0).all()  # descent raises the LAN's true-class score


def test_ranking_loss_checks_its_inputs():
    with pytest.raises(ValueError, match="margin"):
        probability_ranking_loss(_logits(P_GRN), _logits(P_LAN), TARGETS, margin=-0.1)
    with pytest.raises(ValueError, match="same shape"):
        probability_ranking_loss(_logits(P_GRN), _logits(P_LAN)[:, :2], TARGETS, 0.05)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        probability_ranking_loss(_logits(P_GRN), _logits(P_LAN), torch.tensor([0, 1, 3]), 0.05)


def _output(grn: torch.Tensor, lan: torch.Tensor, **extras: torch.Tensor) -> ReIDOutput:
    feats = torch.zeros(grn.shape[0], 2)
    return ReIDOutput(logits=[grn, lan], features=[feats, feats], feature_maps=[], embedding=feats,
                      extras=dict(extras))


def test_stage2_loss_is_eq4_plus_eq5_with_logs():
    lan = _logits(P_LAN, requires_grad=True)
    grn = _logits(P_GRN, requires_grad=True)
    out = _output(grn, lan, mask_clamped=torch.tensor(0.25))
    loss, logs = FMNStage2Loss(margin=0.05)(out, {"pid": TARGETS})
    ce = -torch.log(torch.tensor([0.6, 0.8, 0.4])).mean()
    torch.testing.assert_close(loss, ce + HINGES.mean())
    assert logs["ce"] == pytest.approx(ce.item())
    assert logs["rank"] == pytest.approx(HINGES.mean().item())
    assert logs["acc"] == pytest.approx(2 / 3)  # argmax of P_LAN: 0, 1, 0 (the third image is missed)
    assert logs["active_fraction"] == pytest.approx(2 / 3)
    assert logs["p_grn"] == pytest.approx((0.7 + 0.5 + 0.8) / 3)
    assert logs["p_lan"] == pytest.approx((0.6 + 0.8 + 0.4) / 3)
    assert logs["mask_clamped"] == 0.25 and logs["loss"] == pytest.approx(loss.item())
    loss.backward()
    assert grn.grad is None  # neither Eq. 4 nor Eq. 5 trains the fixed GRN


def test_stage2_loss_rank_weight():
    out = _output(_logits(P_GRN), _logits(P_LAN))
    ce_only, logs = FMNStage2Loss(rank_weight=0.0)(out, {"pid": TARGETS})
    torch.testing.assert_close(ce_only, -torch.log(torch.tensor([0.6, 0.8, 0.4])).mean())
    assert logs["rank"] > 0  # still logged when it does not train
    doubled, _ = FMNStage2Loss(margin=0.05, rank_weight=2.0)(out, {"pid": TARGETS})
    torch.testing.assert_close(doubled, ce_only + 2 * HINGES.mean())


def test_stage2_loss_label_smoothing_and_defaults():
    out = _output(_logits(P_GRN), _logits(P_LAN))
    loss, logs = FMNStage2Loss(label_smoothing=0.1, rank_weight=0.0)(out, {"pid": TARGETS})
    torch.testing.assert_close(loss, F.cross_entropy(P_LAN.log(), TARGETS, label_smoothing=0.1))
    assert FMNStage2Loss().margin == DEFAULT_MARGIN == 0.05
    assert "mask_clamped" not in logs


def test_stage2_loss_in_a_loss_sum_and_errors():
    out = _output(_logits(P_GRN), _logits(P_LAN))
    total, logs = LossSum([(1.0, FMNStage2Loss())])(out, {"pid": TARGETS})
    assert logs["loss"] == pytest.approx(total.item())
    with pytest.raises(ValueError, match="two logits"):
        FMNStage2Loss()(ReIDOutput(logits=[_logits(P_LAN)], features=[], feature_maps=[],
                                   embedding=torch.zeros(3, 1)), {"pid": TARGETS})
    with pytest.raises(ValueError, match="rank_weight"):
        FMNStage2Loss(rank_weight=-1.0)
    with pytest.raises(ValueError, match="margin"):
        FMNStage2Loss(margin=1.5)


def test_half_precision_logits_are_scored_in_float32():
    grn, lan = _logits(P_GRN).half(), _logits(P_LAN).half()
    loss = probability_ranking_loss(grn, lan, TARGETS, 0.05)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, HINGES.mean(), atol=2e-3, rtol=0)
