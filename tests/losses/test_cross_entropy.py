"""Label-smoothed cross-entropy against the hand formula -sum_c q_c log p_c."""

from __future__ import annotations

import pytest
import torch

from reidlib.losses.cross_entropy import CrossEntropyLabelSmoothing, cross_entropy_label_smoothing


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
