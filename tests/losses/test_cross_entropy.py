"""Label-smoothed cross-entropy against the hand formula -sum_c q_c log p_c; the identity loss object."""

from __future__ import annotations

import pytest
import torch

from reidlib.losses.cross_entropy import (
    CrossEntropyLabelSmoothing,
    IdentityLoss,
    branch_cross_entropies,
    cross_entropy_label_smoothing,
)
from reidlib.models.output import ReIDOutput


def _hand(logits: torch.Tensor, targets: torch.Tensor, eps: float) -> torch.Tensor:
    num_classes = logits.shape[1]
    q = torch.full_like(logits, eps / num_classes)
    q[torch.arange(len(targets)), targets] += 1 - eps
    return -(q * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_matches_hand_formula(eps):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=g) * 3
    targets = torch.tensor([0, 4, 2, 2, 1, 3])
    assert torch.allclose(cross_entropy_label_smoothing(logits, targets, eps), _hand(logits, targets, eps))
    assert torch.allclose(CrossEntropyLabelSmoothing(eps)(logits, targets), _hand(logits, targets, eps))


def test_smoothing_penalises_overconfidence():
    targets = torch.tensor([0])
    confident = torch.tensor([[30.0, 0.0, 0.0]])
    moderate = torch.tensor([[3.0, 0.0, 0.0]])
    assert cross_entropy_label_smoothing(confident, targets, 0.0) < cross_entropy_label_smoothing(
        moderate, targets, 0.0)
    assert cross_entropy_label_smoothing(confident, targets, 0.1) > cross_entropy_label_smoothing(
        moderate, targets, 0.1)


def test_errors():
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="epsilon"):
        cross_entropy_label_smoothing(logits, torch.tensor([0, 1]), 1.0)
    with pytest.raises(ValueError, match="0..2"):
        cross_entropy_label_smoothing(logits, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"targets must be \(2,\)"):
        cross_entropy_label_smoothing(logits, torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        cross_entropy_label_smoothing(torch.zeros(3), torch.tensor([0]))


# ---- the Trainer-contract identity loss --------------------------------------------------------------
def _output(logits: list[torch.Tensor]) -> ReIDOutput:
    feats = torch.zeros(logits[0].shape[0], 2) if logits else torch.zeros(2, 2)
    return ReIDOutput(logits=logits, features=[feats], feature_maps=[], embedding=feats)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_identity_loss_is_the_mean_over_branches_of_the_hand_formula(eps):
    g = torch.Generator().manual_seed(3)
    logits = [torch.randn(4, 5, generator=g) * 2 for _ in range(3)]
    targets = torch.tensor([1, 1, 4, 0])
    loss, logs = IdentityLoss(eps)(_output(logits), {"pid": targets, "image": torch.zeros(4, 3, 8, 4)})
    expected = sum(_hand(s, targets, eps) for s in logits) / 3
    torch.testing.assert_close(loss, expected)
    assert set(logs) == {"ce", "acc"}
    assert logs["ce"] == pytest.approx(float(expected))
    assert logs["acc"] == pytest.approx(float((logits[0].argmax(1) == targets).float().mean()))


def test_identity_loss_accuracy_counts_branch_zero_only():
    right = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    loss, logs = IdentityLoss()(_output([right, right.flip(1)]), {"pid": torch.tensor([0, 1])})
    assert logs["acc"] == 1.0 and loss.ndim == 0


def test_branch_cross_entropies_one_per_branch_in_float32():
    logits = [torch.randn(3, 4).half(), torch.randn(3, 4)]
    losses = branch_cross_entropies(logits, torch.tensor([0, 1, 3]), 0.1)
    assert [loss.dtype for loss in losses] == [torch.float32, torch.float32]
    torch.testing.assert_close(losses[1], _hand(logits[1], torch.tensor([0, 1, 3]), 0.1))


def test_identity_loss_errors():
    with pytest.raises(ValueError, match="needs logits"):
        IdentityLoss()(_output([]), {"pid": torch.tensor([0, 1])})
    with pytest.raises(ValueError, match="epsilon"):
        IdentityLoss(1.0)
    with pytest.raises(ValueError, match="0..1"):
        IdentityLoss()(_output([torch.zeros(2, 2)]), {"pid": torch.tensor([0, 2])})
